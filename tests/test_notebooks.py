"""Every chapter runs top to bottom in smoke mode through papermill, and parameters are strict.

(nbval re-runs them too, checking the stored outputs of ``# NBVAL_CHECK_OUTPUT`` cells: see the
``--nbval-lax`` option in pyproject.toml and book/conftest.py.)
"""

from pathlib import Path

import nbformat
import pytest

from hwr_utils.notebooks import run_notebook, smoke_mode

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(p for p in BOOK.glob("*.ipynb") if not p.name.endswith(".out.ipynb"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_in_smoke_mode(chapter, tmp_path):
    output = run_notebook(chapter, {"SMOKE": True}, tmp_path / chapter.name)
    executed = nbformat.read(output, as_version=4)
    errors = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors


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
    path = tmp_path / "chapter.ipynb"
    nbformat.write(notebook, path)
    with pytest.raises(ValueError, match="no parameter.*SMOKEE"):
        run_notebook(path, {"SMOKEE": True})


def test_smoke_mode_reads_the_environment(monkeypatch):
    monkeypatch.delenv("HWR_SMOKE", raising=False)
    assert smoke_mode(False) is False and smoke_mode(True) is True
    monkeypatch.setenv("HWR_SMOKE", "1")
    assert smoke_mode(False) is True
    monkeypatch.setenv("HWR_SMOKE", "0")
    assert smoke_mode(False) is False
