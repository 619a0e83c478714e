import pytest
import torch

from hwr_utils.augment import affine, random_affine


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
