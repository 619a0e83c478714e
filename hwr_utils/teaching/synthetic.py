"""Photo-like images of handwritten digits, made from MNIST digits, for tests and the book.

There is no internet here to fetch real photos, so we make them: an MNIST digit is enlarged,
drawn as dark ink on light, unevenly lit paper, rotated a little, moved off-centre and given
sensor noise. Because we know which digit went in, we can check what comes out.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_photo(
    digit: np.ndarray,
    size: tuple[int, int] = (480, 640),
    digit_height: int = 260,
    angle: float = 0.0,
    offset: tuple[float, float] = (0.0, 0.0),
    dark_ink: bool = True,
    noise: float = 6.0,
    color: bool = True,
    alpha: bool = False,
    thin: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Render a 28x28 uint8 MNIST ``digit`` (white on black) as a photo of ink on paper; any
    other image of white ink on black works too (a strip of a whole number), ``digit_height``
    then being the height of the whole image in the photo.

    ``size`` is (height, width); ``offset`` moves the digit by that fraction of the image size;
    ``angle`` rotates it (degrees, counter-clockwise); ``thin`` in [0, 1) keeps only the core of
    each stroke, like a fine pen (0.6 leaves about half the width). Returns uint8 (H, W),
    (H, W, 3) RGB or, with ``alpha``, (H, W, 4) RGBA whose background is transparent.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    scale = digit_height / digit.shape[0]
    centre = (width / 2 + offset[1] * width, height / 2 + offset[0] * height)
    middle = ((digit.shape[1] - 1) / 2, (digit.shape[0] - 1) / 2)
    # One affine map: scale the digit, rotate it about its middle, move that into place.
    matrix = cv2.getRotationMatrix2D(middle, angle, scale)
    matrix[:, 2] += np.array(centre) - np.array(middle)
    ink = cv2.warpAffine(
        digit.astype(np.float32) / 255.0, matrix, (width, height), flags=cv2.INTER_CUBIC
    )
    ink = np.clip(ink, 0.0, 1.0)
    if thin:
        ink = np.clip((ink - thin) / (1.0 - thin), 0.0, 1.0)
    if alpha:
        # Ink drawn in an app: colour everywhere, the shape only in the alpha channel.
        rgba = np.zeros((height, width, 4), np.uint8)
        rgba[..., :3] = 20 if dark_ink else 235
        rgba[..., 3] = np.round(ink * 255).astype(np.uint8)
        return rgba
    # Paper lit from one side: a gentle gradient across the page.
    ramp = np.linspace(0.0, 1.0, width)[None, :] * np.ones((height, 1))
    paper = 200.0 + 40.0 * ramp if dark_ink else 40.0 + 20.0 * ramp
    ink_level = 35.0 if dark_ink else 230.0
    gray = paper * (1 - ink) + ink_level * ink
    gray = gray + rng.normal(0.0, noise, size=gray.shape)
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    if not color:
        return gray
    tint = np.array([1.0, 0.97, 0.9])  # warm light on paper
    return np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)


# The photos the book ships in book/photos/: name -> (label, options for make_photo). The file
# name starts with the true label, so a chapter can check its predictions.
BOOK_PHOTOS: dict[str, tuple[int, dict]] = {
    "7_pen_on_paper.jpg": (7, {"thin": 0.4, "size": (900, 1200), "digit_height": 500}),
    "2_marker.jpg": (2, {"size": (480, 640), "digit_height": 300, "angle": -6}),
    "1_chalk_on_board.jpg": (1, {"dark_ink": False, "size": (600, 800), "digit_height": 380}),
    "4_tablet_drawing.png": (4, {"alpha": True, "size": (400, 400), "digit_height": 300}),
    "0_off_centre.jpg": (0, {"offset": (0.2, -0.25), "digit_height": 180, "size": (720, 960)}),
    "9_tilted.jpg": (9, {"angle": 12, "size": (600, 600), "digit_height": 360}),
    "3_large_photo.jpg": (3, {"thin": 0.5, "size": (2400, 3200), "digit_height": 1400, "noise": 2}),
    "5_gray_scan.png": (5, {"color": False, "noise": 3, "size": (300, 300), "digit_height": 220}),
}


def book_photos(
    folder: str | Path = "photos", data_dir: str | Path | None = None, overwrite: bool = False
) -> list[Path]:
    """The book's photos in ``folder``, sorted by name; any that are missing (all of them, with
    ``overwrite``) are made first (preprocessing and deployment chapters), so a chapter opened
    on its own still has them.

    Each is the first MNIST *test* image of its label (never seen in training), drawn by
    :func:`make_photo` with the options in ``BOOK_PHOTOS`` and its position as the seed.
    """
    from PIL import Image

    from ..data import load_mnist

    folder = Path(folder)
    missing = [name for name in BOOK_PHOTOS if overwrite or not (folder / name).is_file()]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        _, test = load_mnist(data_dir)
        for seed, (name, (label, options)) in enumerate(BOOK_PHOTOS.items()):
            if name in missing:
                index = int((test.labels == label).nonzero()[0, 0])
                photo = make_photo(test.images[index].numpy(), seed=seed, **options)
                extra = {"quality": 88} if name.endswith(".jpg") else {}
                Image.fromarray(photo).save(folder / name, **extra)
    return sorted(folder / name for name in BOOK_PHOTOS)
