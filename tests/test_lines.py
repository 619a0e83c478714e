"""Lines of different widths in the engine: cropping, batches of similar widths, the line
reader, its task (shortcut loss, word error rate) and its augmentation."""

import pytest
import torch

from hwr_utils.augment import augment_lines
from hwr_utils.ctc import ctc_loss
from hwr_utils.errors import ConfigError
from hwr_utils.lines import LINE_HEIGHT, LineBatches, crop_to_widest, ink_widths
from hwr_utils.models import build_model
from hwr_utils.tasks import LineRecognition, build_task


def padded_lines(widths: list[int], height: int = LINE_HEIGHT) -> torch.Tensor:
    """uint8 lines (N, H, max width), line i inked on exactly its first widths[i] columns."""
    images = torch.zeros(len(widths), height, max(widths), dtype=torch.uint8)
    for image, width in zip(images, widths, strict=True):
        image[height // 4 : 3 * height // 4, :width] = 200
    return images


def test_widths_and_cropping_ignore_the_padding():
    images = padded_lines([5, 17, 9]).unsqueeze(1)
    assert ink_widths(images).tolist() == [5, 17, 9]
    assert crop_to_widest(images[[0, 2]]).shape[-1] == 9
    assert torch.equal(crop_to_widest(images), images)


def test_line_batches_cover_every_line_once_in_batches_of_similar_widths():
    widths = torch.randint(10, 400, (200,), generator=torch.Generator().manual_seed(0))
    images = padded_lines(widths.tolist()).unsqueeze(1)
    targets = torch.arange(200).unsqueeze(1)  # each line's own index as its "text"
    batches = LineBatches(images, targets, widths, batch_size=10, seed=3, pool=5)
    seen, spread = [], []
    for x, y in batches:
        lines = y.flatten()
        seen += lines.tolist()
        assert x.dtype == torch.float32 and x.shape[-1] == int(widths[lines].max())
        spread.append(int(widths[lines].max() - widths[lines].min()))
    assert sorted(seen) == list(range(200))
    # Sorted within pools of 50 lines: a batch spans far less than the whole range of widths.
    assert sum(spread) / len(spread) < 0.25 * int(widths.max() - widths.min())
    again = [y.flatten().tolist() for _, y in batches]
    assert again == [seen[i : i + 10] for i in range(0, 200, 10)]  # same seed, same epoch
    batches.set_epoch(1)
    assert [y.flatten().tolist() for _, y in batches] != again


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_line_reader_reads_any_width_and_has_a_shortcut_in_training(cell):
    model = build_model("line_reader", width=8, hidden=32, num_classes=5, cell=cell)
    assert isinstance(model.context, {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell])
    x = torch.rand(2, 1, LINE_HEIGHT, 48)
    model.train()
    logits, shortcut = model(x)
    assert logits.shape == shortcut.shape == (2, 12, 6)
    model.eval()
    assert model(torch.rand(1, 1, LINE_HEIGHT, 100)).shape == (1, 25, 6)


def test_an_unknown_cell_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="unknown cell 'rnn'; use gru or lstm"):
        build_model("line_reader", cell="rnn")


def test_a_line_is_read_alone_with_a_margin_whatever_lines_beside_it(tmp_path):
    import cv2
    import numpy as np

    from hwr_utils.datasets.copiste import preprocess_line_photo
    from hwr_utils.evaluation import evaluate
    from hwr_utils.lines import READ_MARGIN, pad_lines
    from hwr_utils.lm import cer
    from hwr_utils.predict import predict_lines, read_files

    torch.manual_seed(0)
    model = build_model("line_reader", width=4, hidden=16, num_classes=3).eval()
    images = padded_lines([40, 400, 148])
    images[1, :, 300:] = 0  # inked on 300 columns: blank columns at the end are not the line's
    together = predict_lines(model, images)
    assert [len(o) for o in together] == [(w + READ_MARGIN) // 4 for w in (40, 300, 148)]
    for i, width in enumerate((40, 300, 148)):
        # In an array just as wide as its ink, the margin is added; in a wider one, it is there.
        alone = predict_lines(model, images[i : i + 1, :, :width])[0]
        torch.testing.assert_close(together[i], alone)
    flush = predict_lines(model, images[:1], margin=0)[0]
    assert len(flush) == 10 and not torch.allclose(flush, together[0][:10])
    # hwr read reads a photo of a line the same way: its preprocessing, then predict_lines.
    photo = tmp_path / "line.png"
    cv2.imwrite(str(photo), np.pad(255 - images[2, :, :160].numpy(), 12, constant_values=255))
    line = torch.as_tensor(preprocess_line_photo(photo)).unsqueeze(0)
    seen = []  # what the decoder is handed

    def decoder(outputs):
        seen.append(outputs)
        return [""]

    read_files(model, [photo], ["a", "b", " "], preprocess_line_photo, decoder, READ_MARGIN)
    torch.testing.assert_close(seen[0][0], predict_lines(model, line)[0])
    # Training's validation reads lines as hwr evaluate does: the same figures.
    alphabet = ["a", "b", " "]
    lines = pad_lines(list(images), ["ab", "ba ab", "a"], alphabet)
    task = LineRecognition(class_names=alphabet)
    outputs = predict_lines(model, lines.images)
    texts = [task.texts(o.unsqueeze(0))[0] for o in outputs]
    losses = [
        task.sums(o.unsqueeze(0), y.unsqueeze(0))["loss"]
        for o, y in zip(outputs, lines.labels, strict=True)
    ]
    scores = evaluate(model, lines.images.unsqueeze(1) / 255, lines.labels, "cpu", task)
    assert scores["cer"] == pytest.approx(cer(texts, lines.texts))
    assert scores["loss"] == pytest.approx(sum(losses) / len(losses))


def test_the_line_task_adds_the_shortcut_loss_and_counts_word_errors():
    task = LineRecognition(class_names=["a", "b", " "], shortcut_weight=0.5)
    torch.manual_seed(0)
    logits, shortcut = torch.randn(2, 10, 4), torch.randn(2, 10, 4)
    targets = torch.tensor([[0, 2, 1], [1, -1, -1]])
    expected = ctc_loss(logits, targets) + 0.5 * ctc_loss(shortcut, targets)
    torch.testing.assert_close(task.loss((logits, shortcut), targets), expected)
    torch.testing.assert_close(task.loss(logits, targets), ctc_loss(logits, targets))
    # Outputs that read "a a" and "b" against "a b" and "b": one word wrong of three.
    reading = torch.full((2, 6, 4), -9.0)
    for row, path in enumerate(([0, 3, 2, 3, 0, 3], [1, 3, 3, 3, 3, 3])):
        reading[row, torch.arange(6), path] = 9.0
    assert task.texts(reading) == ["a a", "b"]
    assert task.texts(targets) == ["a b", "b"]
    metrics = task.metrics(task.sums(reading, targets))
    assert metrics["wer"] == pytest.approx(1 / 3)
    assert metrics["cer"] == pytest.approx(1 / 4)
    rebuilt = build_task(task.name, **task.config())
    assert rebuilt == task


def test_line_augmentation_keeps_the_line_and_varies_it():
    torch.manual_seed(0)
    images = padded_lines([120, 90, 60, 30]).unsqueeze(1)
    same = augment_lines(images, strength=0.0)
    assert same.dtype == torch.uint8 and same.shape[:3] == images.shape[:3]
    # Strength 0 only pads and crops back: the ink is where it was, a few columns to the right.
    shift = ink_widths(same) - ink_widths(images)
    assert (shift == shift[0]).all() and 0 <= int(shift[0]) <= LINE_HEIGHT // 5
    varied = augment_lines(images, strength=1.0)
    assert varied.shape[:3] == images.shape[:3]
    assert not torch.equal(crop_to_widest(varied), crop_to_widest(same))


def test_line_augmentation_never_erases_thin_strokes():
    # Pen strokes of a 40-pixel line are one or two pixels wide: every augmented line must keep
    # most of its ink (an erosion, a "thinner pen", would wipe such a line out).
    torch.manual_seed(0)
    lines = torch.zeros(64, 1, LINE_HEIGHT, 300, dtype=torch.uint8)
    lines[:, :, 6:34:4, 10:290] = 220  # thin horizontal strokes
    lines[:, :, 6:34, 10:290:9] = 220  # and thin vertical ones
    inked = (augment_lines(lines) > 0).sum((1, 2, 3)) / (lines > 0).sum((1, 2, 3))
    # A squeeze to 0.8 of the width and 0.9 of the height leaves 0.72 of the inked pixels;
    # blurring by the resampling adds some, a thicker pen more.
    assert inked.min() > 0.6 and inked.max() < 4.0


@pytest.mark.slow  # the export: PyTorch's ONNX exporter fails on the LSTM before the fallback
def test_an_lstm_reader_trains_on_a_folder_of_lines_and_exports_at_any_width(run_cli, tmp_path):
    # Without Copiste: lines written with OpenCV's font in the folder layout of a reader's own
    # lines (labels.csv), one epoch of a tiny LSTM reader, then its ONNX export at three widths.
    pytest.importorskip("onnxruntime")
    import csv

    import cv2
    import numpy as np

    from hwr_utils.checkpoints import load_checkpoint, load_model
    from hwr_utils.export import export_model

    data = tmp_path / "lines"
    data.mkdir()
    texts = ["le chat", "une date", "1871", "la mer", "deux mots", "ici", "tout", "encore"] * 2
    with open(data / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "text"])
        for i, text in enumerate(texts):
            page = np.full((60, 40 + 24 * len(text)), 255, np.uint8)
            cv2.putText(page, text, (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0 + 0.05 * (i % 3), 0, 2)
            cv2.imwrite(str(data / f"line{i}.png"), page)
            writer.writerow([f"line{i}.png", text])
    out = tmp_path / "lstm.pt"
    code, _, err = run_cli(["train", "--model", "line_reader", "--data", f"folder:{data}",
                            "--epochs", "1", "--model-kwargs", "cell=lstm", "width=4",
                            "hidden=16", "--no-progress", "--device", "cpu",
                            "--out", out])  # fmt: skip
    assert code == 0, err
    assert load_checkpoint(out)["model_config"]["cell"] == "lstm"
    model, _ = load_model(out)
    assert isinstance(model.context, torch.nn.LSTM)  # rebuilt as it was trained
    onnx_path, difference = export_model(out, "onnx", tmp_path / "lstm.onnx")
    assert difference <= 1e-4
    exported, _ = load_model(onnx_path)
    for width in (40, 333, 1200):
        x = torch.rand(2, 1, LINE_HEIGHT, width)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), model(x), atol=1e-4, rtol=1e-4)
