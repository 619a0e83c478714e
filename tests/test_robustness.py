import pytest
import torch

from hwr_utils.teaching.robustness import PERTURBATIONS, blur, gaussian_noise, rotate, thickness


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist[1].images[:16].float().unsqueeze(1) / 255


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_strength_zero_is_identity(digits, name):
    function, levels = PERTURBATIONS[name]
    assert 0 in levels
    torch.testing.assert_close(function(digits, 0), digits)


def test_each_perturbation_does_what_it_says(digits):
    noisy = gaussian_noise(digits, 0.3)
    assert 0 <= noisy.min() and noisy.max() <= 1 and (noisy - digits).abs().mean() > 0.05
    assert blur(digits, 2.0).max() < digits.max()  # peaks spread out
    torch.testing.assert_close(rotate(digits, 90), torch.rot90(digits, 1, dims=(2, 3)))
    ink = digits.sum()
    assert thickness(digits, 1).sum() > ink > thickness(digits, -1).sum()
