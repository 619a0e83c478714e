import pickle

import pytest
import torch

from hwr_utils import checkpoints
from hwr_utils.checkpoints import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    load_model,
    model_from_checkpoint,
    save_checkpoint,
    task_from_checkpoint,
)
from hwr_utils.errors import CheckpointError
from hwr_utils.models import build_model


def test_checkpoint_round_trip(tiny_checkpoint):
    checkpoint = load_checkpoint(tiny_checkpoint)  # weights_only=True inside
    assert checkpoint["format"] == CHECKPOINT_FORMAT
    assert checkpoint["task"] == "classification" and checkpoint["input_shape"] == [1, 28, 28]
    assert task_from_checkpoint(checkpoint).class_names == [str(d) for d in range(10)]
    model = model_from_checkpoint(checkpoint)
    assert not model.training
    x = torch.rand(4, 1, 28, 28)
    again = model_from_checkpoint(torch.load(tiny_checkpoint, weights_only=True))
    torch.testing.assert_close(model(x), again(x))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the malicious file's own
def test_checkpoint_refuses_arbitrary_pickles(tmp_path, capfd):
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path.write_bytes(pickle.dumps({"format": 1, "x": Payload()}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message and "weights_only" not in message
    assert "this must never run" not in capfd.readouterr().out


@pytest.mark.parametrize(
    "content, says",
    [
        (b"", "not a readable PyTorch file"),
        (b"PK\x03\x04 half of a zip", "not a readable PyTorch file"),
        (None, "another kind"),  # a real PyTorch file holding a bare tensor
    ],
)
def test_foreign_files_are_one_line(tmp_path, content, says):
    path = tmp_path / "model.pt"
    if content is None:
        torch.save(torch.ones(3), path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=says) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_and_newer_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    save_checkpoint({"format": CHECKPOINT_FORMAT + 1}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer hwr_utils"):
        load_checkpoint(tmp_path / "future.pt")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_checkpoint({"format": CHECKPOINT_FORMAT, "value": torch.ones(2)}, path)

    def crash(obj, file):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"format": CHECKPOINT_FORMAT, "value": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["value"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_format_1_checkpoints_still_load(tmp_path):
    # Format 1 kept the normalization outside the model: its weights had no Normalize buffers
    # and its callers fed (x - mean) / std. Loaded now, it takes pixels in [0, 1] and agrees.
    torch.manual_seed(0)
    old_model = build_model("hwrnet", width=4, normalization="none").eval()
    state = {k: v for k, v in old_model.state_dict().items() if not k.startswith("normalize.")}
    mean, std = 0.1307, 0.3081
    old = {
        "format": 1,
        "model": "hwrnet",
        "model_config": {"width": 4},
        "state_dict": state,
        "normalization": {"mean": mean, "std": std},
        "class_names": [str(d) for d in range(10)],
        "input_size": 28,
    }
    save_checkpoint(old, tmp_path / "old.pt")
    model, checkpoint = load_model(tmp_path / "old.pt")
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), old_model((x - mean) / std))
    assert checkpoint["task"] == "classification"
    old["normalization"] = {"mean": 0.2, "std": 0.7}
    save_checkpoint(old, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="retrain"):
        load_checkpoint(tmp_path / "odd.pt")


def test_every_task_has_an_input_contract_for_its_model_card():
    from hwr_utils.checkpoints import INPUT_CONTRACTS
    from hwr_utils.tasks import TASKS

    assert set(INPUT_CONTRACTS) == set(TASKS)
