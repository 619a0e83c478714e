"""The files behind the book's page "Draw a digit" (``book/demo.md``): ONNX Runtime Web, taken
from its npm package at a pinned version and checked, and the book's two models exported to
ONNX. They live in ``book/_assets/demo/`` and are served from the build's ``_static/demo/``,
so the page needs no network.

``python -m hwr_utils.teaching.web_demo --check`` verifies every file against
``manifest.json``; ``--runtime`` fetches the runtime again (from the npm registry, or a tarball
given with ``--tarball``), checking the package's published integrity and each file's SHA-256;
``--models`` exports the checkpoints again and records them in the manifest (``--models
crnn.onnx``: that one only, the other's record kept).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

from ..checkpoints import atomic_path
from ..errors import HwrError, first_line
from ..export import export_model

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "book" / "_assets" / "demo"
MANIFEST = "manifest.json"

#: The pinned ONNX Runtime Web release, its npm tarball and the integrity npm publishes for it.
ORT_WEB_VERSION = "1.30.0"
ORT_WEB_TARBALL = (
    f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
)
ORT_WEB_INTEGRITY = (
    "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ"
    "=="
)
#: The WebAssembly-only build (no WebGL or WebGPU backends) and its one .wasm file, with the
#: SHA-256 of each: what the page loads, and nothing else from the package.
RUNTIME_FILES = {
    "ort.wasm.bundle.min.mjs": "11e64bd8ffe11bd1a2a2f0d6275fdfbbba7262f0b76b99b53d228a8a22ef3d90",
    "ort-wasm-simd-threaded.wasm": (
        "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2"
    ),
}
#: The demo's models and the checkpoints they are exported from (paths from the repository).
MODELS = {"hwrnet.onnx": "checkpoints/hwrnet.pt", "crnn.onnx": "checkpoints/crnn.pt"}


class IntegrityError(HwrError, ValueError):
    """A downloaded or stored file is not the one pinned."""


def sha256(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _check_integrity(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise IntegrityError(f"the package's {algorithm} is {actual}, expected {expected}")


def fetch_runtime(
    folder: Path = DEMO,
    tarball: Path | None = None,
    integrity: str = ORT_WEB_INTEGRITY,
    files: dict[str, str] = RUNTIME_FILES,
) -> list[Path]:
    """Put the runtime ``files`` of the pinned onnxruntime-web package in ``folder/ort``.

    The package comes from ``tarball`` (a local ``.tgz``) or the npm registry. Nothing is written
    unless the package matches ``integrity`` and each file its SHA-256; a NOTICE file records
    where they came from and their licence (MIT).
    """
    if tarball is not None:
        try:
            data = Path(tarball).read_bytes()
        except OSError as error:
            raise HwrError(f"cannot read the tarball: {first_line(error)}") from None
    else:
        try:
            data = urllib.request.urlopen(ORT_WEB_TARBALL, timeout=60).read()
        except OSError as error:
            raise HwrError(
                f"could not download {ORT_WEB_TARBALL} ({first_line(error)}); "
                "fetch it elsewhere and pass it with --tarball"
            ) from None
    _check_integrity(data, integrity)
    contents = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for name, expected in files.items():
            try:
                contents[name] = archive.extractfile(f"package/dist/{name}").read()
            except (KeyError, AttributeError):  # absent, or not a file
                raise IntegrityError(f"the package has no file dist/{name}") from None
            actual = hashlib.sha256(contents[name]).hexdigest()
            if actual != expected:
                raise IntegrityError(f"dist/{name} has SHA-256 {actual}, expected {expected}")
    target = Path(folder) / "ort"
    contents["NOTICE"] = (
        f"ONNX Runtime Web {ORT_WEB_VERSION} (npm package onnxruntime-web, {ORT_WEB_TARBALL}),\n"
        "Copyright (c) Microsoft Corporation, licensed under the MIT License.\n"
        "Only the files listed in hwr_utils/teaching/web_demo.py are kept.\n"
    ).encode()
    for name, content in contents.items():
        with atomic_path(target / name) as tmp:
            tmp.write_bytes(content)
    return [target / name for name in files]


def export_models(
    folder: Path = DEMO, root: Path = ROOT, names: list[str] | None = None
) -> dict[str, dict]:
    """Export each of :data:`MODELS` (or those of ``names``) to ONNX in ``folder``
    (parity-checked, as ``hwr export`` does) and return what the manifest records of each: its
    checkpoint, test metrics and class names (the page shows the class names, not output
    indices)."""
    from ..checkpoints import load_checkpoint

    unknown = sorted(set(names or ()) - set(MODELS))
    if unknown:
        raise HwrError(f"the demo has no model {', '.join(unknown)}; it has {', '.join(MODELS)}")
    records = {}
    for name, checkpoint_path in MODELS.items():
        if names and name not in names:
            continue
        checkpoint = load_checkpoint(root / checkpoint_path)
        export_model(root / checkpoint_path, "onnx", Path(folder) / name)
        test = checkpoint.get("metrics", {}).get("test", {})
        records[name] = {
            "checkpoint": checkpoint_path,
            "model": checkpoint["model"],
            "task": checkpoint["task"],
            "test_accuracy": test.get("accuracy"),
            "seed": checkpoint["train_config"].get("seed"),
            "class_names": list(checkpoint["class_names"]),
        }
    return records


def _built_files(folder: Path) -> list[Path]:
    # What is fetched or exported, not written by hand: the runtime and the models.
    return sorted([*(folder / "ort").glob("*"), *folder.glob("*.onnx")])


def write_manifest(folder: Path = DEMO, models: dict[str, dict] | None = None) -> Path:
    """Record the runtime's and the models' files with their SHA-256 (and the provenance of the
    models given; the manifest's previous record of the others is kept)."""
    folder = Path(folder)
    path = folder / MANIFEST
    previous = json.loads(path.read_text()) if path.is_file() else {}
    models = previous.get("models", {}) | (models or {})
    files = _built_files(folder)
    manifest = {
        "onnxruntime_web": {"version": ORT_WEB_VERSION, "integrity": ORT_WEB_INTEGRITY},
        "models": models,
        "files": {p.relative_to(folder).as_posix(): sha256(p) for p in files},
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def check(folder: Path = DEMO) -> list[str]:
    """What is wrong with the demo's runtime and model files: missing, changed since the
    manifest, unlisted, or a runtime file that is not the pinned one. Empty when all is well."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return [f"{path} is missing"]
    manifest = json.loads(path.read_text())
    problems = []
    listed = manifest["files"]
    for name, expected in listed.items():
        file = folder / name
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif sha256(file) != expected:
            problems.append(f"{name} changed since the manifest was written")
    for file in _built_files(folder):
        name = file.relative_to(folder).as_posix()
        if name not in listed:
            problems.append(f"{name} is not in the manifest")
    for name, expected in RUNTIME_FILES.items():
        if listed.get(f"ort/{name}") != expected:
            problems.append(f"ort/{name} is not onnxruntime-web {ORT_WEB_VERSION}'s")
    problems += [f"{name} (a model) is not listed" for name in MODELS if name not in listed]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hwr_utils.teaching.web_demo")
    parser.add_argument("--runtime", action="store_true", help="fetch ONNX Runtime Web again")
    parser.add_argument("--tarball", type=Path, help="a local onnxruntime-web .tgz to use")
    parser.add_argument(
        "--models",
        nargs="*",
        metavar="NAME",
        help=f"export the checkpoints again: all, or those named ({', '.join(MODELS)})",
    )
    parser.add_argument("--check", action="store_true", help="only check the files")
    args = parser.parse_args(argv)
    if not args.check:
        try:
            if args.runtime:
                for path in fetch_runtime(tarball=args.tarball):
                    print(f"wrote {path.relative_to(ROOT)}")
            models = export_models(names=args.models) if args.models is not None else None
        except HwrError as error:
            print(f"error: {error}")
            return 1
        print(f"wrote {write_manifest(models=models).relative_to(ROOT)}")
    problems = check()
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
