"""Chapters have strict papermill parameters with a smoke switch.

Each chapter is *executed* once per test run, by nbval (smoke mode through ``HWR_SMOKE=1``, see
book/conftest.py): a cell that raises fails, and cells tagged ``nbval-check-output`` must
reproduce their stored output. Here only what nbval cannot check: the parameters, and that
what a reader sees in Jupyter or Colab is not raw Sphinx markup or test-harness markers.
"""

import re
from pathlib import Path

import nbformat
import pytest

from hwr_utils.errors import ConfigError
from hwr_utils.teaching.notebooks import run_notebook, smoke_mode
from hwr_utils.teaching.source import show_source
from hwr_utils.train import train_step

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(p for p in BOOK.glob("*.ipynb") if not p.name.endswith(".out.ipynb"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_has_literal_parameters_with_smoke_switch(chapter):
    notebook = nbformat.read(chapter, as_version=4)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    namespace: dict = {}
    exec(compile(cells[0].source, "parameters", "exec"), {"__builtins__": {}}, namespace)
    assert namespace.get("SMOKE") is False, "full-size default: SMOKE = False"


def test_misspelt_parameter_fails(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cell = nbformat.v4.new_code_cell("SMOKE = False")
    cell.metadata["tags"] = ["parameters"]
    notebook.cells.append(cell)
    notebook.cells.append(nbformat.v4.new_code_cell("print('ran with', SMOKE)"))
    path = tmp_path / "chapter.ipynb"
    nbformat.write(notebook, path)
    with pytest.raises(ConfigError, match="no parameter.*SMOKEE"):
        run_notebook(path, {"SMOKEE": True}, tmp_path / "out.ipynb")
    output = run_notebook(path, {"SMOKE": True}, tmp_path / "out.ipynb")  # a known one runs
    executed = nbformat.read(output, as_version=4)
    assert "ran with True" in "".join(o.get("text", "") for o in executed.cells[-1].outputs)


def test_smoke_mode_reads_the_environment(monkeypatch):
    monkeypatch.delenv("HWR_SMOKE", raising=False)
    assert smoke_mode(False) is False and smoke_mode(True) is True
    monkeypatch.setenv("HWR_SMOKE", "1")
    assert smoke_mode(False) is True
    monkeypatch.setenv("HWR_SMOKE", "0")
    assert smoke_mode(False) is False


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_reads_the_same_in_jupyter_and_in_the_book(chapter):
    notebook = nbformat.read(chapter, as_version=4)
    for number, cell in enumerate(notebook.cells):
        where = f"{chapter.name}, cell {number}"
        if cell.cell_type == "markdown":
            # Sphinx directives (literalinclude, ::: admonitions) show as raw text in a notebook.
            assert "{literalinclude}" not in cell.source, where + ": use show_source()"
            assert not [line for line in cell.source.splitlines() if line.startswith(":::")], (
                where + ": use <details> for solutions"
            )
        else:
            # Harness markers belong in cell tags, which readers do not see.
            assert "NBVAL_" not in cell.source, where + ": use a nbval-* tag"
            if cell.source.startswith("show_source("):
                assert "nbval-check-output" in cell.metadata.get("tags", []), (
                    where + ": shown source must be checked against the library"
                )


def test_show_source_is_the_installed_code():
    shown = show_source(train_step)
    assert shown.origin == "hwr_utils/train.py"
    assert shown.code.startswith("def train_step(") and "optimizer.step()" in shown.code
    assert shown._repr_markdown_().startswith("`hwr_utils/train.py`\n\n```python\ndef train_step(")
    with pytest.raises(TypeError, match="no Python source"):
        show_source(3)


def test_no_number_awaits_its_full_size_run():
    # Prose written before a full-size run marks the numbers it expects with ⟦?⟧; each must be
    # replaced by the executed output's value before the book is published.
    pages = [*CHAPTERS, *BOOK.glob("*.md"), BOOK.parent / "README.md"]
    marked = [p.name for p in pages if "⟦?⟧" in p.read_text(encoding="utf-8")]
    assert not marked, f"numbers still marked ⟦?⟧ in: {', '.join(marked)}"


def test_every_work_a_chapter_cites_is_on_the_references_page():
    collected = " ".join((BOOK / "references.md").read_text(encoding="utf-8").split())
    for chapter in CHAPTERS:
        cells = nbformat.read(chapter, as_version=4).cells
        sections = [
            c.source.split("## References", 1)[1] for c in cells if "## References" in c.source
        ]
        assert sections, f"{chapter.name} has no References section"
        for entry in sections[0].split("\n- ")[1:]:
            work = re.match(r"[^(]+\(\d{4}\)", " ".join(entry.split()))  # authors (year)
            assert work and work.group(0) in collected, f"{chapter.name}: {entry[:60]} missing"


def test_introduction_states_the_stored_runs_times():
    # The introduction's table of full-size run times is read off the stored notebooks.
    intro = (BOOK / "intro.md").read_text(encoding="utf-8")
    for chapter in CHAPTERS:
        seconds = round(nbformat.read(chapter, as_version=4).metadata["papermill"]["duration"])
        row = re.search(rf"\| {{doc}}`{chapter.stem}`[^|]*\| (\d+) s \|", intro)
        assert row, f"no time for {chapter.stem} in intro.md"
        assert int(row.group(1)) == seconds, f"{chapter.stem}: {row.group(1)} s, stored {seconds} s"


def test_introduction_states_each_chapters_reading_time():
    from hwr_utils.teaching.notebooks import reading_minutes

    intro = (BOOK / "intro.md").read_text(encoding="utf-8")
    for chapter in CHAPTERS:
        row = re.search(rf"\| {{doc}}`{chapter.stem}`[^|]*\| \d+ s \| (\d+) min \|", intro)
        assert row, f"no reading time for {chapter.stem} in intro.md"
        assert int(row.group(1)) == reading_minutes(chapter), chapter.stem


def test_pytorch_error_messages_in_checked_cells_are_sanitized():
    # PyTorch rewords its errors between releases: a checked cell may show one (readers see the
    # real text), but nbval must compare it through book/nbval_sanitize.cfg.
    from nbval.plugin import get_sanitize_patterns

    config = (BOOK / "nbval_sanitize.cfg").read_text(encoding="utf-8")
    patterns = get_sanitize_patterns(config)
    assert len(patterns) >= 3
    for chapter in CHAPTERS:
        for number, cell in enumerate(nbformat.read(chapter, as_version=4).cells):
            if "nbval-check-output" not in cell.metadata.get("tags", []):
                continue
            text = "".join(o.get("text", "") for o in cell.get("outputs", []))
            for regex, replace in patterns:
                text = re.sub(regex, replace, text)
            unsanitized = re.findall(r"RuntimeError: (?!\[)[^\n]*", text)
            assert not unsanitized, f"{chapter.name}, cell {number}: {unsanitized[0][:80]}"
