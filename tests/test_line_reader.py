"""The line reader end to end on Copiste d'un jour (Part V): ``hwr train --model line_reader``,
its language model, ``hwr evaluate`` (CER, WER, per writer), ``hwr read`` on a plain crop of a
scanned line, ONNX export at any width, and exact resume."""

import json
from pathlib import Path

import cv2
import pytest
import torch

from hwr_utils.config import TrainConfig
from hwr_utils.data import DataNotFoundError
from hwr_utils.lm import CharNgram

pytestmark = pytest.mark.slow


def line_config(folder: Path, **overrides) -> TrainConfig:
    values = dict(model="line_reader", model_config={"width": 8, "hidden": 32}, epochs=1,
                  train_limit=48, progress=False, device="cpu",
                  out=str(folder / "lines.pt"))  # fmt: skip
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def copiste_root():
    from hwr_utils.datasets.copiste import find_copiste

    try:
        return find_copiste(download=False)
    except DataNotFoundError as error:
        pytest.skip(f"the line data is not here: {error}")


@pytest.fixture(scope="module")
def line_reader(tmp_path_factory, copiste_root) -> Path:
    from hwr_utils.train import fit

    config = line_config(tmp_path_factory.mktemp("lines"))
    fit(config)
    return Path(config.out)


@pytest.fixture(scope="module")
def line_crops(tmp_path_factory, copiste_root):
    """Plain rectangular crops of two scanned lines (bits of their neighbours included), as a
    user would cut them, and their transcripts."""
    from hwr_utils.datasets.copiste import dataset_dir, parse_alto

    folder = tmp_path_factory.mktemp("crops")
    root = dataset_dir(copiste_root)
    page = parse_alto(root / "alto" / "wikitexte_0028.xml")
    image = cv2.imread(str(root / "pages" / "wikitexte_0028.png"), cv2.IMREAD_GRAYSCALE)
    scale = image.shape[1] / page.width
    crops = []
    for line in page.lines[2:4]:
        x, y, w, h = (round(v * scale) for v in line.bbox)
        path = folder / f"{line.id}.png"
        cv2.imwrite(str(path), image[max(0, y - 8) : y + h + 8, x : x + w])
        crops.append((path, line.text))
    return crops


def test_the_checkpoint_holds_a_language_model_of_the_training_texts_only(line_reader):
    from hwr_utils.checkpoints import load_checkpoint
    from hwr_utils.datasets import load_dataset

    checkpoint = load_checkpoint(line_reader)
    assert checkpoint["task"] == "lines" and checkpoint["data"]["spec"] == "copiste"
    dataset = load_dataset("copiste", train_limit=48)
    alphabet = checkpoint["class_names"]
    everything = load_dataset("copiste")
    assert alphabet == dataset.class_names == sorted(set("".join(everything.train.texts)))
    expected = CharNgram.fit(dataset.train.texts, alphabet=alphabet).to_state()
    assert checkpoint["decoder"]["lm"] == expected
    # Writers of the three splits never meet.
    writers = {name: set(split.writers) for name, split in everything.splits().items()}
    assert not writers["train"] & writers["val"] and not writers["train"] & writers["test"]
    assert not writers["val"] & writers["test"]


def test_evaluate_reports_cer_wer_and_each_writer(line_reader, run_cli):
    code, out, _ = run_cli(["evaluate", "--checkpoint", line_reader, "--json", "--greedy"])
    report = json.loads(out)
    assert code == 0 and report["split"] == "test" and report["decoding"] == "greedy"
    assert report["cer"] == report["cer_greedy"] and 0 < report["cer"]
    assert report["lines_without_consent"] < report["lines"]
    assert report["cer_greedy_without_consent"] == report["cer_without_consent"]
    assert len(report["per_writer_cer"]) == 24 and len(report["readings"]) == report["lines"]
    # The writers' rates are rates of their own lines: the overall one lies among them.
    rates = report["per_writer_cer"].values()
    assert min(rates) <= report["cer"] <= max(rates)
    code, out, _ = run_cli(["evaluate", "--checkpoint", line_reader])
    assert code == 0 and "language model" in out and "CER per writer" in out


def test_read_takes_a_plain_crop_and_reports_bad_files(line_reader, line_crops, run_cli, tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    paths = [path for path, _ in line_crops] + [tmp_path / "notes.txt", tmp_path / "missing.png"]
    code, out, _ = run_cli(["read", "--checkpoint", line_reader, "--json", *paths])
    results = json.loads(out)
    assert [r["path"] for r in results] == [str(p) for p in paths]
    for result in results[:2]:
        assert set(result) == {"path", "text", "confidence"} and 0 <= result["confidence"] <= 1
    assert all(set(r) == {"path", "error"} for r in results[2:])


def test_read_reads_a_photo_as_evaluate_reads_a_line(line_reader, line_crops, run_cli, monkeypatch):
    from hwr_utils import predict
    from hwr_utils.lines import READ_MARGIN

    margins, read_line = [], predict.predict_lines

    def spy(model, images, widths=None, device="cpu", margin=READ_MARGIN):
        margins.append(margin)
        return read_line(model, images, widths, device, margin)

    monkeypatch.setattr(predict, "predict_lines", spy)
    code, _, _ = run_cli(["read", "--checkpoint", line_reader, *[p for p, _ in line_crops]])
    assert code == 0 and margins == [READ_MARGIN] * len(line_crops)


@pytest.fixture(scope="module")
def line_reader_onnx(line_reader, tmp_path_factory) -> tuple[Path, float]:
    """The tiny reader exported to ONNX, and the export's parity check (max difference)."""
    pytest.importorskip("onnxruntime")
    from hwr_utils.export import export_model

    return export_model(line_reader, "onnx", tmp_path_factory.mktemp("onnx") / "lines.onnx")


def test_exported_line_reader_reads_the_same_at_any_width(line_reader, line_reader_onnx):
    from hwr_utils.checkpoints import load_model

    onnx_path, difference = line_reader_onnx
    assert difference <= 1e-4
    exported, card = load_model(onnx_path)
    model, _ = load_model(line_reader)
    for width in (40, 333, 1200):
        x = torch.rand(2, 1, 40, width)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), model(x), atol=1e-4, rtol=1e-4)


def test_an_export_reads_with_the_language_model(
    line_reader, line_reader_onnx, line_crops, run_cli
):
    from hwr_utils.checkpoints import load_checkpoint, load_model

    onnx_path, _ = line_reader_onnx
    # The decoder travels as JSON (tuples come back as lists).
    decoder = json.loads(json.dumps(load_checkpoint(line_reader)["decoder"]))
    assert load_model(onnx_path)[1]["decoder"] == decoder
    paths = [path for path, _ in line_crops]
    readings = {}
    for model in (line_reader, onnx_path):
        code, out, _ = run_cli(["read", "--checkpoint", model, "--json", *paths])
        assert code == 0
        readings[model] = [result["text"] for result in json.loads(out)]
    assert readings[onnx_path] == readings[line_reader]


def test_resume_ends_where_an_uninterrupted_run_ends(
    tmp_path, copiste_root, killed_and_resumed, assert_same_run
):
    from hwr_utils import train as train_module

    whole = train_module.fit(line_config(tmp_path / "whole", epochs=2, train_limit=32))
    config = line_config(tmp_path / "parts", epochs=2, train_limit=32)
    assert_same_run(whole, killed_and_resumed(config, epoch=2))


def test_a_folder_of_line_images_is_read_as_lines(line_crops, tmp_path):
    from hwr_utils.datasets import load_dataset
    from hwr_utils.datasets.copiste import preprocess_line_photo
    from hwr_utils.datasets.folders import FolderDataError
    from hwr_utils.lines import LINE_HEIGHT, PaddedLines
    from hwr_utils.preprocess import load_image

    writers = [f"writer {i}" for i in range(len(line_crops))]
    rows = ["file,text,writer"] + [
        f'{path.name},"{text}",{writer}'
        for (path, text), writer in zip(line_crops, writers, strict=True)
    ]
    for path, _ in line_crops:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    dataset = load_dataset(f"folder:{tmp_path}", val_size=0, task="lines")
    assert dataset.task == "lines" and isinstance(dataset.train, PaddedLines)
    assert dataset.train.texts == [text for _, text in line_crops]
    assert dataset.train.writers == writers  # the per-writer figures group by them
    first = preprocess_line_photo(load_image(line_crops[0][0]))
    assert dataset.train.images.shape[1] == LINE_HEIGHT
    width = int(dataset.train.widths[0])
    assert torch.equal(dataset.train.images[0, :, :width], torch.as_tensor(first))
    # A reader keeps its alphabet: a symbol outside it is named with its file.
    with pytest.raises(FolderDataError, match=line_crops[0][0].name):
        load_dataset(f"folder:{tmp_path}", val_size=0, task="lines", alphabet=list("abc "))
