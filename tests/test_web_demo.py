"""The demo's files are the pinned ones, fetching refuses anything else, and traced strokes
follow the digit they trace (the browser tests draw them)."""

import base64
import hashlib
import io
import json
import shutil
import tarfile

import cv2
import numpy as np
import pytest

from hwr_utils.teaching import web_demo
from hwr_utils.teaching.browser import digit_strokes, thin


def test_the_books_demo_files_are_the_pinned_runtime_and_the_listed_models():
    assert web_demo.check() == []
    manifest = json.loads((web_demo.DEMO / web_demo.MANIFEST).read_text())
    assert set(manifest["models"]) == set(web_demo.MODELS)
    assert manifest["onnxruntime_web"]["version"] == web_demo.ORT_WEB_VERSION


def test_the_manifest_names_each_models_classes_as_its_file_does():
    pytest.importorskip("onnxruntime")
    from hwr_utils.checkpoints import load_model

    manifest = json.loads((web_demo.DEMO / web_demo.MANIFEST).read_text())
    for name, record in manifest["models"].items():
        _, card = load_model(web_demo.DEMO / name)
        assert record["class_names"] == card["class_names"], name


def test_a_changed_or_unlisted_file_is_reported(tmp_path):
    folder = tmp_path / "demo"
    shutil.copytree(web_demo.DEMO, folder)
    assert web_demo.check(folder) == []
    (folder / "hwrnet.onnx").write_bytes(b"not the model")
    (folder / "extra.onnx").write_bytes(b"")
    problems = web_demo.check(folder)
    assert "hwrnet.onnx changed since the manifest was written" in problems
    assert "extra.onnx is not in the manifest" in problems


def fake_package(files: dict[str, bytes]) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(f"package/dist/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    return data, "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_fetching_checks_the_package_and_each_file_before_writing(tmp_path):
    files = {"ort.mjs": b"export {}", "ort.wasm": b"\0asm"}
    data, integrity = fake_package(files)
    tarball = tmp_path / "package.tgz"
    tarball.write_bytes(data)
    pinned = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}

    with pytest.raises(web_demo.HwrError, match="cannot read the tarball"):
        web_demo.fetch_runtime(tmp_path / "e", tmp_path / "missing.tgz", integrity, pinned)
    with pytest.raises(web_demo.IntegrityError, match="sha512"):
        web_demo.fetch_runtime(tmp_path / "a", tarball, "sha512-" + "A" * 88, pinned)
    wrong = {**pinned, "ort.wasm": "0" * 64}
    with pytest.raises(web_demo.IntegrityError, match="ort.wasm has SHA-256"):
        web_demo.fetch_runtime(tmp_path / "b", tarball, integrity, wrong)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written

    with pytest.raises(web_demo.IntegrityError, match="no file dist/ort.js"):
        web_demo.fetch_runtime(tmp_path / "d", tarball, integrity, {**pinned, "ort.js": "0" * 64})

    written = web_demo.fetch_runtime(tmp_path / "c", tarball, integrity, pinned)
    assert sorted(p.name for p in written) == ["ort.mjs", "ort.wasm"]
    assert (tmp_path / "c" / "ort" / "ort.wasm").read_bytes() == files["ort.wasm"]
    assert "MIT" in (tmp_path / "c" / "ort" / "NOTICE").read_text()


def test_thinning_leaves_a_one_pixel_line_along_a_thick_bar():
    bar = np.zeros((20, 30), bool)
    bar[8:13, 4:26] = True
    skeleton = thin(bar)
    assert skeleton.any() and (skeleton <= bar).all()
    assert (skeleton.sum(0) <= 1).all()  # one pixel per column: a line, not a band
    assert skeleton.sum() >= 12


def test_strokes_traced_from_a_digit_redraw_it(mnist):
    _, test = mnist
    for index in range(10):
        digit = test.images[index].numpy()
        strokes = digit_strokes(digit)
        assert strokes and all(len(s) >= 1 for s in strokes)
        ink = digit >= 128
        assert all(ink[y, x] for stroke in strokes for x, y in stroke)  # on the ink
        redrawn = np.zeros_like(digit)
        for stroke in strokes:
            cv2.polylines(redrawn, [np.array(stroke, np.int32)], False, 255, thickness=2)
        covered = (redrawn > 0) & ink
        assert covered.sum() / ink.sum() > 0.6, index  # a pen of MNIST's width retraces it


def test_exporting_one_model_keeps_the_others_file_and_record(tmp_path, tiny_checkpoint):
    pytest.importorskip("onnx")
    folder = tmp_path / "demo"
    shutil.copytree(web_demo.DEMO, folder)
    before = json.loads((folder / web_demo.MANIFEST).read_text())
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(tiny_checkpoint, tmp_path / web_demo.MODELS["hwrnet.onnx"])
    with pytest.raises(web_demo.HwrError, match="no model lenet.onnx"):
        web_demo.export_models(folder, tmp_path, names=["lenet.onnx"])
    records = web_demo.export_models(folder, tmp_path, names=["hwrnet.onnx"])
    assert list(records) == ["hwrnet.onnx"]
    web_demo.write_manifest(folder, records)
    after = json.loads((folder / web_demo.MANIFEST).read_text())
    assert web_demo.check(folder) == []
    assert after["models"]["crnn.onnx"] == before["models"]["crnn.onnx"]
    assert after["files"]["crnn.onnx"] == before["files"]["crnn.onnx"]
    assert after["files"]["hwrnet.onnx"] != before["files"]["hwrnet.onnx"]
    assert after["models"]["hwrnet.onnx"]["checkpoint"] == "checkpoints/hwrnet.pt"
