"""Colab: one address for the repository, a setup cell first in every chapter, and a simulated
Colab in which a chapter opened alone installs the library and runs to its end."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import types
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hwr_utils.data import find_mnist
from hwr_utils.errors import ConfigError
from hwr_utils.teaching import colab

pytestmark = pytest.mark.slow  # pytest -m "not slow" leaves it out

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = colab.chapters(BOOK)
URL, BRANCH = colab.repository(BOOK)


def test_everything_derives_from_the_one_address():
    assert colab.out_of_date(BOOK) == [], "run: python -m hwr_utils.teaching.colab"
    assert sorted(p.name for p in CHAPTERS) == sorted(p.name for p in BOOK.glob("*.ipynb"))


def test_moving_the_repository_is_one_edit_and_one_command(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    for name in ["_config.yml", "_toc.yml", "intro.md", *(p.name for p in CHAPTERS)]:
        shutil.copy(BOOK / name, book / name)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    moved = "https://github.com/someone/a-fork"
    config = book / "_config.yml"
    config.write_text(config.read_text().replace(URL, moved))
    stale = colab.out_of_date(book)
    assert sorted(stale) == sorted([*(p.name for p in CHAPTERS), "intro.md", "README.md"])
    assert sorted(colab.out_of_date(book, write=True)) == sorted(stale)
    assert colab.out_of_date(book) == []
    for path in [*book.glob("*.ipynb"), book / "intro.md", tmp_path / "README.md"]:
        text = path.read_text()
        assert "someone/a-fork" in text and URL.removeprefix("https://github.com/") not in text


def test_a_repository_that_is_not_on_github_is_refused(tmp_path):
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://example.com/x\n")
    with pytest.raises(ConfigError, match="not a GitHub repository"):
        colab.repository(tmp_path)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_badge_and_setup_cell_come_first(chapter):
    cells = nbformat.read(chapter, as_version=4).cells
    assert cells[0].cell_type == "markdown" and cells[0].source == colab.badge_source(
        URL, BRANCH, chapter.stem
    )
    assert f"({colab.colab_link(URL, BRANCH, chapter.stem)})" in cells[0].source
    assert cells[1].cell_type == "code" and cells[1].source.startswith(colab.SETUP_FIRST_LINE)


class FakeRuntime:
    """Runs a chapter's setup cell with ``subprocess.run`` recorded instead of run."""

    def __init__(self, chapter: Path, monkeypatch, folder: Path, fails: bool = False):
        self.source = nbformat.read(chapter, as_version=4).cells[1].source
        self.commands: list[list[str]] = []
        self.fails = fails
        monkeypatch.chdir(folder)  # restored after the test
        monkeypatch.setattr(subprocess, "run", self.run)

    def run(self, command, **kwargs):
        self.commands.append(list(command))
        if self.fails:
            return subprocess.CompletedProcess(command, 128, "", "fatal: unable to access: no DNS")
        if command[:2] == ["git", "clone"]:
            (Path(command[-1]) / "book").mkdir(parents=True)
        return subprocess.CompletedProcess(command, 0, "", "")

    def execute(self) -> str:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            exec(compile(self.source, "setup", "exec"), {"__name__": "__main__"})
        return printed.getvalue()


@pytest.fixture
def colab_runtime(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.delenv("HWR_BOOK_ROOT", raising=False)
    monkeypatch.delenv("HWR_REPO_URL", raising=False)
    return monkeypatch


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_setup_cell_does_nothing_outside_colab(chapter, monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    runtime = FakeRuntime(chapter, monkeypatch, tmp_path)
    assert runtime.execute() == "" and runtime.commands == []
    assert Path.cwd() == tmp_path and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_setup_cell_on_colab_clones_installs_and_moves_in_once(chapter, colab_runtime, tmp_path):
    runtime = FakeRuntime(chapter, colab_runtime, tmp_path)
    with colab_runtime.context() as not_installed:
        not_installed.setitem(sys.modules, "hwr_utils", None)  # import hwr_utils fails
        assert runtime.execute() == ""
    root = tmp_path / "hwr-book"
    extras = "notebooks,deploy" if chapter.stem == "deployment" else "notebooks"
    assert runtime.commands == [
        ["git", "clone", "--quiet", "--depth", "1", URL, str(root)],
        [sys.executable, "-m", "pip", "install", "--quiet", f"{root}[{extras}]"],
    ]
    assert Path.cwd() == root / "book"
    # Run again (installed now, and already in book/): nothing fetched, nothing installed.
    assert runtime.execute() == "" and len(runtime.commands) == 2
    assert Path.cwd() == root / "book"


def test_setup_cell_fetches_the_url_the_environment_names(colab_runtime, tmp_path):
    colab_runtime.setenv("HWR_REPO_URL", "file:///somewhere/a-fork")
    runtime = FakeRuntime(CHAPTERS[0], colab_runtime, tmp_path)
    runtime.execute()
    assert runtime.commands[0][-2] == "file:///somewhere/a-fork"


def test_setup_cell_offline_stops_with_one_line(colab_runtime, tmp_path):
    runtime = FakeRuntime(CHAPTERS[0], colab_runtime, tmp_path, fails=True)
    with pytest.raises(SystemExit) as stopped:
        runtime.execute()
    message = str(stopped.value)
    assert "\n" not in message and URL in message and "online" in message
    assert len(runtime.commands) == 1 and Path.cwd() == tmp_path


# What Colab preinstalls, among what the chapters use (the library itself is not there).
COLAB_PACKAGES = ["torch", "torchvision", "numpy", "matplotlib", "opencv-python", "scikit-learn",
                  "papermill", "ipykernel"]  # fmt: skip


def with_dependencies(names: list[str]) -> set[str]:
    """The installed distributions ``names`` need, themselves included."""
    found, todo = set(), [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for line in metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return found


def colab_like_python(folder: Path) -> Path:
    """A virtual environment that sees this environment's copies of Colab's preinstalled
    packages (symlinked, not reinstalled) and a stand-in ``google.colab`` module that each
    kernel imports at start, as Colab's do; ``hwr_utils`` is not in it."""
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
    python = folder / "venv" / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.check_output([python, "-c", where], text=True).strip())
    preinstalled = folder / "preinstalled"
    preinstalled.mkdir()
    ours = Path(sysconfig.get_path("purelib"))
    for name in with_dependencies(COLAB_PACKAGES):
        files = metadata.distribution(name).files or []
        for top in {f.parts[0] for f in files if f.parts[0] != ".."}:
            if (ours / top).exists() and not (preinstalled / top).exists():
                (preinstalled / top).symlink_to(ours / top)
    (site / "colab_preinstalled.pth").write_text(f"{preinstalled}\n")
    (site / "google" / "colab").mkdir(parents=True)  # a namespace portion beside protobuf's
    (site / "google" / "colab" / "__init__.py").write_text('"""Stand-in for Colab."""\n')
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab\n")
    return python


def test_a_chapter_opened_alone_on_a_colab_like_runtime_runs_to_its_end(tmp_path):
    python = colab_like_python(tmp_path)
    absent = subprocess.run([python, "-c", "import hwr_utils"], capture_output=True, cwd=tmp_path)
    assert absent.returncode != 0, "hwr_utils must not be preinstalled"
    chapter = BOOK / "convolution.ipynb"  # the cheapest chapter that imports the library
    runtime = tmp_path / "content"
    runtime.mkdir()
    shutil.copy(chapter, runtime / chapter.name)
    environment = {
        **os.environ,
        "HWR_REPO_URL": ROOT.as_uri(),  # a file:// URL: a shallow clone without internet
        "HWR_DATA": str(find_mnist()),  # Colab downloads MNIST; CI has no internet
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}",
        "MPLBACKEND": "agg",
    }
    for name in ("HWR_SMOKE", "HWR_BOOK_ROOT", "VIRTUAL_ENV", "PYTHONPATH"):
        environment.pop(name, None)
    run = subprocess.run(
        [python, "-m", "papermill", chapter.name, "out.ipynb", "-p", "SMOKE", "True",
         "-k", "python3", "--no-progress-bar"],
        cwd=runtime, env=environment, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (runtime / "hwr-book" / ".git").is_dir(), "the setup cell cloned the repository"
    installed = subprocess.run(
        [python, "-c", "import hwr_utils, torch; print(hwr_utils.__file__, torch.__file__)"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    library, torch_file = installed.stdout.split()
    assert Path(library).is_relative_to(tmp_path / "venv"), "installed into the runtime"
    assert Path(torch_file).is_relative_to(tmp_path / "preinstalled"), "torch kept, not reinstalled"
    executed = nbformat.read(runtime / "out.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every cell ran"
    assert not code[0].outputs, "the setup cell is quiet"
