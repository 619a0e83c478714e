"""What is being learnt, as the training engine sees it: the seam between one engine and many
kinds of model (in the manner of d2l's ``training_step``).

The engine (:mod:`hwr_utils.train`) knows nothing of digits. It asks the task for the training
``loss``, for per-batch ``sums`` that add up over a dataset (so evaluation can run in batches,
or on several processes, and divide once), for the ``metrics`` those sums give, and for
``decode``: outputs to predictions. A checkpoint records its task's ``name`` and ``config``,
and export asks the task which input dimensions are dynamic. Introduced in the training chapter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F

from .ctc import ctc_loss, edit_distance, greedy_decode, sequence_metrics, sequence_sums, text_of
from .data import CLASS_NAMES
from .digit_strings import STRIP_HEIGHT, STRIP_WIDTH
from .errors import ConfigError
from .lines import LINE_HEIGHT


class Task(Protocol):
    """The interface :func:`hwr_utils.train.fit` trains through."""

    name: ClassVar[str]
    input_shape: ClassVar[tuple[int, ...]]  # one example, without the batch dimension
    # Input dimensions that may vary (export): index -> (name, smallest size).
    dynamic_dims: ClassVar[dict[int, tuple[str, int]]]
    output_dynamic_dims: ClassVar[dict[int, str]]  # output index -> name, for the same
    # Inputs of different widths, padded on the right with background (lines): evaluation reads
    # each alone, over its own width (predict_lines); and how many examples evaluation runs at
    # once (lines: one).
    variable_width: ClassVar[bool]
    eval_batch_size: ClassVar[int]
    class_names: list[str]  # what each output unit stands for

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training objective, averaged over the batch (what ``backward`` is called on)."""
        ...

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Totals over one batch that add up over a dataset; ``"count"`` is the batch's size."""
        ...

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """The metrics that summed :meth:`sums` give (e.g. mean loss and accuracy)."""
        ...

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """Predictions from model outputs."""
        ...

    def texts(self, outputs: torch.Tensor) -> list[str]:
        """What a person reads in each example's outputs: a class name, or a text."""
        ...

    def config(self) -> dict[str, Any]:
        """The settings that rebuild this task with :func:`build_task`."""
        ...


@dataclass
class Classification:
    """One digit per image: logits (N, C) against integer labels (N,).

    The training loss is cross-entropy with optional ``label_smoothing`` and per-class
    ``class_weights``; evaluation reports the plain cross-entropy (no smoothing, no weights),
    so validation losses of different recipes compare, and the accuracy.
    """

    name: ClassVar[str] = "classification"
    input_shape: ClassVar[tuple[int, ...]] = (1, 28, 28)
    dynamic_dims: ClassVar[dict[int, tuple[str, int]]] = {0: ("batch", 1)}
    output_dynamic_dims: ClassVar[dict[int, str]] = {0: "batch"}
    variable_width: ClassVar[bool] = False  # inputs all have the same size
    eval_batch_size: ClassVar[int] = 1000

    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    label_smoothing: float = 0.0
    class_weights: list[float] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.class_weights is not None and len(self.class_weights) != len(self.class_names):
            raise ConfigError(
                f"class_weights has {len(self.class_weights)} entries for "
                f"{len(self.class_names)} classes"
            )

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = None
        if self.class_weights is not None:
            weight = torch.tensor(self.class_weights, device=outputs.device)
        return F.cross_entropy(
            outputs, targets, weight=weight, label_smoothing=self.label_smoothing
        )

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        outputs = outputs.float()
        return {
            "loss": F.cross_entropy(outputs.double(), targets, reduction="sum").item(),
            "correct": (outputs.argmax(1) == targets).sum().item(),
            "count": len(targets),
        }

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        count = max(sums["count"], 1)
        return {"loss": sums["loss"] / count, "accuracy": sums["correct"] / count}

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.argmax(1)

    def texts(self, outputs: torch.Tensor) -> list[str]:
        return [self.class_names[i] for i in self.decode(outputs).tolist()]

    def config(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CTCRecognition:
    """A whole number per strip: per-column logits (N, T, C + 1), the CTC blank last, against
    digit sequences (N, L) padded with -1 (chapter "Reading whole numbers").

    The loss is CTC (:func:`~hwr_utils.ctc.ctc_loss`, per strip divided by its length);
    ``accuracy`` is the share of strips read exactly (greedy decoding), ``cer`` the character
    error rate, and ``accuracy_L`` the accuracy on strips of L digits.
    """

    name: ClassVar[str] = "ctc"
    input_shape: ClassVar[tuple[int, ...]] = (1, STRIP_HEIGHT, STRIP_WIDTH)
    # Narrower than 8 pixels (two output columns), the exported graph's own guards refuse.
    dynamic_dims: ClassVar[dict[int, tuple[str, int]]] = {0: ("batch", 1), 3: ("width", 8)}
    output_dynamic_dims: ClassVar[dict[int, str]] = {0: "batch", 1: "columns"}
    variable_width: ClassVar[bool] = False  # strips all have the same width
    eval_batch_size: ClassVar[int] = 1000

    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ctc_loss(outputs, targets)

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        lengths = (targets >= 0).sum(1).clamp(min=1)
        per_strip = ctc_loss(outputs, targets, reduction="none") / lengths
        return {
            **sequence_sums(greedy_decode(outputs), targets),
            "loss": per_strip.double().sum().item(),
        }

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {"loss": sums["loss"] / max(sums["count"], 1), **sequence_metrics(sums)}

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """Greedy decoding, as (N, T) symbol indices padded with -1."""
        texts = greedy_decode(outputs)
        decoded = torch.full((len(texts), outputs.shape[1]), -1, dtype=torch.long)
        for row, text in zip(decoded, texts, strict=True):
            row[: len(text)] = torch.tensor(text, dtype=torch.long)
        return decoded

    def texts(self, outputs_or_targets: torch.Tensor) -> list[str]:
        """Greedy readings of (N, T, C + 1) outputs, or the texts of (N, L) targets."""
        rows = outputs_or_targets
        indices = greedy_decode(rows) if rows.ndim == 3 else text_of(rows)
        return ["".join(self.class_names[i] for i in row) for row in indices]

    def config(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LineRecognition(CTCRecognition):
    """A line of handwritten text per image (Part V): per-column logits (N, T, C + 1) of a line
    reader against texts (N, L) of symbol indices into ``class_names`` (the alphabet), padded
    with -1.

    As :class:`CTCRecognition`, plus: a model that returns a *shortcut* in training mode,
    ``(logits, shortcut)``, gets ``shortcut_weight`` times the shortcut's CTC loss added to the
    main loss; the metrics add the word error rate (``wer``: word edits over reference words);
    and lines differ in width: training batches are cropped to their widest line
    (:class:`~hwr_utils.lines.LineBatches`), evaluation reads each line alone
    (:func:`~hwr_utils.predict.predict_lines`).
    """

    name: ClassVar[str] = "lines"
    input_shape: ClassVar[tuple[int, ...]] = (1, LINE_HEIGHT, 400)
    variable_width: ClassVar[bool] = True
    eval_batch_size: ClassVar[int] = 1

    class_names: list[str] = field(default_factory=list)
    shortcut_weight: float = 0.1

    def loss(self, outputs, targets: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, tuple):
            logits, shortcut = outputs
            return ctc_loss(logits, targets) + self.shortcut_weight * ctc_loss(shortcut, targets)
        return ctc_loss(outputs, targets)

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        sums = super().sums(outputs, targets)
        sums = {k: v for k, v in sums.items() if not k.startswith(("count_", "exact_"))}
        for guess, truth in zip(self.texts(outputs), self.texts(targets), strict=True):
            sums["word_edits"] = sums.get("word_edits", 0) + edit_distance(
                guess.split(), truth.split()
            )
            sums["words"] = sums.get("words", 0) + len(truth.split())
        return sums

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        wer = sums.get("word_edits", 0) / max(sums.get("words", 0), 1)
        return {**super().metrics(sums), "wer": wer}


TASKS: dict[str, type] = {
    "classification": Classification,
    "ctc": CTCRecognition,
    "lines": LineRecognition,
}


def build_task(name: str, **config: Any) -> Task:
    """Rebuild a task from its name and :meth:`Task.config` (as a checkpoint records them)."""
    try:
        return TASKS[name](**config)
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None
