"""The layering README's architecture section describes: inference never imports training."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

INFERENCE_MODULES = [
    "export",
    "predict",
    "checkpoints",
    "cli",
    "preprocess",
    "metrics",
    "evaluation",
]


@pytest.mark.parametrize("module", INFERENCE_MODULES)
def test_inference_does_not_import_the_training_engine(module):
    code = (
        f"import sys, hwr_utils.{module}; "
        "print(sorted(m for m in ('hwr_utils.train', 'hwr_utils.finetune', 'onnxruntime', "
        "'hwr_utils.bench', 'hwr_utils.teaching') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_predict_and_evaluate_on_an_export_do_not_import_training(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from hwr_utils.export import export_model

    onnx_path, _ = export_model(tiny_checkpoint, "onnx", tmp_path / "m.onnx")
    code = (
        "import sys; from hwr_utils.cli import main; "
        f"main(['predict', '--checkpoint', {str(onnx_path)!r}, 'missing.png']); "
        f"main(['evaluate', '--checkpoint', {str(onnx_path)!r}]); "
        "print('TRAIN' if 'hwr_utils.train' in sys.modules else 'CLEAN')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "CLEAN", result.stderr[-2000:]


def imported_modules(path) -> set[str]:
    """The library's modules a file imports (top level or inside functions), by their first name
    under ``hwr_utils`` (``from .datasets.folders import x`` -> ``datasets``)."""
    import ast

    package = path.relative_to(ROOT / "hwr_utils").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[: len(package) - node.level + 1])
            parts = base + (node.module.split(".") if node.module else [])
            names = [parts] if node.module else [base + [a.name] for a in node.names]
            found |= {p[0] for p in names if p and not p[0].startswith("_")}  # not __version__
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hwr_utils."):
            found.add(node.module.split(".")[1])
    return found


def test_readme_architecture_table_matches_the_imports():
    # README's table of modules says what each imports; it is read here, not trusted.
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Architecture", 1)[1].split("\n\n")[2]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = cells[0].strip("`").rstrip("/")
        rows[name] = set(re.findall(r"`(\w+)`", cells[-1]))
    library = ROOT / "hwr_utils"
    modules = {p.stem for p in library.glob("*.py") if p.stem not in ("__init__", "__main__")}
    packages = {p.name for p in library.iterdir() if (p / "__init__.py").is_file()}
    assert set(rows) == modules | packages, "README's table lists other modules than hwr_utils has"
    for name in sorted(modules | packages - {"bench", "teaching"}):
        files = (
            [library / f"{name}.py"] if name in modules else list((library / name).rglob("*.py"))
        )
        imports = set().union(*(imported_modules(f) for f in files)) - {name}
        assert rows[name] == imports, (
            f"{name}: README says {sorted(rows[name])}, code {sorted(imports)}"
        )


def test_the_library_has_no_import_cycle():
    # Each module imports only modules below it: a cycle (checkpoints <-> export, once) fails.
    library = ROOT / "hwr_utils"
    graph = {}
    for path in library.glob("*.py"):
        graph[path.stem] = imported_modules(path) - {path.stem}
    for package in ("datasets",):
        files = (library / package).rglob("*.py")
        graph[package] = set().union(*(imported_modules(f) for f in files)) - {package}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name not in done:
            for child in graph.get(name, ()):
                visit(child, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())
