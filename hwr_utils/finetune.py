"""Fine-tuning a trained model on a new handwriting dataset, and freezing done right.

The article "unfreezes" layers with ``model.fc1.requires_grad = True``, which sets a new,
meaningless attribute on the *module* and leaves every parameter as it was. Freezing is a
property of each parameter (``requires_grad_``), the optimizer should only be given what it
may change, and a frozen batch-norm layer must also stop updating its running statistics,
which happens in training mode whatever ``requires_grad`` says.

The new dataset is USPS (real scans of ZIP codes, :func:`hwr_utils.data.load_usps`), brought
to MNIST's conventions with :func:`hwr_utils.data.usps_as_mnist`. Introduced in the fine-tuning
chapter.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from .augment import random_affine
from .errors import ConfigError
from .models import num_classes_of, reset_classifier
from .tasks import Classification, Task
from .train import train_step

Method = Literal["scratch", "linear_probe", "head", "full"]
METHODS: tuple[Method, ...] = ("scratch", "linear_probe", "head", "full")


def stratified_split(
    labels: torch.Tensor, per_class: int | None, seed: int, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices of ``per_class`` examples of every class (all of them if ``None``), drawn with
    ``seed`` from the examples not in ``exclude``."""
    generator = torch.Generator().manual_seed(seed)
    allowed = torch.ones(len(labels), dtype=torch.bool)
    if exclude is not None:
        allowed[exclude] = False
    chosen = []
    for label in labels.unique():
        pool = torch.nonzero(allowed & (labels == label)).flatten()
        pool = pool[torch.randperm(len(pool), generator=generator)]
        chosen.append(pool if per_class is None else pool[:per_class])
    return torch.cat(chosen).sort().values


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Freeze everything but the classifier: ``requires_grad_(False)`` on every parameter of
    ``model.features``. (Setting ``module.requires_grad = False`` would do nothing.)"""
    model.features.requires_grad_(False)
    return model


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer should be given: those that require gradients."""
    return [p for p in model.parameters() if p.requires_grad]


def train_mode(model: nn.Module, freeze_bn_stats: bool = False) -> nn.Module:
    """``model.train()``, except batch-norm layers whose parameters are all frozen stay in eval
    mode, so their running mean and variance stay what pre-training measured. With
    ``freeze_bn_stats`` every batch-norm layer keeps its statistics (its scale and shift may
    still train): tiny fine-tuning batches then cannot drag them around."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            parameters = list(module.parameters(recurse=False))
            if freeze_bn_stats or (parameters and not any(p.requires_grad for p in parameters)):
                module.eval()
    return model


def changed_tensors(before: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``model`` that differ from the ``before`` copy of
    its ``state_dict`` (counters such as ``num_batches_tracked`` included)."""
    return [
        name for name, value in model.state_dict().items() if not torch.equal(value, before[name])
    ]


def finetune(
    pretrained: nn.Module | None,
    method: Method,
    images: torch.Tensor,
    labels: torch.Tensor,
    build: Callable[[], nn.Module],
    steps: int = 150,
    batch_size: int = 32,
    lr: float = 0.01,
    backbone_lr_factor: float = 0.1,
    seed: int = 0,
    freeze_bn_stats: bool = False,
    augment: float = 0.0,
    task: Task | None = None,
    set_train_mode: Callable[[nn.Module, bool], nn.Module] = train_mode,
) -> nn.Module:
    """Adapt a model to (``images``, ``labels``) with one of four methods; return it in eval mode.

    * ``scratch``: a fresh model from ``build()``, all layers trained;
    * ``linear_probe``: the pre-trained backbone frozen, a *new* linear head trained
      (:func:`~hwr_utils.models.reset_classifier`, as many classes as before);
    * ``head``: the backbone frozen, the pre-trained head trained further;
    * ``full``: everything trained, the backbone (``model.features``) at ``backbone_lr_factor``
      times the rate of the rest (the head, and a reader's column layers).

    ``images`` are pixels in [0, 1], ``labels`` what ``task`` trains on: by default
    :class:`~hwr_utils.tasks.Classification` of (N, 1, 28, 28) digits; the number reader of the
    chapter "Reading whole numbers" fine-tunes on strips with
    :class:`~hwr_utils.tasks.CTCRecognition`. Adam for ``steps`` steps with cosine decay,
    each one the training engine's :func:`~hwr_utils.train.train_step`; frozen batch-norm layers
    stay in eval mode, all of them with ``freeze_bn_stats`` (``set_train_mode``, by default
    :func:`train_mode`: pass another to experiment, e.g. plain ``model.train()``). ``augment``
    is the strength of :func:`~hwr_utils.augment.random_affine` applied to each batch (0: none).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    torch.manual_seed(seed)
    if method == "scratch":
        model = build()
        groups = [{"params": list(model.parameters())}]
    else:
        if pretrained is None:
            raise ConfigError(f"method {method!r} needs a pre-trained model")
        model = copy.deepcopy(pretrained)
        if method == "linear_probe":
            reset_classifier(model, num_classes_of(model))
        if method in ("linear_probe", "head"):
            freeze_backbone(model)
            groups = [{"params": trainable_parameters(model)}]
        else:
            backbone = list(model.features.parameters())
            rest = [p for p in model.parameters() if all(p is not b for b in backbone)]
            groups = [{"params": backbone, "lr": lr * backbone_lr_factor}, {"params": rest}]
    optimizer = torch.optim.Adam(groups, lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    task = Classification() if task is None else task
    set_train_mode(model, freeze_bn_stats)
    for _ in range(steps):
        index = torch.randint(len(labels), (min(batch_size, len(labels)),), generator=generator)
        batch = images[index] if not augment else random_affine(images[index], strength=augment)
        train_step(model, task, optimizer, batch, labels[index], scheduler)
    return model.eval()
