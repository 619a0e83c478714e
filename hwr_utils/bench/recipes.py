"""Training recipes raced to the same MNIST test-accuracy targets, on the same machine.

* ``article``  -- the article's script: torchvision's MNIST through a ``DataLoader`` with
  per-image PIL transforms (Grayscale, Resize, ToTensor, Normalize(0.5, 0.5)), batch 64,
  Adam at 1e-3, its one-convolution model with ``fc1`` sized for 28x28. All 60,000 images.
* ``examples`` -- pytorch/examples' MNIST script from its documented defaults: ToTensor and
  Normalize(0.1307, 0.3081) through a ``DataLoader``, batch 64, Adadelta at lr 1.0, the
  learning rate times 0.7 after every epoch, :class:`~hwr_utils.models.ExamplesNet`.
* ``hwrnet``   -- the book's: a :class:`~hwr_utils.config.TrainConfig` run the way ``hwr train``
  runs it (55,000 images resident in memory as one uint8 tensor, hwrnet stored channels-last,
  one-cycle SGD, augmentation per group of 8).

The article's and examples' pipelines normalize outside the model, as those scripts do, so their
models are built with ``normalization="none"``. Every recipe trains through the engine's one
:func:`~hwr_utils.train.train_step`. Introduced in the training chapter.

:func:`race` trains a recipe and every ``eval_every`` training images stops the clock to
measure test accuracy; it reports when each target was first reached. The test set only
*reports* here: nothing is chosen by it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torchvision
from torch import nn
from torchvision import transforms
from tqdm import tqdm

from ..config import TrainConfig
from ..data import MNIST_MEAN, MNIST_STD, TensorBatches, find_mnist, load_mnist, to_float
from ..evaluation import evaluate
from ..models import ArticleNet, ExamplesNet
from ..runtime import set_seed
from ..tasks import Classification
from ..train import prepare_training, train_step

#: The article's per-image pipeline. On MNIST, Grayscale and Resize((28, 28)) change nothing:
#: the images are already one-channel 28x28.
ARTICLE_TRANSFORM = transforms.Compose(
    [
        transforms.Grayscale(),
        transforms.Resize((28, 28)),
        transforms.ToTensor(),
        transforms.Normalize((0.5,), (0.5,)),
    ]
)
ARTICLE_NORMALIZATION = (0.5, 0.5)
EXAMPLES_TRANSFORM = transforms.Compose(
    [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]
)


@dataclass
class Recipe:
    """A model with its optimizer, schedules and batches, ready to train."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]  # epoch -> batches
    test_images: torch.Tensor  # as this recipe's model takes them
    task: Classification = field(default_factory=Classification)
    batch_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # after every batch
    epoch_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # after every epoch
    bf16: bool = False


@dataclass
class RaceResult:
    """What :func:`race` measured: the accuracy curve and the time to each target."""

    name: str
    curve: list[dict[str, float]]  # seconds, images, epoch, train_loss, accuracy per evaluation
    time_to: dict[float, float | None]  # target -> training seconds (None: never reached)
    images_per_second: float


def mnist_loader(
    train: bool,
    transform: Callable,
    batch_size: int,
    seed: int = 0,
    data_dir: str | None = None,
    limit: int | None = None,
) -> torch.utils.data.DataLoader:
    """torchvision's MNIST dataset through a shuffling ``DataLoader``, as most tutorials load it.

    ``limit`` keeps the first N images (smoke runs). The shuffle has its own seeded generator.
    """
    dataset = torchvision.datasets.MNIST(
        find_mnist(data_dir), train=train, transform=transform, download=False
    )
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        generator=torch.Generator().manual_seed(seed),
    )


def _epochs_of(batches):
    # A DataLoader reshuffles on every pass; TensorBatches is told its epoch.
    def for_epoch(epoch: int):
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        return batches

    return for_epoch


def article_recipe(
    epochs: int = 10,
    seed: int = 0,
    data_dir: str | None = None,
    limit: int | None = None,
    in_memory: bool = False,
) -> Recipe:
    """The article's training script, its ``fc1`` corrected for 28x28 input.

    ``in_memory`` serves the same normalized tensors (see the test of
    :data:`ARTICLE_TRANSFORM`) from one in-memory tensor instead of the ``DataLoader``.
    """
    set_seed(seed)
    model = ArticleNet(normalization="none")  # its pipeline normalizes, with (0.5, 0.5)
    train, test = load_mnist(data_dir)
    if in_memory:
        images, labels = train.images[:limit], train.labels[:limit]
        normalized = to_float(images, *ARTICLE_NORMALIZATION)
        batches = TensorBatches(normalized, labels, 64, shuffle=True, seed=seed)
        epoch_batches = _epochs_of(batches)
    else:
        epoch_batches = _epochs_of(mnist_loader(True, ARTICLE_TRANSFORM, 64, seed, data_dir, limit))
    return Recipe(
        name="article, in memory" if in_memory else "article",
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        epochs=epochs,
        batches=epoch_batches,
        test_images=to_float(test.images, *ARTICLE_NORMALIZATION),
    )


def examples_recipe(
    epochs: int = 14, seed: int = 0, data_dir: str | None = None, limit: int | None = None
) -> Recipe:
    """pytorch/examples' MNIST recipe (its defaults: 14 epochs, batch 64, Adadelta, StepLR)."""
    set_seed(seed)
    model = ExamplesNet(normalization="none")  # its pipeline normalizes
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    loader = mnist_loader(True, EXAMPLES_TRANSFORM, 64, seed, data_dir, limit)
    _, test = load_mnist(data_dir)
    return Recipe(
        name="examples",
        model=model,
        optimizer=optimizer,
        epochs=epochs,
        batches=_epochs_of(loader),
        test_images=to_float(test.images, MNIST_MEAN, MNIST_STD),
        epoch_scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7),
    )


def hwr_recipe(config: TrainConfig, name: str = "hwrnet") -> Recipe:
    """The recipe ``hwr train`` runs for ``config``, built by the same
    :func:`~hwr_utils.train.prepare_training`, on the CPU (where ``race`` trains)."""
    setup = prepare_training(dataclasses.replace(config, device="cpu"))
    return Recipe(
        name=name,
        model=setup.model,
        optimizer=setup.optimizer,
        epochs=config.epochs,
        batches=_epochs_of(setup.batches),
        test_images=setup.test_x,
        task=setup.task,
        batch_scheduler=setup.scheduler,
        bf16=setup.bf16,
    )


def race(
    recipe: Recipe,
    test_labels: torch.Tensor,
    targets: Sequence[float] = (0.985, 0.99, 0.995),
    eval_every: int = 10_000,
    time_limit: float | None = None,
    progress: bool = True,
) -> RaceResult:
    """Train ``recipe`` on the CPU, measuring test accuracy every ``eval_every`` images.

    Only training is timed, data loading included (that is what a ``DataLoader`` costs);
    evaluations stop the clock. The race ends when every target is reached (if any are given),
    when the clock passes ``time_limit`` seconds, or after the recipe's epochs -- whichever
    comes first.
    """
    if eval_every < 1:
        raise ValueError(f"eval_every must be at least 1 image, got {eval_every}")
    device = torch.device("cpu")
    model, optimizer = recipe.model, recipe.optimizer
    time_to: dict[float, float | None] = dict.fromkeys(targets)
    curve: list[dict[str, float]] = []
    clock, seen, next_eval = 0.0, 0, eval_every
    loss_sum, loss_count = torch.zeros(()), 0  # training loss since the last evaluation
    bar = tqdm(total=time_limit, desc=recipe.name, unit="s", disable=not progress, leave=False)

    def checkpoint(epoch: float) -> bool:  # measure; True when the race is over
        nonlocal loss_sum, loss_count
        accuracy = evaluate(model, recipe.test_images, test_labels, device)["accuracy"]
        model.train()
        train_loss = loss_sum.item() / max(loss_count, 1)
        loss_sum, loss_count = torch.zeros(()), 0
        curve.append(
            {
                "seconds": clock,
                "images": seen,
                "epoch": epoch,
                "train_loss": train_loss,
                "accuracy": accuracy,
            }
        )
        for target in targets:
            if time_to[target] is None and accuracy >= target:
                time_to[target] = clock
        bar.update(int(clock) - bar.n)  # whole training seconds
        bar.set_postfix(accuracy=f"{accuracy:.4f}")
        done = bool(time_to) and all(t is not None for t in time_to.values())
        return done or (time_limit is not None and clock >= time_limit)

    over = False
    model.train()
    for epoch in range(recipe.epochs):
        batches = recipe.batches(epoch)
        steps = len(batches)
        tic = time.perf_counter()
        for step, (images, labels) in enumerate(batches, 1):
            loss, _ = train_step(
                model,
                recipe.task,
                optimizer,
                images,
                labels,
                recipe.batch_scheduler,
                recipe.bf16,
            )
            seen += len(labels)
            loss_sum += loss.float()  # read out once per evaluation
            loss_count += 1
            last = epoch + 1 == recipe.epochs and step == steps
            if seen >= next_eval or last:
                clock += time.perf_counter() - tic
                over = checkpoint(epoch + step / steps)
                if over:
                    break
                next_eval += eval_every
                tic = time.perf_counter()
        else:
            clock += time.perf_counter() - tic
        if over:
            break
        if recipe.epoch_scheduler is not None:
            recipe.epoch_scheduler.step()
    bar.close()
    return RaceResult(recipe.name, curve, time_to, seen / clock if clock else 0.0)
