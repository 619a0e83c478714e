import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hwr_utils.digit_strings import STRIP_HEIGHT, STRIP_WIDTH, render_number
from hwr_utils.preprocess import ImageError, load_image, preprocess_number_photo, preprocess_photo
from hwr_utils.teaching.synthetic import BOOK_PHOTOS, book_photos, make_photo


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    moments = cv2.moments(image.astype(np.float32))
    return moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]


def ink_box(image: np.ndarray, level: int = 60) -> tuple[int, int]:
    ys, xs = np.nonzero(image > level)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


@pytest.fixture(scope="module")
def digits(mnist):
    test = mnist[1]
    return [test.images[i].numpy() for i in range(6)]


VARIANTS = {
    "plain": {},
    "inverted": {"dark_ink": False},
    "rotated": {"angle": 8.0},
    "off_centre": {"offset": (0.25, -0.3), "digit_height": 120},
    "large": {"size": (3000, 4000), "digit_height": 1500},
    "rgba": {"alpha": True},
    "rgba_light_ink": {"alpha": True, "dark_ink": False},
    "gray": {"color": False},
    "filling_the_frame": {"size": (300, 300), "digit_height": 390},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_photo_lands_like_mnist(digits, variant):
    for seed, digit in enumerate(digits):
        photo = make_photo(digit, seed=seed, **VARIANTS[variant])
        result, steps = preprocess_photo(photo, return_steps=True)
        assert result.shape == (28, 28) and result.dtype == np.uint8
        cx, cy = centre_of_mass(result)
        assert abs(cx - 14) < 0.5 and abs(cy - 14) < 0.5  # centred by mass, where MNIST is
        assert result.sum() > 0.97 * steps["boxed"].sum()  # centring cut no ink off
        assert 17 <= max(ink_box(result)) <= 21  # longer side fits the 20x20 box
        if variant != "rotated":
            # the same digit comes back: compare with the original, re-centred the same way
            original = preprocess_photo(digit)
            corr = np.corrcoef(result.ravel().astype(float), original.ravel().astype(float))[0, 1]
            assert corr > 0.8, f"{variant}, digit {seed}: correlation {corr:.2f}"


def test_inverted_and_plain_agree(digits):
    dark = preprocess_photo(make_photo(digits[0], dark_ink=True))
    light = preprocess_photo(make_photo(digits[0], dark_ink=False))
    corr = np.corrcoef(dark.ravel().astype(float), light.ravel().astype(float))[0, 1]
    assert corr > 0.9


def test_steps_are_returned(digits):
    result, steps = preprocess_photo(make_photo(digits[1]), return_steps=True)
    assert list(steps) == ["gray", "ink_bright", "flat", "mask", "cropped", "boxed", "result"]
    assert np.array_equal(steps["result"], result)
    assert max(steps["boxed"].shape) == 20


@pytest.mark.parametrize(
    "page",
    [np.full((300, 400), 230, np.uint8), np.random.default_rng(0).normal(200, 4, (300, 400))],
    ids=["white", "noisy"],
)
def test_blank_page_is_an_error(page):
    with pytest.raises(ImageError, match="no ink"):
        preprocess_photo(np.clip(page, 0, 255).astype(np.uint8))


def test_bad_array_shape():
    with pytest.raises(ImageError, match="shape"):
        preprocess_photo(np.zeros((10, 10, 2), np.uint8))


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header then claims ``width`` x ``height``."""
    import io

    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data[12:29]  # chunk type + 13 bytes of header data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_load_image_errors(tmp_path, digits):
    good = tmp_path / "good.png"
    Image.fromarray(make_photo(digits[0])).save(good)
    assert load_image(good).shape == (480, 640, 3)

    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not an image")
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:2000])
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(make_photo(digits[0])).save(jpeg, quality=90)
    (tmp_path / "truncated.jpg").write_bytes(jpeg.read_bytes()[:3000])
    (tmp_path / "huge.png").write_bytes(png_with_header_size(100_000, 100_000))
    (tmp_path / "folder.png").mkdir()
    expected = {
        "empty.png": "empty",
        "text.png": "not an image",
        "truncated.png": "could not be decoded",
        "truncated.jpg": "could not be decoded",
        "huge.png": "limit of 100,000,000 pixels",
        "folder.png": "directory",
        "missing.png": "does not exist",
    }
    for name, message in expected.items():
        with pytest.raises(ImageError, match=message):
            load_image(tmp_path / name)


def test_load_image_modes(tmp_path):
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(sixteen)
    array = load_image(sixteen)
    assert array.dtype == np.uint8 and array.max() == 255
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(rgba)
    assert load_image(rgba).shape == (8, 8, 4)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("L", (40, 20), 255)  # wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif)
    assert load_image(path).shape == (40, 20)  # displayed tall


def test_mnist_convention_boxes_and_centres_a_clean_digit():
    from hwr_utils.preprocess import mnist_convention

    digit = np.zeros((16, 16), np.uint8)
    digit[2:14, 6:9] = 255  # a tall bar: 12 high, 3 wide
    out = mnist_convention(digit)
    rows, cols = np.nonzero(out > 60)
    assert out.shape == (28, 28) and rows.max() - rows.min() + 1 in (19, 20, 21)
    assert cols.max() - cols.min() + 1 < 8  # the aspect ratio is kept, not stretched
    cx, cy = centre_of_mass(out)
    assert abs(cx - 14) < 0.6 and abs(cy - 14) < 0.6
    with pytest.raises(ImageError, match="blank"):
        mnist_convention(np.zeros((16, 16), np.uint8))


def test_stroke_width_and_thicken():
    from hwr_utils.preprocess import stroke_width, thicken

    bar = np.zeros((28, 28), np.uint8)
    bar[4:24, 12:15] = 255  # 3 pixels wide, 20 long
    assert stroke_width(bar) == pytest.approx(3, abs=0.3)
    thick = thicken(bar, width=4.0)
    assert stroke_width(thick) >= 4.0 and thick.sum() > bar.sum()
    cx, cy = centre_of_mass(thick)
    assert abs(cx - 14) < 0.6 and abs(cy - 14) < 0.6
    assert np.array_equal(thicken(bar, width=2.0), bar)  # wide enough already: untouched


def test_book_photos_are_what_book_photos_makes(tmp_path, mnist_root):
    # A chapter opened without book/photos/ makes the photos itself: they must be the same
    # pictures the book ships (PNG exactly; JPEG up to the encoder's rounding).
    shipped = Path(__file__).resolve().parents[1] / "book" / "photos"
    made = book_photos(tmp_path / "photos", mnist_root)
    assert (
        [p.name for p in made]
        == sorted(BOOK_PHOTOS)
        == sorted(p.name for p in shipped.iterdir() if p.suffix in (".jpg", ".png"))
    )
    for path in made:
        ours = np.asarray(Image.open(path), dtype=np.int16)
        theirs = np.asarray(Image.open(shipped / path.name), dtype=np.int16)
        assert ours.shape == theirs.shape, path.name
        tolerance = 0 if path.suffix == ".png" else 8
        assert np.abs(ours - theirs).max() <= tolerance, path.name
    stamp = made[0].stat().st_mtime_ns
    assert book_photos(tmp_path / "photos", mnist_root) == made  # present: nothing remade
    assert made[0].stat().st_mtime_ns == stamp


def test_a_photo_of_a_number_becomes_a_strip_like_the_training_strips(mnist):
    _, test = mnist
    strip = render_number([test.images[k].numpy() for k in range(5)], np.random.default_rng(0))
    for dark_ink in (True, False):
        photo = make_photo(strip, size=(400, 900), digit_height=200, dark_ink=dark_ink, seed=1)
        made = preprocess_number_photo(photo)
        assert made.shape[0] == STRIP_HEIGHT and made.shape[1] % 4 == 0
        assert made.shape[1] >= STRIP_WIDTH and made.dtype == np.uint8
        rows = np.flatnonzero(made.max(1) > 60)
        assert abs((rows[0] + rows[-1]) / 2 - (STRIP_HEIGHT - 1) / 2) <= 2  # centred
        assert made[:, :3].max() == 0 and made[:, -3:].max() == 0  # margins are background
        # The ink spans about as many columns, relative to its height, as in the strip drawn.
        ink = np.flatnonzero(made.max(0) > 60)
        drawn = np.flatnonzero(strip.max(0) > 60)
        drawn_rows = np.flatnonzero(strip.max(1) > 60)
        ratio = (ink[-1] - ink[0]) / (rows[-1] - rows[0])
        assert ratio == pytest.approx(
            (drawn[-1] - drawn[0]) / (drawn_rows[-1] - drawn_rows[0]), rel=0.15
        )
    with pytest.raises(ImageError, match="no ink"):
        preprocess_number_photo(np.full((100, 400), 230, np.uint8))
