import pytest
import torch
import torch.nn.functional as F

from hwr_utils.checkpoints import load_checkpoint, model_from_checkpoint
from hwr_utils.data import to_float
from hwr_utils.finetune import (
    METHODS,
    changed_tensors,
    finetune,
    freeze_backbone,
    stratified_split,
    train_mode,
    trainable_parameters,
)
from hwr_utils.models import ArticleNet, build_model


def one_step(model, parameters, train=train_mode):
    optimizer = torch.optim.SGD(parameters, lr=0.1)
    train(model)
    torch.manual_seed(0)
    loss = F.cross_entropy(model(torch.rand(16, 1, 28, 28)), torch.randint(0, 10, (16,)))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_the_articles_unfreezing_unfreezes_nothing():
    model = ArticleNet()
    for parameter in model.parameters():
        parameter.requires_grad = False
    model.fc1.requires_grad = True  # the article's line: a new attribute on the module
    assert model.fc1.requires_grad is True
    assert not any(p.requires_grad for p in model.parameters())
    model.fc1.requires_grad_(True)  # the method sets it on every parameter of the module
    assert all(p.requires_grad for p in model.fc1.parameters())
    assert not any(p.requires_grad for p in model.conv1.parameters())


def test_frozen_backbone_stays_put_head_moves():
    model = freeze_backbone(build_model("hwrnet", width=4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one_step(model, trainable_parameters(model))
    changed = changed_tensors(before, model)
    assert changed and all(name.startswith("classifier.") for name in changed)


def test_without_eval_mode_frozen_batch_norm_drifts():
    model = freeze_backbone(build_model("hwrnet", width=4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one_step(model, trainable_parameters(model), train=lambda m: m.train())
    assert any(name.endswith("running_mean") for name in changed_tensors(before, model))


def test_finetune_methods_touch_what_they_should(tiny_checkpoint, mnist):
    pretrained = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    original = {k: v.clone() for k, v in pretrained.state_dict().items()}
    x, y = to_float(mnist[1].images[:64]), mnist[1].labels[:64]

    def build():
        return build_model("hwrnet", width=8)

    for method in METHODS:
        model = finetune(pretrained, method, x, y, build, steps=5, seed=1)
        assert not model.training
        changed = set(changed_tensors(original, model))
        features_changed = any(name.startswith("features.") for name in changed)
        assert features_changed == (method in ("scratch", "full")), method
        assert "classifier.2.weight" in changed, method
    assert not changed_tensors(original, pretrained)  # the pre-trained model is left intact
    with pytest.raises(ValueError, match="unknown method"):
        finetune(pretrained, "everything", x, y, build)


def test_the_train_mode_is_a_parameter(tiny_checkpoint, mnist):
    pretrained = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    original = {k: v.clone() for k, v in pretrained.state_dict().items()}
    x, y = to_float(mnist[1].images[:64]), mnist[1].labels[:64]
    statistics = {}
    for name, mode in (("train_mode", train_mode), ("plain", lambda m, frozen: m.train())):
        model = finetune(pretrained, "linear_probe", x, y, None, steps=3, set_train_mode=mode)
        statistics[name] = [n for n in changed_tensors(original, model) if "running_" in n]
        # The linear probe's new head has as many outputs as the old one.
        assert model.classifier[2].out_features == pretrained.classifier[2].out_features
    assert statistics["train_mode"] == []  # the frozen backbone keeps its statistics
    assert any(n.startswith("features.") for n in statistics["plain"])


def test_finetuning_learns_the_new_data(tiny_checkpoint, mnist):
    pretrained = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    # "new data": MNIST test digits, inverted, which the pre-trained model gets mostly wrong
    x = to_float(255 - mnist[1].images[:300])
    y = mnist[1].labels[:300]
    tuned = finetune(pretrained, "full", x[:200], y[:200], None, steps=60, lr=0.003)
    before = (pretrained(x[200:]).argmax(1) == y[200:]).float().mean()
    after = (tuned(x[200:]).argmax(1) == y[200:]).float().mean()
    assert after > before + 0.2


def test_frozen_bn_statistics_stay_put_in_full_finetuning():
    model = build_model("hwrnet", width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one_step(model, list(model.parameters()), train=lambda m: train_mode(m, freeze_bn_stats=True))
    changed = changed_tensors(before, model)
    assert not [n for n in changed if "running_" in n or "num_batches" in n]
    assert any(n.endswith("weight") and n.startswith("features.") for n in changed)


def test_stratified_split():
    labels = torch.arange(10).repeat(20)
    first = stratified_split(labels, 5, seed=0)
    assert labels[first].bincount().tolist() == [5] * 10
    assert torch.equal(first, stratified_split(labels, 5, seed=0))
    rest = stratified_split(labels, None, seed=0, exclude=first)
    assert len(rest) == 150 and not set(rest.tolist()) & set(first.tolist())


def test_finetune_augments_batches_when_asked(monkeypatch):
    from hwr_utils import finetune as finetune_module

    calls = []
    real = finetune_module.random_affine

    def spy(images, strength):
        calls.append(strength)
        return real(images, strength=strength)

    monkeypatch.setattr(finetune_module, "random_affine", spy)
    x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
    pretrained = build_model("hwrnet", width=4)
    finetune(pretrained, "head", x, y, None, steps=3, augment=0.5)
    assert calls == [0.5] * 3
    finetune(pretrained, "head", x, y, None, steps=3)
    assert len(calls) == 3  # augment=0: no augmentation


def test_full_finetuning_of_a_reader_trains_its_column_layers_with_the_head(mnist):
    from hwr_utils.ctc import ctc_loss
    from hwr_utils.digit_strings import make_number_strips
    from hwr_utils.tasks import CTCRecognition

    strips = make_number_strips(mnist[1], 64, seed=0)
    x, y = to_float(strips.images), strips.labels
    torch.manual_seed(0)
    pretrained = build_model("crnn", width=4, hidden=16).eval()
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    tuned = finetune(pretrained, "full", x, y, None, steps=20, lr=0.01, backbone_lr_factor=0.0,
                     batch_size=16, task=CTCRecognition())  # fmt: skip
    changed = changed_tensors(before, tuned)
    # Every trainable tensor outside the backbone moved; the backbone's weights (rate 0) did not.
    for name, _ in tuned.named_parameters():
        assert (name in changed) != name.startswith("features."), name
    with torch.no_grad():
        assert ctc_loss(tuned(x), y) < ctc_loss(pretrained(x), y)
