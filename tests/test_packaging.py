import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_pins_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= {p for p in extra if not p.startswith("hwr-utils[")}  # an extra naming extras
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert {p for p in pip if not p.startswith("-e")} == wanted
    assert "jupyter-book>=1.0.2,<2" in wanted  # version 2 ignores _config.yml, see DEVELOPERS.md


@pytest.mark.slow
def test_a_built_wheel_holds_and_imports_every_module(tmp_path):
    # A wheel built from the source tree, unpacked apart from it: every module of every
    # subpackage must be in it and import from there, not from the checkout.
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = tmp_path.glob("hwr_utils-*.whl")
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    sources = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "hwr_utils").rglob("*.py"))
    packed = sorted(p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*.py"))
    assert packed == sources
    # Data files the library reads at run time travel too (the line data's published splits).
    data_files = sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / "hwr_utils").rglob("*.json")
    )
    assert data_files and all((unpacked / f).is_file() for f in data_files)
    modules = [s[:-3].replace("/", ".").removesuffix(".__init__") for s in sources]
    modules = [m for m in modules if not m.endswith("__main__")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(unpacked)!r}), module.__file__\n"
        "print(len(sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(unpacked), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_lock_pins_every_dependency_within_its_bounds():
    # CI installs requirements-lock.txt (README's test command): every package the project
    # declares must be pinned there, at a version its lower bound allows.
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += [p for p in extra if not p.startswith("hwr-utils[")]
    lock = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            lock[name.lower().replace("_", "-")] = Version(version)
    for text in declared:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in lock, f"{name} is not in requirements-lock.txt"
        assert requirement.specifier.contains(lock[name], prereleases=True), (text, lock[name])
    readme = (ROOT / "README.md").read_text()
    assert "pip install -c requirements-lock.txt" in readme.split("<!-- test-command -->")[1]
