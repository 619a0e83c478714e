"""The book's roadmap: one figure of the whole pipeline, from a photo to an exported model, drawn
once per chapter with the stages that chapter teaches highlighted, and shown under its title.

Redraw the figures (``book/figures/roadmap/CHAPTER.svg``), or list those out of date (CI)::

    python -m hwr_utils.teaching.roadmap
    python -m hwr_utils.teaching.roadmap --check

The drawings are made from :data:`STAGES` and :data:`CHAPTER_STAGES` by matplotlib, with fixed
metadata and a fixed hash salt, so the same versions draw the same bytes and a test can check
that the files in the book are the ones this module draws.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BOOK = Path(__file__).resolve().parents[2] / "book"
FOLDER = BOOK / "figures" / "roadmap"

#: The pipeline, in order, each stage with the words its box shows.
STAGES: dict[str, str] = {
    "photo": "photo\nor scan",
    "pixels": "pixels\n(tensor)",
    "network": "network",
    "probabilities": "probabilities\n(softmax, CTC)",
    "loss": "loss",
    "update": "gradients,\nupdate",
    "evaluation": "evaluation",
    "export": "export,\ndeployment",
}

#: The stages each chapter teaches (its boxes are highlighted).
CHAPTER_STAGES: dict[str, tuple[str, ...]] = {
    "start_here": ("photo", "pixels", "network", "probabilities", "loss", "update", "evaluation"),
    "preliminaries": ("pixels", "network", "loss", "update"),
    "preprocessing": ("photo", "pixels"),
    "convolution": ("network",),
    "softmax_optimizers": ("probabilities", "loss", "update"),
    "training": ("network", "loss", "update", "evaluation"),
    "recipe": ("pixels", "update", "evaluation"),
    "finetuning": ("update", "evaluation"),
    "evaluation": ("evaluation",),
    "deployment": ("export",),
    "reading_numbers": ("photo", "network", "probabilities", "loss", "evaluation"),
    "reading_lines": ("photo", "pixels", "network", "probabilities", "evaluation"),
    "scaling_out": ("update",),
}

# The training loop: from the update back to the network, drawn as an arc under the boxes.
LOOP = ("update", "network")


def draw_roadmap(highlight: tuple[str, ...] = ()) -> Figure:
    """The pipeline as a row of boxes joined by arrows, the training loop as an arc under them;
    the boxes named in ``highlight`` filled, the others grey. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    unknown = set(highlight) - set(STAGES)
    if unknown:
        raise ConfigError(f"unknown stage(s) {sorted(unknown)}; the stages are {list(STAGES)}")
    width, gap, height = 1.0, 0.35, 0.62
    fig, ax = plt.subplots(figsize=(10.5, 1.7))
    centres = {}
    for k, (stage, words) in enumerate(STAGES.items()):
        x = k * (width + gap)
        centres[stage] = x + width / 2
        lit = stage in highlight
        ax.add_patch(
            FancyBboxPatch(
                (x, 0), width, height, boxstyle="round,pad=0.02,rounding_size=0.08",
                facecolor="#1f77b4" if lit else "#e8e8e8",
                edgecolor="#1f77b4" if lit else "#b0b0b0", linewidth=1.2,
            )
        )  # fmt: skip
        ax.text(
            x + width / 2, height / 2, words, ha="center", va="center", fontsize=8.5,
            color="white" if lit else "#606060", fontweight="bold" if lit else "normal",
        )  # fmt: skip
        if k:
            ax.add_patch(
                FancyArrowPatch(
                    (x - gap + 0.03, height / 2), (x - 0.03, height / 2),
                    arrowstyle="-|>", mutation_scale=10, color="#808080",
                )
            )  # fmt: skip
    start, end = LOOP
    ax.add_patch(
        FancyArrowPatch(
            (centres[start], -0.02), (centres[end], -0.02), connectionstyle="arc3,rad=-0.25",
            arrowstyle="-|>", mutation_scale=10, color="#808080", linestyle="--",
        )
    )  # fmt: skip
    ax.text((centres[start] + centres[end]) / 2, -0.42, "the training loop", ha="center",
            fontsize=8, color="#606060")  # fmt: skip
    ax.set_xlim(-0.1, len(STAGES) * (width + gap) - gap + 0.1)
    ax.set_ylim(-0.55, height + 0.08)
    ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, top=0.98, bottom=0.02)
    return fig


def svg_bytes(highlight: tuple[str, ...]) -> bytes:
    """:func:`draw_roadmap` as SVG, with nothing in it that changes between runs."""
    import matplotlib
    import matplotlib.pyplot as plt

    fig = draw_roadmap(highlight)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "hwr-roadmap", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return buffer.getvalue()


def out_of_date(folder: Path = FOLDER, write: bool = False) -> list[str]:
    """The chapters whose drawing in ``folder`` is missing or not what this module draws
    (each redrawn first when ``write``)."""
    stale = []
    for chapter, highlight in CHAPTER_STAGES.items():
        path = folder / f"{chapter}.svg"
        drawn = svg_bytes(highlight)
        if not path.is_file() or path.read_bytes() != drawn:
            stale.append(chapter)
            if write:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(drawn)
    return stale


def main(argv: list[str] | None = None) -> int:
    """``python -m hwr_utils.teaching.roadmap [--check]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list what is out of date")
    args = parser.parse_args(argv)
    stale = out_of_date(write=not args.check)
    for chapter in stale:
        print(("out of date: " if args.check else "drew: ") + f"{chapter}.svg")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
