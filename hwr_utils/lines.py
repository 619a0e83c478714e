"""Lines of handwriting as the training engine sees them (Part V, "Reading handwritten lines").

A line is an image of height :data:`LINE_HEIGHT` and any width, ink bright on a zero background
(MNIST's polarity). A split of lines is held as one uint8 tensor (N, H, W_max), each line
left-aligned and padded on the right with background, with its true width beside it. Training
reads lines in batches of similar widths (:class:`LineBatches`), each batch cropped to its
widest line (:func:`crop_to_widest`): a line of 300 pixels batched with one of 1,500 would
otherwise cost five times its own work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .data import TensorBatches, pixels_to_float
from .distributed import shard

#: Height, in pixels, every line is scaled to (keeping its aspect ratio).
LINE_HEIGHT = 40
#: Columns of background a line is read with after its last ink. In training nearly every line
#: is followed by padding (a batch is as wide as its widest line), and a reader trained so
#: emits some of a line's last letters in the columns after its ink: read flush with its ink,
#: a line can lose them.
READ_MARGIN = 16


def ink_widths(images: torch.Tensor) -> torch.Tensor:
    """The width of each image of (N, ..., W), padding excluded: one past its last column with
    any ink (0 for a blank image)."""
    inked = images.flatten(1, -2).amax(1) > 0  # (N, W)
    columns = torch.arange(1, images.shape[-1] + 1, device=images.device)
    return (inked * columns).amax(1)


def crop_to_widest(images: torch.Tensor) -> torch.Tensor:
    """Crop a batch (N, C, H, W), padded on the right with zeros, to its last column that holds
    any ink in any image: the columns after it are padding in every image."""
    inked = images.flatten(0, 2).amax(0) > 0  # (W,): a column with ink somewhere
    last = int(inked.nonzero().max()) + 1 if inked.any() else 1
    return images[..., :last]


class LineBatches(TensorBatches):
    """:class:`~hwr_utils.data.TensorBatches` for lines of different widths: each epoch's
    shuffled order is cut into pools of ``pool`` batches, each pool sorted by width and cut into
    batches, and the batches are served in a shuffled order. Batches hold lines of similar
    widths, cropped to the widest (:func:`crop_to_widest`), and the draw depends only on
    ``seed + epoch``, so ``--resume`` sees the same batches as an uninterrupted run."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        widths: torch.Tensor,
        batch_size: int,
        seed: int = 0,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        pool: int = 20,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        full = len(targets) >= batch_size  # then every batch is full (drop_last)
        super().__init__(images, targets, batch_size, shuffle=True, seed=seed, augment=augment,
                         drop_last=full, rank=rank, world_size=world_size)  # fmt: skip
        if len(widths) != len(targets):
            raise ValueError(f"{len(widths)} widths for {len(targets)} lines")
        self.widths, self.pool = widths.cpu(), pool

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = shard(torch.randperm(len(self.targets), generator=generator), self.rank,
                      self.world_size)  # fmt: skip
        order = order[: len(self) * self.batch_size]  # drop_last: every batch full
        span = self.pool * self.batch_size
        pooled = [chunk[self.widths[chunk].argsort(stable=True)] for chunk in order.split(span)]
        batches = torch.cat(pooled).split(self.batch_size)
        for b in torch.randperm(len(batches), generator=generator).tolist():
            idx = batches[b].to(self.images.device)
            x = crop_to_widest(self.images[idx])
            if self.augment is not None:
                x = self.augment(x)
            yield pixels_to_float(x), self.targets[idx]


@dataclass
class PaddedLines:
    """A split of lines as the engine trains on them: ``images`` uint8 (N, H, W_max), each line
    left-aligned on a zero background, ``widths`` (N,) their true widths, ``labels`` (N, L_max)
    symbol indices into the alphabet padded with -1, and for reports each line's ``texts``,
    ``writers`` and ``consent`` (a line of the consent paragraph many writers copied)."""

    images: torch.Tensor
    labels: torch.Tensor
    widths: torch.Tensor
    texts: list[str]
    writers: list[str]
    consent: torch.Tensor

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: torch.Tensor | list[int]) -> PaddedLines:
        """The lines at ``index``, in that order (cropped to the widest of them)."""
        index = torch.as_tensor(index, dtype=torch.long)
        width = int(self.widths[index].max()) if len(index) else 1
        rows = index.tolist()
        return PaddedLines(self.images[index, :, :width], self.labels[index], self.widths[index],
                           [self.texts[i] for i in rows], [self.writers[i] for i in rows],
                           self.consent[index])  # fmt: skip


def pad_lines(
    images: list[torch.Tensor],
    texts: list[str],
    alphabet: list[str],
    writers: list[str] | None = None,
    consent: list[bool] | None = None,
) -> PaddedLines:
    """Lines (uint8 (H, W_i) each) and their texts as one :class:`PaddedLines`. A symbol outside
    ``alphabet`` cannot be a label: it is left out of ``labels`` but stays in ``texts`` (the
    dataset reports such symbols; scores computed on ``texts`` count them as errors)."""
    if not images:
        raise ValueError("pad_lines needs at least one line")
    height = images[0].shape[0]
    widths = torch.tensor([image.shape[1] for image in images])
    padded = torch.zeros(len(images), height, int(widths.max()), dtype=torch.uint8)
    for row, image in zip(padded, images, strict=True):
        row[:, : image.shape[1]] = image
    index = {symbol: i for i, symbol in enumerate(alphabet)}
    encoded = [[index[c] for c in text if c in index] for text in texts]
    labels = torch.full((len(texts), max(1, max(map(len, encoded)))), -1, dtype=torch.long)
    for row, symbols in zip(labels, encoded, strict=True):
        row[: len(symbols)] = torch.tensor(symbols, dtype=torch.long)
    writers = list(writers) if writers is not None else [""] * len(texts)
    consent_flags = torch.tensor(consent if consent is not None else [False] * len(texts))
    return PaddedLines(padded, labels, widths, list(texts), writers, consent_flags)
