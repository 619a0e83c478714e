import json
import subprocess
import sys

import pytest
from PIL import Image

from hwr_utils import data
from hwr_utils.cli import main
from hwr_utils.synthetic import make_photo
from hwr_utils.train import load_checkpoint


@pytest.fixture(scope="module")
def photos(tmp_path_factory, mnist):
    """Photos of five test digits with known labels, plus broken files of every kind."""
    folder = tmp_path_factory.mktemp("photos")
    test = mnist[1]
    good = []
    for i in range(5):
        path = folder / f"digit_{i}_label_{int(test.labels[i])}.png"
        Image.fromarray(make_photo(test.images[i].numpy(), seed=i)).save(path)
        good.append((path, str(int(test.labels[i]))))
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "cut.png").write_bytes(good[0][0].read_bytes()[:1500])
    Image.new("L", (300, 200), 240).save(folder / "blank.png")
    (folder / "adir").mkdir()
    return folder, good


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_json_mixes_good_and_broken(tiny_checkpoint, photos, capsys):
    folder, good = photos
    broken = ["empty.png", "notes.txt", "cut.png", "blank.png", "adir", "missing.png"]
    paths = [
        good[0][0],
        *(folder / b for b in broken[:3]),
        good[1][0],
        *(folder / b for b in broken[3:]),
    ]
    paths += [p for p, _ in good[2:]]
    code, out, err = run_cli(["predict", "--checkpoint", tiny_checkpoint, "--json", *paths], capsys)
    results = json.loads(out)
    assert code == 1  # some inputs failed
    assert [r["path"] for r in results] == [str(p) for p in paths]  # input order kept
    errors = [r for r in results if "error" in r]
    assert sorted(r["path"].split("/")[-1] for r in errors) == sorted(broken)
    assert all("\n" not in r["error"] for r in errors)  # one line each
    predictions = [r for r in results if "error" not in r]
    assert len(predictions) == 5
    for result in predictions:
        assert set(result) == {"path", "label", "probability", "top3"}
        assert len(result["top3"]) == 3 and result["top3"][0]["label"] == result["label"]
        probabilities = [t["probability"] for t in result["top3"]]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    truth = {str(p): label for p, label in good}
    correct = sum(truth[r["path"]] == r["label"] for r in predictions)
    assert correct >= 4, predictions
    assert "Traceback" not in err


def test_predict_all_good_exits_zero(tiny_checkpoint, photos, capsys):
    _, good = photos
    code, out, _ = run_cli(["predict", "--checkpoint", tiny_checkpoint, good[0][0]], capsys)
    assert code == 0 and out.startswith(str(good[0][0]))


def test_evaluate_json_matches_training(tiny_checkpoint, capsys):
    code, out, _ = run_cli(["evaluate", "--checkpoint", tiny_checkpoint, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["count"] == 10000
    expected = load_checkpoint(tiny_checkpoint)["metrics"]["test"]["accuracy"]
    assert report["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert sum(map(sum, report["confusion_matrix"])) == 10000
    assert set(report["per_class"]) == {str(d) for d in range(10)}


def test_evaluate_text(tiny_checkpoint, capsys):
    code, out, _ = run_cli(["evaluate", "--checkpoint", tiny_checkpoint], capsys)
    assert code == 0 and "confusion matrix" in out and "precision" in out


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    code, out, err = run_cli(["predict", "--checkpoint", tmp_path / "nope.pt", "x.png"], capsys)
    assert code == 2 and "checkpoint not found" in err and "Traceback" not in err


def test_train_command(tmp_path, mnist_root, capsys):
    out_path = tmp_path / "cli.pt"
    args = ["train", "--model", "article2", "--epochs", "1", "--train-limit", "500"]
    args += ["--val-size", "100", "--no-progress", "--out", out_path, "--data-dir", mnist_root]
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "test accuracy" in out and out_path.is_file()
    assert load_checkpoint(out_path)["model"] == "article2"


def test_train_without_data_says_where_to_put_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HWR_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "_download", lambda root: (_ for _ in ()).throw(OSError("offline")))
    code, _, err = run_cli(["train", "--epochs", "1", "--data-dir", tmp_path / "empty"], capsys)
    assert code == 2 and "MNIST was not found" in err and "HWR_DATA" in err


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "hwr_utils", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "train" in result.stdout and "predict" in result.stdout


def test_an_unexpected_failure_is_reported_per_file(tiny_checkpoint, photos, capsys, monkeypatch):
    from hwr_utils import predict

    _, good = photos
    real = predict.preprocess_photo

    def fails_on_second(image, calls=[]):  # noqa: B006 -- a call counter
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("decoder exploded\nwith a second line")
        return real(image)

    monkeypatch.setattr(predict, "preprocess_photo", fails_on_second)
    paths = [good[0][0], good[1][0], good[2][0]]
    code, out, _ = run_cli(["predict", "--checkpoint", tiny_checkpoint, "--json", *paths], capsys)
    results = json.loads(out)
    assert code == 1 and "label" in results[0] and "label" in results[2]
    assert results[1]["error"] == "could not be processed: decoder exploded"
