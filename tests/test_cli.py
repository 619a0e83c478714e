import json
import subprocess
import sys

import pytest

from hwr_utils import data, datasets
from hwr_utils.checkpoints import load_checkpoint


def test_predict_json_mixes_good_and_broken(tiny_checkpoint, photos, run_cli):
    folder, good = photos
    broken = ["empty.png", "notes.txt", "cut.png", "blank.png", "adir", "missing.png"]
    paths = [
        good[0][0],
        *(folder / b for b in broken[:3]),
        good[1][0],
        *(folder / b for b in broken[3:]),
    ]
    paths += [p for p, _ in good[2:]]
    code, out, err = run_cli(["predict", "--checkpoint", tiny_checkpoint, "--json", *paths])
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


def test_predict_all_good_exits_zero(tiny_checkpoint, photos, run_cli):
    _, good = photos
    code, out, _ = run_cli(["predict", "--checkpoint", tiny_checkpoint, good[0][0]])
    assert code == 0 and out.startswith(str(good[0][0]))


def test_evaluate_json_matches_training(tiny_checkpoint, run_cli):
    code, out, _ = run_cli(["evaluate", "--checkpoint", tiny_checkpoint, "--json"])
    report = json.loads(out)
    assert code == 0 and report["count"] == 10000
    expected = load_checkpoint(tiny_checkpoint)["metrics"]["test"]["accuracy"]
    assert report["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert sum(map(sum, report["confusion_matrix"])) == 10000
    assert set(report["per_class"]) == {str(d) for d in range(10)}


def test_evaluate_text(tiny_checkpoint, run_cli):
    code, out, _ = run_cli(["evaluate", "--checkpoint", tiny_checkpoint])
    assert code == 0 and "confusion matrix" in out and "precision" in out


def test_missing_checkpoint_is_one_line(tmp_path, run_cli):
    code, out, err = run_cli(["predict", "--checkpoint", tmp_path / "nope.pt", "x.png"])
    assert code == 2 and "checkpoint not found" in err and "Traceback" not in err


def test_train_command(tmp_path, mnist_root, run_cli):
    out_path = tmp_path / "cli.pt"
    args = ["train", "--model", "article2", "--epochs", "1", "--train-limit", "500"]
    args += ["--val-size", "100", "--no-progress", "--out", out_path, "--data-dir", mnist_root]
    code, out, _ = run_cli(args)
    assert code == 0 and "test accuracy" in out and out_path.is_file()
    assert load_checkpoint(out_path)["model"] == "article2"


def test_train_without_data_says_where_to_put_it(tmp_path, monkeypatch, run_cli):
    monkeypatch.delenv("HWR_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "default_root", lambda: tmp_path / "checkout-data")
    monkeypatch.setattr(data, "_download", lambda root: (_ for _ in ()).throw(OSError("offline")))
    code, _, err = run_cli(["train", "--epochs", "1"])
    assert code == 2 and "MNIST was not found" in err and "HWR_DATA" in err and "offline" in err
    # An explicit folder without the files is an error naming it, never a fall-back elsewhere.
    code, _, err = run_cli(["train", "--epochs", "1", "--data-dir", tmp_path / "empty"])
    assert code == 2 and str(tmp_path / "empty" / "MNIST" / "raw") in err
    assert err.count("\n") == 1


def test_bad_options_fail_in_one_line_before_any_data_is_read(monkeypatch, run_cli):
    def no_data(*args, **kwargs):
        raise AssertionError("MNIST was read before the options were checked")

    monkeypatch.setattr(data, "load_mnist", no_data)
    monkeypatch.setattr(datasets, "load_mnist", no_data)
    for args in (["--epochs", "0"], ["--train-limit", "0"], ["--lr", "-1"], ["--device", "gpu"],
                 ["--model-kwargs", "width=-4"], ["--model-kwargs", "depth=3"]):  # fmt: skip
        code, _, err = run_cli(["train", *args])
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, args


def test_garbage_checkpoint_is_one_honest_line(tmp_path, run_cli):
    for name, content in (("cut.pt", b"PK\x03\x04 half a zip"), ("empty.pt", b"")):
        (tmp_path / name).write_bytes(content)
        code, _, err = run_cli(["evaluate", "--checkpoint", tmp_path / name])
        assert code == 2 and err.count("\n") == 1, err
        assert str(tmp_path / name) in err and "not an hwr checkpoint" in err
        assert "weights_only" not in err


def test_a_bug_is_not_dressed_as_a_user_error(monkeypatch, run_cli):
    from hwr_utils import cli

    def bug(args):
        raise ValueError("a programming error")

    monkeypatch.setattr(cli, "cmd_evaluate", bug)  # build_parser binds it by name
    with pytest.raises(ValueError, match="programming error"):
        run_cli(["evaluate", "--checkpoint", "x.pt"])


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "hwr_utils", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "train" in result.stdout and "predict" in result.stdout


def test_an_unexpected_failure_is_reported_per_file(tiny_checkpoint, photos, monkeypatch, run_cli):
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
    code, out, _ = run_cli(["predict", "--checkpoint", tiny_checkpoint, "--json", *paths])
    results = json.loads(out)
    assert code == 1 and "label" in results[0] and "label" in results[2]
    assert results[1]["error"] == "could not be processed: decoder exploded"
