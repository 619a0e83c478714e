"""``hwr finetune`` and training on a folder: the data decides the classes, which travel into
the checkpoint, predictions, evaluation and exports; the base model's knowledge is kept where
the names allow; ``--resume`` and the frozen layers behave."""

from __future__ import annotations

import json

import pytest
import torch

from hwr_utils import datasets
from hwr_utils.checkpoints import load_checkpoint, model_from_checkpoint
from hwr_utils.config import TrainConfig
from hwr_utils.datasets.folders import write_class_folder
from hwr_utils.train import model_from_base

FRENCH = ["zéro", "un", "deux"]


@pytest.fixture(scope="module")
def folders(mnist, tmp_path_factory):
    """Two disjoint folders of MNIST test digits 0, 1, 2 under French class names."""
    _, test = mnist
    index = torch.cat([torch.nonzero(test.labels == d).flatten()[:60] for d in range(3)])
    images, labels = test.images[index], test.labels[index]
    root = tmp_path_factory.mktemp("folders")
    mine = write_class_folder(images[0::2], labels[0::2], FRENCH, root / "mine")
    other = write_class_folder(images[1::2], labels[1::2], FRENCH, root / "other")
    return mine, other


def finetune_args(base, data, out, *extra):
    return ["finetune", "--checkpoint", base, "--data", f"folder:{data}", "--out", out,
            "--epochs", "2", "--no-progress", "--device", "cpu", *extra]  # fmt: skip


def test_finetune_on_a_folder_answers_with_its_class_names(
    tiny_checkpoint, folders, tmp_path, run_cli
):
    mine, other = folders
    out = tmp_path / "ft.pt"
    code, stdout, _ = run_cli(finetune_args(tiny_checkpoint, mine, out))
    assert code == 0 and "3 classes: deux, un, zéro" in stdout and str(out) in stdout
    checkpoint = load_checkpoint(out)
    assert checkpoint["class_names"] == ["deux", "un", "zéro"]
    assert checkpoint["model_config"]["num_classes"] == 3
    assert checkpoint["init_from"]["method"] == "full"
    assert checkpoint["init_from"]["checkpoint"] == str(tiny_checkpoint.resolve())
    assert checkpoint["data"]["files"] == 90 and len(checkpoint["data"]["md5"]) == 32
    assert set(checkpoint["metrics"]) == {"val"}  # a folder without test/ has no test split

    code, stdout, _ = run_cli(["evaluate", "--checkpoint", out, "--data", f"folder:{other}",
                               "--json"])  # fmt: skip
    report = json.loads(stdout)
    assert code == 0 and report["per_class"]["un"]["support"] == 30  # all of the folder
    model = model_from_checkpoint(checkpoint)
    scored = datasets.evaluation_split(f"folder:{other}", None, checkpoint["class_names"],
                                       "classification")[0]  # fmt: skip
    from hwr_utils.data import to_float

    with torch.no_grad():
        expected = (model(to_float(scored.images)).argmax(1) == scored.labels).float().mean()
    assert report["accuracy"] == pytest.approx(expected.item())

    photo = sorted((other / "un").iterdir())[0]
    code, stdout, _ = run_cli(["predict", "--checkpoint", out, "--json", photo])
    (answer,) = json.loads(stdout)
    assert code == 0 and answer["label"] in FRENCH
    assert {t["label"] for t in answer["top3"]} == set(FRENCH)

    pytest.importorskip("onnxruntime")
    code, _, _ = run_cli(["export", "--checkpoint", out, "--format", "onnx"])
    from hwr_utils.export import load_exported

    meta = load_exported(out.with_suffix(".onnx")).metadata
    assert code == 0 and meta["class_names"] == ["deux", "un", "zéro"]
    card = meta["card"]  # the model card travels with the export
    assert card["class_names"] == meta["class_names"] and card["data"] == checkpoint["data"]
    assert card["init_from"]["method"] == "full"
    assert "white ink on black" in card["input"]["contract"]
    assert card["versions"]["torch"] == torch.__version__


def test_known_classes_keep_their_trained_rows(tiny_checkpoint):
    base = load_checkpoint(tiny_checkpoint)
    trained = model_from_checkpoint(base).get_submodule("classifier.2")
    model = model_from_base(base, ["7", "2"], "full")
    head = model.get_submodule(model.head)
    assert head.out_features == 2
    torch.testing.assert_close(head.weight, trained.weight[[7, 2]], rtol=0, atol=0)
    torch.testing.assert_close(head.bias, trained.bias[[7, 2]], rtol=0, atol=0)
    fresh = model_from_base(base, ["7", "sept"], "full").get_submodule(model.head)
    assert not torch.equal(fresh.weight[0], trained.weight[7])  # a new class: a new head


def test_head_method_changes_the_last_layer_only(tiny_checkpoint, folders, tmp_path, run_cli):
    mine, _ = folders
    out = tmp_path / "head.pt"
    code, _, _ = run_cli(finetune_args(tiny_checkpoint, mine, out, "--method", "head"))
    assert code == 0
    before, after = load_checkpoint(tiny_checkpoint)["state_dict"], load_checkpoint(out)
    changed = [k for k, v in after["state_dict"].items() if k in before and
               before[k].shape == v.shape and not torch.equal(before[k], v)]  # fmt: skip
    assert changed == [], changed  # batch norm's running statistics included
    assert after["init_from"]["method"] == "head"


def test_finetune_resumes_where_an_uninterrupted_run_ends(
    tiny_checkpoint, folders, tmp_path, killed_and_resumed, assert_same_run
):
    from hwr_utils.train import fit

    mine, _ = folders

    def config(folder):
        return TrainConfig(model="hwrnet", init_from=str(tiny_checkpoint), data=f"folder:{mine}",
                           epochs=2, out=str(tmp_path / folder / "ft.pt"), progress=False,
                           device="cpu")  # fmt: skip

    assert_same_run(fit(config("whole")), killed_and_resumed(config("parts"), epoch=2))


def test_train_from_scratch_on_three_classes(folders, tmp_path, run_cli):
    mine, _ = folders
    out = tmp_path / "three.pt"
    code, stdout, _ = run_cli(["train", "--data", f"folder:{mine}", "--epochs", "1",
                               "--batch-size", "16", "--out", out, "--no-progress",
                               "--normalization", "data"])  # fmt: skip
    checkpoint = load_checkpoint(out)
    assert code == 0 and checkpoint["class_names"] == ["deux", "un", "zéro"]
    assert checkpoint["model_config"]["num_classes"] == 3
    card = checkpoint["data"]
    assert checkpoint["normalization"]["mean"] == pytest.approx(card["pixel_mean"], rel=1e-6)
    model = model_from_checkpoint(checkpoint)  # the data's own statistics come back with it
    assert model.normalize.std.item() == pytest.approx(card["pixel_std"], rel=1e-6)
    assert card["sizes"] == {"train": 81, "val": 9}


def test_options_are_never_abbreviated_and_bad_ones_are_one_line(run_cli, capsys):
    with pytest.raises(SystemExit):  # --dat is neither --data nor --data-dir
        run_cli(["train", "--dat", "mnist"])
    assert "unrecognized arguments: --dat" in capsys.readouterr().err
    for args in (["--val-size", "70000"], ["--data", "iam"]):
        code, _, err = run_cli(["train", "--epochs", "1", *args])
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, args


def test_a_reader_trains_on_a_text_folder_and_keeps_its_alphabet(
    mnist, tmp_path, run_cli, write_text_folder
):
    texts = ["12", "305", "7", "2026", "41", "90"] * 4
    folder = write_text_folder(tmp_path / "numbers", mnist, texts)
    out = tmp_path / "reader.pt"
    code, stdout, _ = run_cli(["train", "--model", "crnn", "--data", f"folder:{folder}",
                               "--epochs", "1", "--batch-size", "8", "--out", out,
                               "--no-progress", "--device", "cpu"])  # fmt: skip
    checkpoint = load_checkpoint(out)
    assert code == 0 and checkpoint["class_names"] == list("012345679")
    assert checkpoint["model_config"]["num_classes"] == 9 and "9 symbols" in stdout
    code, stdout, _ = run_cli(["evaluate", "--checkpoint", out, "--data", f"folder:{folder}",
                               "--json"])  # fmt: skip
    assert code == 0 and json.loads(stdout)["strips"] == len(texts)
    other = write_text_folder(tmp_path / "more", mnist, ["18", "2026"])  # 8: not in its alphabet
    code, _, err = run_cli(finetune_args(out, other, tmp_path / "ft.pt"))
    assert code == 2 and err.count("\n") == 1 and "n0.png (8)" in err


def test_a_method_without_a_base_model_is_refused():
    from hwr_utils.errors import ConfigError

    with pytest.raises(ConfigError, match="needs init_from"):
        TrainConfig(method="head")
