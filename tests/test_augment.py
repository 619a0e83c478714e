import pytest
import torch

from hwr_utils.augment import _underline, affine, augment_strips, random_affine


def test_strength_scales_every_range():
    half = affine(0.5)
    assert half.degrees == [-5.0, 5.0] and half.translate == (0.05, 0.05)
    assert half.scale == (0.95, 1.05) and affine(0.5) is half  # built once per strength


def test_a_blank_pixel_batch_stays_blank():
    blank = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    torch.manual_seed(0)
    out = random_affine(blank, strength=2.0)
    assert out.dtype == torch.uint8 and torch.count_nonzero(out) == 0


def test_groups_draw_different_transforms():
    image = torch.zeros(1, 1, 28, 28)
    image[..., 10:18, 12:16] = 1.0
    torch.manual_seed(0)
    out = random_affine(image.expand(32, 1, 28, 28), group_size=8)
    groups = out.split(8)
    assert all(torch.equal(g[0], g[-1]) for g in groups)  # one draw per group
    assert not torch.equal(groups[0][0], groups[1][0])  # a new draw for the next group
    with pytest.raises(ValueError, match="group_size"):
        random_affine(image, group_size=0)


def strips_of_mnist(count: int = 32):
    from hwr_utils.data import MNISTSplit
    from hwr_utils.digit_strings import make_number_strips

    digits = torch.zeros(10, 28, 28, dtype=torch.uint8)
    for d in range(10):
        digits[d, 6:22, 10 + d % 3 : 14 + d % 3] = 255  # upright bars, thick as MNIST's strokes
    strips = make_number_strips(MNISTSplit(digits, torch.arange(10)), count, seed=0)
    return strips.images.unsqueeze(1)


def ink_columns(images: torch.Tensor) -> torch.Tensor:
    """(N,) the number of columns holding ink in each image."""
    return (images.amax(dim=(1, 2)) > 0).sum(1)


def test_strip_augmentation_at_strength_zero_only_moves_the_ink_right():
    strips = strips_of_mnist()
    out = augment_strips(strips, strength=0.0)
    assert out.dtype == torch.uint8 and out.shape[-1] % 4 == 0  # the reader's column stride
    left = strips.shape[2] // 5
    assert torch.equal(out[..., left : left + strips.shape[-1]][..., : out.shape[-1] - left],
                       strips[..., : out.shape[-1] - left])  # fmt: skip


def test_strip_augmentation_varies_each_strip_and_keeps_its_digits():
    torch.manual_seed(0)
    strips = strips_of_mnist(64)
    out = augment_strips(strips, strength=1.0)
    assert out.shape[:3] == strips.shape[:3] and out.shape[-1] % 4 == 0
    # Nothing slides out of the frame: the widest strip ends before the padding does.
    assert out.shape[-1] < strips.shape[2] // 5 + strips.shape[-1] * 5 // 4
    ratio = ink_columns(out) / ink_columns(strips)
    # Slant and underlines widen a short number most; a squeeze narrows it by 15 % at most.
    assert ratio.min() > 0.6 and ratio.max() < 2.5 and ratio.std() > 0.05  # each its own draw
    ink = (out > 64).sum((1, 2, 3)).float() / (strips > 64).sum((1, 2, 3))
    assert ink.min() < 0.8 < 1.2 < ink.max()  # a thinner pen for some, a thicker for others


def test_an_underline_spans_the_ink_of_the_strips_chosen():
    x = torch.zeros(3, 1, 32, 40)
    x[0, 0, 8:24, 10:20] = 1.0
    x[1, 0, 8:24, 5:30] = 1.0  # x[2] is blank: nothing to underline
    out = _underline(x, torch.tensor([True, False, True]))
    row = 32 - 1 - 2
    assert torch.equal(out[1], x[1]) and torch.equal(out[2], x[2])
    assert out[0, 0, row].nonzero().flatten().tolist() == list(range(8, 22))
    assert torch.equal(out[0, 0, :row], x[0, 0, :row])
