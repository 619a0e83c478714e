"""The roadmap figure under each chapter's title is the one ``hwr_utils.teaching.roadmap`` draws
for that chapter."""

from pathlib import Path

import nbformat
import pytest

from hwr_utils.errors import ConfigError
from hwr_utils.teaching import roadmap

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(p for p in BOOK.glob("*.ipynb") if not p.name.endswith(".out.ipynb"))


def test_the_drawings_in_the_book_are_the_ones_the_module_draws():
    assert roadmap.out_of_date() == []  # python -m hwr_utils.teaching.roadmap redraws them


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_chapter_shows_its_roadmap_under_its_title(chapter):
    assert chapter.stem in roadmap.CHAPTER_STAGES
    cells = nbformat.read(chapter, as_version=4).cells
    title = next(c for c in cells if c.cell_type == "markdown" and c.source.startswith("# "))
    assert f"](figures/roadmap/{chapter.stem}.svg)" in title.source.split("\n\n")[1]


def test_a_stage_that_does_not_exist_is_refused():
    with pytest.raises(ConfigError, match="unknown stage"):
        roadmap.draw_roadmap(("photo", "magic"))
