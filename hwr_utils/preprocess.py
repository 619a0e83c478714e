"""From a photo of one handwritten digit to a 28x28 image that looks like MNIST.

MNIST's conventions (LeCun et al.): white ink on black, the digit scaled so that its longer
side fits a 20x20 box with its aspect ratio kept, then placed in a 28x28 field so that its
centre of mass is the centre of the field. A photo is none of that: any size, colour, dark ink
on light paper, uneven light, specks. :func:`preprocess_photo` bridges the two with OpenCV.

Files are decoded by Pillow, which refuses truncated files and decompression bombs and knows
phone photos' EXIF orientation; the image work itself is OpenCV.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from .errors import HwrError

MAX_FILE_BYTES = 100 * 2**20  # 100 MiB
MAX_PIXELS = 100_000_000  # 100 megapixels: larger than any phone photo
WORK_SIZE = 512  # photos are shrunk so their longer side is at most this before any work
BOX = 20  # MNIST: the digit's longer side fits a 20x20 box ...
FIELD = 28  # ... centred by mass in a 28x28 field


class ImageError(HwrError, ValueError):
    """An input that is not a usable photo of a digit; the message is one line for the user."""


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file safely into a uint8 array: (H, W), (H, W, 3) RGB or (H, W, 4) RGBA.

    Raises :class:`ImageError` for a missing file, a directory, an empty or truncated file,
    something that is not an image, or absurd dimensions (checked from the header, before any
    pixel is decoded, so a 100,000 x 100,000 "image" costs no memory).
    """
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not an image")
    if not path.is_file():
        raise ImageError(f"{path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"{path} is empty")
    if size > MAX_FILE_BYTES:
        raise ImageError(
            f"{path} is {size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES >> 20} MiB"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"{path} is {width}x{height} pixels; the limit is {MAX_PIXELS:,} pixels"
                    )
                # Shrink while decoding where the format allows it (JPEG): big photos stay cheap.
                image.draft(image.mode, (WORK_SIZE, WORK_SIZE))
                image = ImageOps.exif_transpose(image)
                image.load()
                return _to_uint8_array(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{path} has absurd dimensions: over the limit of {MAX_PIXELS:,} pixels"
        ) from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{path} is not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path} could not be decoded: {error}") from None


def _to_uint8_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        return np.clip(array / max(array.max(), 1.0) * 255.0, 0, 255).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return np.asarray(image.convert("RGBA"))
    if image.mode in ("L", "1"):
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale uint8 from (H, W), (H, W, 3) or (H, W, 4); transparency is flattened onto a
    background that contrasts with the ink, so both black-on-transparent and
    white-on-transparent drawings survive."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating):
            image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255)
        else:
            image = image.astype(np.float64) * 255.0 / max(float(image.max()), 1.0)
        image = image.astype(np.uint8)
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f"expected a gray, RGB or RGBA image, got an array of shape {image.shape}")
    gray = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    if image.shape[2] == 3:
        return gray
    alpha = image[..., 3].astype(np.float32) / 255.0
    if alpha.min() > 0.99:
        return gray
    opaque = alpha > 0.5
    ink_is_dark = opaque.any() and gray[opaque].mean() < 128
    background = 255.0 if ink_is_dark else 0.0
    return (gray * alpha + background * (1.0 - alpha)).astype(np.uint8)


def _shrink(gray: np.ndarray, longest: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    height, width = gray.shape
    scale = longest / max(height, width)
    if scale >= 1:
        return gray
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(gray, size, interpolation=interpolation)


def ink_mask(ink: np.ndarray) -> np.ndarray:
    """Binary mask of the ink in a white-on-black image: Otsu's threshold, then small specks
    (components under 5% of the largest one's area) removed."""
    _, mask = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= 0.05 * areas.max())
    return np.where(np.isin(labels, keep), 255, 0).astype(np.uint8)


def fit_in_box(ink: np.ndarray, box: int = BOX, shrink_with: int = cv2.INTER_AREA) -> np.ndarray:
    """Scale a cropped digit so its longer side is ``box`` pixels, keeping the aspect ratio.

    Shrinking uses ``INTER_AREA`` by default: it averages every source pixel under each target
    pixel, where ``INTER_LINEAR`` and ``INTER_CUBIC`` read only a few neighbours and alias
    (thin strokes break up). Enlarging uses ``INTER_CUBIC``.
    """
    height, width = ink.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = shrink_with if scale < 1 else cv2.INTER_CUBIC
    return np.clip(cv2.resize(ink.astype(np.float32), size, interpolation=interpolation), 0, 255)


def center_by_mass(digit: np.ndarray, field: int = FIELD) -> np.ndarray:
    """Place ``digit`` in a ``field`` x ``field`` image with its centre of mass at pixel
    ``(field / 2, field / 2)`` -- (14, 14) for 28x28, where MNIST's digits have theirs (measured
    in the preprocessing chapter), half a pixel from the geometric centre 13.5."""
    moments = cv2.moments(digit.astype(np.float32))
    height, width = digit.shape
    if moments["m00"] > 0:
        cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    else:
        cx, cy = (width - 1) / 2, (height - 1) / 2
    shift = np.float32([[1, 0, field / 2 - cx], [0, 1, field / 2 - cy]])
    return cv2.warpAffine(digit.astype(np.float32), shift, (field, field), flags=cv2.INTER_LINEAR)


def stroke_width(digit: np.ndarray) -> float:
    """Mean stroke width, in pixels, of a white-on-black digit: twice the ink's area over the
    length of its outline (a stroke of width w and length L has area wL and an outline of about
    2L). Ink is what is at least half as bright as the brightest pixel."""
    digit = np.asarray(digit, dtype=np.float32)
    mask = (digit >= 0.5 * max(float(digit.max()), 1e-6)).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    outline = sum(cv2.arcLength(contour, True) for contour in contours)
    return 2.0 * float(mask.sum()) / outline if outline else 0.0


def thicken(digit: np.ndarray, width: float, most: int = 3) -> np.ndarray:
    """Dilate a 28x28 digit with a 2x2 kernel (about one pixel wider each time, ``most`` times
    at the most) until its :func:`stroke_width` reaches ``width``, re-centring it by mass.
    Thicker digits are returned as they are: thinning loses strokes."""
    out = np.asarray(digit, dtype=np.uint8)
    for _ in range(most):
        if stroke_width(out) >= width:
            break
        out = cv2.dilate(out, np.ones((2, 2), np.uint8))
        out = np.clip(center_by_mass(out.astype(np.float32)), 0, 255).astype(np.uint8)
    return out


def mnist_convention(digit: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """A clean white-on-black digit image (any size) in MNIST's conventions: cropped to the
    pixels brighter than ``threshold`` times its brightest, scaled so the longer side is 20
    pixels (aspect kept), centred by mass in 28x28; uint8. These are the last steps of
    :func:`preprocess_photo`; for clean scans such as USPS's they are all that is needed
    (fine-tuning chapter)."""
    digit = np.asarray(digit, dtype=np.float32)
    peak = float(digit.max()) if digit.size else 0.0
    if peak <= 0:
        raise ImageError("no ink found: the image is blank")
    ys, xs = np.nonzero(digit > threshold * peak)
    crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] * (255.0 / peak)
    return np.clip(center_by_mass(fit_in_box(crop)), 0, 255).astype(np.uint8)


def preprocess_photo(
    image: np.ndarray, return_steps: bool = False, shrink_with: int = cv2.INTER_AREA
):
    """Turn a photo of one handwritten digit into a 28x28 uint8 MNIST-style image.

    ``image``: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA, any size, dark ink on light paper
    or light on dark. Steps: grayscale -> shrink -> make the ink bright (invert when the border,
    i.e. the paper, is bright) -> subtract the paper's local level -> threshold (Otsu) -> drop
    specks -> crop to the ink -> fit in a 20x20 box keeping the aspect ratio -> centre by mass
    in 28x28.

    With ``return_steps`` also returns a dict of the intermediate images, for the book's figures.
    ``shrink_with`` is the OpenCV interpolation used when shrinking (the book compares them).
    Raises :class:`ImageError` when there is no ink to find (a blank page).
    """
    steps: dict[str, np.ndarray] = {}
    gray = _shrink(to_gray(image), WORK_SIZE, shrink_with)
    steps["gray"] = gray
    # The paper is what touches the border; ink should end up bright, as in MNIST.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ink = 255 - gray if np.median(border) > 127 else gray.copy()
    steps["ink_bright"] = ink
    # Subtract the paper, estimated locally: a median over windows much wider than a stroke
    # sees mostly paper, so uneven light and grey paper read as zero ink.
    kernel = max(3, (max(ink.shape) // 100) | 1)
    smooth = cv2.GaussianBlur(ink, (kernel, kernel), 0)
    paper = cv2.medianBlur(smooth, max(3, (max(ink.shape) // 4) | 1))
    # A thick digit filling the frame can fill a median window too, and would then count as
    # paper. The paper is no brighter than the border's bright paper (its 75th percentile, so
    # that ink touching the border here and there does not count): cap the estimate there.
    edge = np.concatenate([smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]])
    paper = np.minimum(paper, np.uint8(np.percentile(edge, 75)))
    flat = cv2.subtract(smooth, paper)  # saturating: never below zero
    steps["flat"] = flat
    if int(flat.max()) < 40:
        raise ImageError("no ink found: the image looks blank")
    mask = ink_mask(flat)
    steps["mask"] = mask
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ImageError("no ink found: the image looks blank")
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    level = cv2.subtract(ink, paper).astype(np.float32)
    # Keep only ink near the kept strokes (a few pixels of margin keep the anti-aliased edge).
    near = cv2.dilate(mask, np.ones((kernel, kernel), np.uint8)) > 0
    level = np.where(near, level, 0)[top:bottom, left:right]
    level = level * (255.0 / max(float(level.max()), 1.0))
    steps["cropped"] = level.astype(np.uint8)
    boxed = fit_in_box(level, shrink_with=shrink_with)
    steps["boxed"] = boxed.astype(np.uint8)
    result = np.clip(center_by_mass(boxed), 0, 255).astype(np.uint8)
    steps["result"] = result
    return (result, steps) if return_steps else result


def preprocess_number_photo(
    image: np.ndarray, height: int = 32, min_width: int = 192
) -> np.ndarray:
    """Turn a photo of a written number into a strip like the number reader's training strips:
    ``height`` pixels tall (``digit_strings.STRIP_HEIGHT``), white ink on black, any width.

    The ink is found as :func:`preprocess_photo` finds it (brightened, paper subtracted,
    thresholded, cropped), then scaled so its height is MNIST's 20-pixel box in a 28-pixel frame
    at the strip's height, centred vertically, with a 4-pixel margin at each end, padded on the
    right to at least ``min_width`` (``digit_strings.STRIP_WIDTH``: the reader saw that much
    background in training) and to a multiple of 4 (the reader's column stride). Raises
    :class:`ImageError` when there is no ink. Chapter "Reading whole numbers".
    """
    _, steps = preprocess_photo(image, return_steps=True)
    ink = steps["cropped"]
    ink_height = round(height * BOX / FIELD)
    width = max(1, round(ink.shape[1] * ink_height / ink.shape[0]))
    if width > 64 * height:
        raise ImageError(f"the ink is {width // height} times wider than tall: not one number")
    resized = cv2.resize(ink, (width, ink_height), interpolation=cv2.INTER_AREA)
    padded = max(min_width, -(-(width + 8) // 4) * 4)
    strip = np.zeros((height, padded), np.uint8)
    top = (height - ink_height) // 2
    strip[top : top + ink_height, 4 : 4 + width] = resized
    return strip
