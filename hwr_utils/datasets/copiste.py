"""*Copiste d'un jour*: real French handwriting, one text line per example.

Volunteers copied short French Wikipedia summaries by hand; BAnQ scanned the pages and aligned
each segmented line to the source text in ALTO v4 XML (BAnQ, *Copiste d'un jour*, 2024,
CC BY 4.0, https://github.com/banq-dcn/Copiste-d-un-jour). The data lives in
``<root>/COPISTE/``: ``pages/NAME.png`` (the scan in grey at half its size, mostly 1275x1650),
``alto/NAME.xml`` (coordinates in the original scan's pixels) and ``MD5SUMS``. Roots are
searched like MNIST's (:func:`hwr_utils.data.candidate_roots`).

Only the pages named in ``copiste_splits.json`` (shipped beside this module) are ever loaded or
downloaded: the rest of the public set is kept apart as a final check on unseen writers. The
same file fixes the writer-disjoint train/val/test splits (:func:`writer_splits` says how).

Every line image follows the library's MNIST convention: ink bright, background 0, uint8,
``LINE_HEIGHT`` rows, any width. :func:`cut_line` makes them from a page and its ALTO polygon;
:func:`preprocess_line_photo` makes the same kind of image from a user's photo of one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
import unicodedata
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..data import ChecksumError, find_data, md5sum
from ..lines import LINE_HEIGHT  # every line image is this many pixels tall
from ..preprocess import ImageError, load_image, to_gray

#: The shipped list of pages, their original checksums and the writer splits.
SPLITS_FILE = Path(__file__).with_name("copiste_splits.json")
RAW_URL = "https://raw.githubusercontent.com/{repository}/{commit}/{path}"
#: How many bad files one error names before it says how many more there are.
NAMED = 5

#: The participation terms printed on the form, which many writers copied before their text.
CONSENT = (
    "J'ai lu les conditions de participation et j'y consens. Je comprends que mon manuscrit "
    "sera anonymisé et utilisé par BAnQ pour des activités de recherche et développement et "
    "qu'il pourra aussi être publié et partagé sous licence CC-BY pour être utilisé librement "
    "à des fins non commerciales."
)


def dataset_dir(root: str | os.PathLike) -> Path:
    """The folder that holds the data under a data ``root``: ``<root>/COPISTE``."""
    return Path(root) / "COPISTE"


def shipped() -> dict[str, Any]:
    """The shipped ``copiste_splits.json``: rule, seed, splits, source, pages, checksums."""
    return json.loads(SPLITS_FILE.read_text(encoding="utf-8"))


# --- Finding (or downloading) the data ------------------------------------------------------


def _has_files(root: Path) -> bool:
    folder = dataset_dir(root)
    return (
        (folder / "pages").is_dir()
        and (folder / "alto").is_dir()
        and (folder / "MD5SUMS").is_file()
    )


def find_copiste(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the root folder holding ``COPISTE/pages``, ``COPISTE/alto`` and
    ``COPISTE/MD5SUMS``, searched like MNIST (:func:`~hwr_utils.data.find_data`); when missing,
    download the shipped list's pages into :func:`hwr_utils.data.default_root`. Raises
    :class:`~hwr_utils.data.DataNotFoundError` naming the places searched."""
    return find_data(
        "COPISTE",
        dataset_dir,
        _has_files,
        "pages/*.png, alto/*.xml and MD5SUMS",
        "copy the COPISTE folder into <DIR>/ (so that <DIR>/COPISTE/pages exists) and pass "
        "--data-dir <DIR> or set HWR_DATA=<DIR>.",
        data_dir,
        fetch=_download if download else None,
        source="GitHub",
    )


def jpeg_to_page(data: bytes) -> np.ndarray:
    """An original colour JPEG scan as the grey page the data holds (the data README's recipe:
    most scans are 2550x3300 and become 1275x1650; the few of other sizes are halved too)."""
    colour = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if colour is None:
        raise ImageError("a downloaded scan is not a JPEG OpenCV can decode")
    grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    half = (grey.shape[1] // 2, grey.shape[0] // 2)
    return cv2.resize(grey, half, interpolation=cv2.INTER_AREA)


def _download(root: Path) -> None:
    """Fetch the shipped list's scans and ALTO files at the pinned commit, check each against
    its original MD5, convert the scans to grey pages and write ``MD5SUMS`` last: a download cut
    short has no ``MD5SUMS`` and is never taken for the data."""
    info = shipped()
    source, expected = info["source"], info["original_md5"]
    folder = dataset_dir(root)
    (folder / "pages").mkdir(parents=True, exist_ok=True)
    (folder / "alto").mkdir(exist_ok=True)
    sums = []
    for name in info["pages"]:
        for remote, local in ((f"jpg/{name}.jpg", f"pages/{name}.png"),
                              (f"alto/{name}.xml", f"alto/{name}.xml")):  # fmt: skip
            url = RAW_URL.format(path=remote, **source)
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
            if hashlib.md5(data).hexdigest() != expected[remote]:
                raise ChecksumError(f"{url} is not the file expected (its MD5 differs)")
            if local.endswith(".png"):
                data = cv2.imencode(".png", jpeg_to_page(data))[1].tobytes()
            (folder / local).write_bytes(data)
            sums.append(f"{hashlib.md5(data).hexdigest()}  {local}\n")
    (folder / "MD5SUMS").write_text("".join(sums), encoding="utf-8")


def verify(folder: Path) -> str:
    """Check every shipped page's PNG and ALTO file in ``folder`` against ``MD5SUMS``, and each
    ALTO file against the original's MD5 (the labels are the published ones). Returns the MD5
    of ``MD5SUMS``; raises :class:`~hwr_utils.data.ChecksumError` naming the bad files."""
    listed = {}
    for row in (folder / "MD5SUMS").read_text(encoding="utf-8").splitlines():
        digest, _, path = row.strip().partition("  ")
        listed[path] = digest
    info, bad = shipped(), []
    for name in info["pages"]:
        for path in (f"pages/{name}.png", f"alto/{name}.xml"):
            file = folder / path
            if not file.is_file():
                bad.append(f"{file} (missing)")
                continue
            actual = md5sum(file)
            # ALTO files are the originals, unchanged: their published MD5 is known here too.
            original = info["original_md5"].get(path, actual)
            if actual != listed.get(path) or actual != original:
                bad.append(f"{file} (md5 {actual})")
    if bad:
        more = f" and {len(bad) - NAMED} more" if len(bad) > NAMED else ""
        raise ChecksumError(
            f"COPISTE file(s) missing or not the published ones: {'; '.join(bad[:NAMED])}{more}."
            f" Copy or download the COPISTE folder again."
        )
    return md5sum(folder / "MD5SUMS")


# --- ALTO pages, writers and texts ----------------------------------------------------------


@dataclass(frozen=True)
class AltoLine:
    """One ``TextLine``: its text as written in the file, its polygon and baseline as (x, y)
    points and its bounding box (x, y, width, height), all in the ALTO page's pixels."""

    id: str
    text: str
    polygon: list[tuple[float, float]]
    baseline: list[tuple[float, float]]
    bbox: tuple[float, float, float, float]


@dataclass
class AltoPage:
    """An ALTO file: the page's name (the file's stem), its size in pixels, its lines in order."""

    name: str
    width: int
    height: int
    lines: list[AltoLine]


def _local(tag: str) -> str:
    # ElementTree spells a namespaced tag "{uri}Name": compare the local name, whatever version.
    return tag.rpartition("}")[2]


def _points(text: str | None) -> list[tuple[float, float]]:
    values = [float(v) for v in (text or "").replace(",", " ").split()]
    return list(zip(values[0::2], values[1::2], strict=True))


def parse_alto(path: str | os.PathLike) -> AltoPage:
    """Read an ALTO file (any ALTO namespace): the page size and every ``TextLine``."""
    root = ET.parse(path).getroot()
    page = next(e for e in root.iter() if _local(e.tag) == "Page")
    lines = []
    for element in root.iter():
        if _local(element.tag) != "TextLine":
            continue
        polygon = next((e for e in element.iter() if _local(e.tag) == "Polygon"), None)
        words = [e.get("CONTENT", "") for e in element.iter() if _local(e.tag) == "String"]
        box = tuple(float(element.get(k, 0)) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT"))
        lines.append(AltoLine(
            id=element.get("ID", ""),
            text=" ".join(words),
            polygon=_points(polygon.get("POINTS") if polygon is not None else None),
            baseline=_points(element.get("BASELINE")),
            bbox=box,  # type: ignore[arg-type]
        ))  # fmt: skip
    return AltoPage(Path(path).stem, int(page.get("WIDTH")), int(page.get("HEIGHT")), lines)


def page_scale(image: np.ndarray, page: AltoPage) -> tuple[float, float]:
    """From ALTO pixels to ``image`` pixels, (x, y): the image's size over the ALTO page's (a
    half for the data's pages, whatever the scan's size)."""
    return image.shape[1] / page.width, image.shape[0] / page.height


def writer_of(page_name: str) -> str:
    """A page's writer: its name without a trailing page number (``wikitexte_0001_2`` ->
    ``wikitexte_0001``; ``imp_wikitexte_0172_double`` is a writer of its own)."""
    return re.sub(r"_\d$", "", page_name)


def clean_text(text: str) -> str:
    """Unicode NFC (an accent is one symbol, not a letter plus a combining mark), trimmed, with
    every run of white space one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


#: Why a line is not an example, checked in this order (one reason per line).
REASONS = ("empty", "id_lines", "unreadable", "crossed_out")


def set_aside_reason(text: str, page_name: str) -> str | None:
    """Why the line ``text`` of page ``page_name`` is kept out of train/val/test, or None.

    * ``empty``: no letter or digit (nothing transcribed, or only a stray mark).
    * ``id_lines``: the page's reference (the printed box, or the writer's own copy of it,
      ``wikitexte`` in any case and spacing, or just the page's number like ``ref. 0149``):
      not part of the copied text.
    * ``unreadable``: ``><`` (CREMMA: unreadable), or ``<>``, which the transcribers also used
      where something on the page is not in the label.
    * ``crossed_out``: ``>words<``: crossed out but readable. The image holds a struck word the
      label cannot spell, so the line would teach a wrong alignment.
    """
    if not re.search(r"[^\W_]", text):
        return "empty"
    number = re.search(r"\d{4}", page_name)
    if re.search(r"wiki\s*texte", text, re.IGNORECASE) or (
        number and re.fullmatch(rf"\W*(?:r[ée]f\W*)?{number.group()}\W*", text, re.IGNORECASE)
    ):
        return "id_lines"
    if "><" in text or "<>" in text:
        return "unreadable"
    if re.search(r">[^<>]+<", text):
        return "crossed_out"
    return None


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


_CONSENT_WORDS = " ".join(_words(CONSENT))
_CONSENT_GRAMS = {tuple(_words(CONSENT)[i : i + 4]) for i in range(len(_words(CONSENT)) - 3)}


def is_consent(text: str) -> bool:
    """Whether a line is part of the copied participation terms (:data:`CONSENT`): compared
    word by word, lower case, punctuation ignored, it shares four words in a row with them, or
    is a run of their words at least 12 letters long (the short last lines, ``commerciales.``).
    Writers' slips (a word left out or changed) still leave such a run."""
    words = _words(text)
    joined = " ".join(words)
    if len(joined) >= 12 and f" {joined} " in f" {_CONSENT_WORDS} ":
        return True
    return any(tuple(words[i : i + 4]) in _CONSENT_GRAMS for i in range(len(words) - 3))


# --- Line images ----------------------------------------------------------------------------

#: Strokes less than this much darker than the paper are no ink (a blank crop's texture).
MIN_CONTRAST = 40


def _ink_levels(grey: np.ndarray) -> np.ndarray:
    """Ink as float32 in [0, 255], paper 0, from dark ink on light paper.

    The paper is a median over windows twice as wide as the crop is tall (computed on a shrunk
    copy, so it is cheap): ink covers far less than half of such a window, and a shadow or a
    tint across a photo is followed. Ink is how much darker than the paper a pixel is. Otsu's
    threshold on that separates strokes from paper texture; levels under half of it count as
    paper, and the strokes' typical darkness (their 90th percentile) becomes 255, so that pen
    and pencil, dark and faint, end up alike.
    """
    height, width = grey.shape
    step = max(1, height // 16)
    small = cv2.resize(grey, (max(1, width // step), max(1, height // step)),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    paper = cv2.medianBlur(small, 2 * small.shape[0] + 1)
    paper = cv2.resize(paper, (width, height), interpolation=cv2.INTER_LINEAR)
    ink = cv2.subtract(paper, grey)  # saturating: paper brighter than its estimate is 0
    threshold, _ = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    strokes = ink[ink > threshold]
    if strokes.size == 0:
        return np.zeros(grey.shape, np.float32)
    floor, strong = threshold / 2, float(np.percentile(strokes, 90))
    if strong < MIN_CONTRAST:
        return np.zeros(grey.shape, np.float32)
    return np.clip((ink - floor) * (255.0 / max(strong - floor, 1.0)), 0, 255).astype(np.float32)


def _components(level: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Connected pieces of ink (a label per pixel, 0 for paper), and which labels are big
    enough to be ink rather than specks (at least a pixel of the ``height``-tall result)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (level > 0).astype(np.uint8), connectivity=8
    )
    least = max(2.0, (level.shape[0] / height) ** 2)
    big = np.zeros(count, bool)
    big[1:] = stats[1:, cv2.CC_STAT_AREA] >= least
    return labels, big


def _fit_height(level: np.ndarray, keep: np.ndarray, height: int) -> torch.Tensor:
    """Crop ``level`` to the kept ink and scale it, aspect ratio kept, so the ink is ``height``
    less a margin of ``height // 20`` rows at each end (the margin is background, 0)."""
    pad = height // 20
    ys, xs = np.nonzero(keep)
    if len(ys) == 0:
        return torch.zeros((height, height), dtype=torch.uint8)
    ink = np.where(keep, level, 0)[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    inner = height - 2 * pad
    width = max(1, round(ink.shape[1] * inner / ink.shape[0]))
    resized = cv2.resize(ink, (width, inner), interpolation=cv2.INTER_AREA)
    out = np.zeros((height, width + 2 * pad), np.uint8)
    out[pad : pad + inner, pad : pad + width] = np.clip(np.rint(resized), 0, 255)
    return torch.from_numpy(out)


def cut_line(
    page: np.ndarray, line: AltoLine, scale: float | tuple[float, float],
    height: int = LINE_HEIGHT,
) -> torch.Tensor:  # fmt: skip
    """One line of a grey page as uint8 (``height``, W): ink bright, background 0.

    ``scale`` takes ALTO pixels to ``page`` pixels (x and y alike, or (x, y):
    :func:`page_scale`). The polygon's bounding box is cropped and everything outside the
    polygon is painted paper, so the neighbouring lines' ascenders and descenders go. The paper
    is then removed as ``_ink_levels`` says, specks and what is left of the neighbours are
    dropped (``_own_ink``), and the crop is narrowed to the ink itself before its height is
    normalised: how much margin the segmenter drew around a line then does not change the size
    of the writing, and a photo cropped by hand (:func:`preprocess_line_photo`) gives nearly
    the same image. A line with no ink is all zeros.
    """
    sx, sy = (scale, scale) if isinstance(scale, int | float) else scale
    points = np.array(line.polygon, np.float64).reshape(-1, 2) * (sx, sy)
    if len(points) < 3:
        return torch.zeros((height, height), dtype=torch.uint8)
    x0, y0 = np.maximum(np.floor(points.min(0)).astype(int), 0)
    x1, y1 = np.ceil(points.max(0)).astype(int) + 1
    crop = page[y0 : min(y1, page.shape[0]), x0 : min(x1, page.shape[1])]
    if crop.size == 0:
        return torch.zeros((height, height), dtype=torch.uint8)
    mask = np.zeros(crop.shape, np.uint8)
    cv2.fillPoly(mask, [np.rint(points - (x0, y0)).astype(np.int32)], 1)
    inside = mask.astype(bool)
    if not inside.any():
        return torch.zeros((height, height), dtype=torch.uint8)
    grey = np.where(inside, crop, np.uint8(np.median(crop[inside])))
    level = np.where(inside, _ink_levels(grey), 0)
    labels, big = _components(level, height)
    if not big.any():
        return torch.zeros((height, height), dtype=torch.uint8)
    return _fit_height(level, _own_ink(labels, big), height)


def preprocess_line_photo(
    image: np.ndarray | str | os.PathLike, height: int = LINE_HEIGHT
) -> torch.Tensor:
    """What ``hwr read`` does to a photo or scan of one written line: uint8 (``height``, W),
    ink bright on 0, like :func:`cut_line`'s images.

    ``image``: an array (grey, RGB or RGBA) or a file, dark ink on light paper (light ink on
    dark is inverted first: the paper is the brighter half). The paper, the specks and the bits
    of the lines above and below that a hand-made crop catches are removed as for
    :func:`cut_line`, and the crop narrowed to the ink, so that the margins left around the line
    do not matter. Raises :class:`~hwr_utils.preprocess.ImageError` when there is no ink.
    """
    if not isinstance(image, np.ndarray):
        image = load_image(image)
    grey = to_gray(image)
    if np.median(grey) < 128:
        grey = 255 - grey
    level = _ink_levels(grey)
    labels, big = _components(level, height)
    if not big.any():
        raise ImageError("no ink found: the image looks blank")
    return _fit_height(level, _own_ink(labels, big), height)


def _own_ink(labels: np.ndarray, big: np.ndarray) -> np.ndarray:
    """Mask of the ink that belongs to the line, in a crop that may hold bits of its
    neighbours. The line's core is the band of rows around the busiest one holding at least half
    as much ink as it: every piece of ink reaching into it is the line's, and so are the pieces
    (accents, dots) within the rows those reach, give or take half the core's height. Bits of the
    neighbours are the rest: pieces cut by the top or bottom edge, or lying beyond the line's
    own ascenders and descenders."""
    count = len(big)
    # Summed over a quarter of the crop's height, so that a ruled or dotted line, busy but one
    # or two rows thin, does not outweigh the band of the letters' bodies.
    window = max(1, labels.shape[0] // 4)
    rows = np.convolve(big[labels].sum(1), np.ones(window), mode="same")
    # The run of busy rows around the busiest one: a neighbour's band beyond a quieter gap is not
    # part of it.
    busy = np.concatenate([[False], rows >= rows.max() / 2, [False]])
    peak = int(rows.argmax()) + 1
    top = int(np.flatnonzero(~busy[:peak])[-1])
    bottom = peak + int(np.flatnonzero(~busy[peak:])[0]) - 1
    in_core = np.zeros(count, bool)
    in_core[np.unique(labels[top:bottom])] = True
    in_core &= big
    reach = np.flatnonzero(in_core[labels].any(1))
    margin = (bottom - top) // 2
    near = np.zeros(count, bool)
    near[np.unique(labels[max(0, reach.min() - margin) : reach.max() + 1 + margin])] = True
    edges = np.zeros(count, bool)
    edges[np.unique(np.concatenate([labels[0], labels[-1]]))] = True
    keep = in_core | (big & near & ~edges)
    return keep[labels]


# --- Splits and the dataset -----------------------------------------------------------------

SPLIT_SEED = 0
SPLIT_RULE = (
    "Writers (a page's name without its trailing _<digit>) are grouped by the text they copied "
    "(the name without a trailing _double: imp_wikitexte_0172 and imp_wikitexte_0172_double "
    "copied the same text). The groups, sorted by name, are shuffled with Python's "
    "random.Random(seed).shuffle; the first round(10%) of them are test, the next round(10%) "
    "val and the rest train. Each split lists its writers, sorted."
)


def writer_splits(names: Iterable[str], seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """The writer-disjoint splits of ``SPLIT_RULE`` for page (or writer) ``names``."""
    writers = sorted({writer_of(name) for name in names})
    groups = sorted({writer.removesuffix("_double") for writer in writers})
    random.Random(seed).shuffle(groups)
    share = round(0.1 * len(groups))
    split_of = {group: "test" if i < share else "val" if i < 2 * share else "train"
                for i, group in enumerate(groups)}  # fmt: skip
    return {
        split: [w for w in writers if split_of[w.removesuffix("_double")] == split]
        for split in ("train", "val", "test")
    }


@dataclass
class LineSplit:
    """One split of line images: ``images[i]`` uint8 (LINE_HEIGHT, W_i), ink bright on 0,
    transcribed as ``texts[i]``, by ``writers[i]`` on ``pages[i]``; ``consent[i]`` says it is
    a line of the copied participation terms (:data:`CONSENT`)."""

    images: list[torch.Tensor]
    texts: list[str]
    writers: list[str]
    pages: list[str]
    consent: list[bool]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Iterable[int]) -> LineSplit:
        """The lines at ``indices``, in that order."""
        index = list(indices)
        return LineSplit([self.images[i] for i in index], [self.texts[i] for i in index],
                         [self.writers[i] for i in index], [self.pages[i] for i in index],
                         [self.consent[i] for i in index])  # fmt: skip


def cache_dir() -> Path:
    """Where cut lines are kept between runs: ``$XDG_CACHE_HOME/hwr_utils`` or
    ``~/.cache/hwr_utils``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hwr_utils"


def _cut_all(folder: Path, pages: list[str], height: int) -> dict[str, Any]:
    """Every shipped page's lines, cut: the kept ones' pixels, all flattened into one tensor
    (a cache of one tensor loads in a blink), with their widths, texts, pages and consent flags,
    and the count of lines set aside for each reason."""
    images, widths, texts, names, consent = [], [], [], [], []
    set_aside = dict.fromkeys((*REASONS, "no_ink"), 0)
    total = 0
    for name in pages:
        alto = parse_alto(folder / "alto" / f"{name}.xml")
        page = cv2.imread(str(folder / "pages" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        scale = page_scale(page, alto)
        for line in alto.lines:
            total += 1
            text = clean_text(line.text)
            reason = set_aside_reason(text, name)
            image = cut_line(page, line, scale, height) if reason is None else None
            if image is not None and not image.any():
                reason = "no_ink"
            if reason is not None:
                set_aside[reason] += 1
                continue
            images.append(image)
            widths.append(image.shape[1])
            texts.append(text)
            names.append(name)
            consent.append(is_consent(text))
    pixels = torch.cat([image.flatten() for image in images])
    return {"pixels": pixels, "widths": widths, "texts": texts, "pages": names,
            "consent": consent, "set_aside": set_aside, "lines": total}  # fmt: skip


def _cached_lines(folder: Path, pages: list[str], height: int, md5sums: str) -> dict[str, Any]:
    """:func:`_cut_all`, kept on disk keyed by the height, this module's source and the data's
    ``MD5SUMS``; written through a temporary file, so an interrupted run leaves no half file,
    and replacing the caches of other keys for the same height."""
    source = hashlib.md5(Path(__file__).read_bytes()).hexdigest()
    key = hashlib.md5(f"{height}\0{source}\0{md5sums}\0{','.join(pages)}".encode()).hexdigest()
    path = cache_dir() / f"copiste-{height}-{key[:16]}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a cache from an unreadable or foreign file: cut the lines again
            pass
    lines = _cut_all(folder, pages, height)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:  # no writable cache folder: the next process cuts the lines again
        return lines
    os.close(handle)
    try:
        torch.save(lines, temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    # Caches of an older version of this module or of the data are never read again.
    for stale in path.parent.glob(f"copiste-{height}-*.pt"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return lines


# Loaded lines per (data folder, height): checked and cut once per process.
_LOADED: dict[tuple[Path, int], tuple[dict[str, Any], str]] = {}


def load_copiste(
    data_dir: str | os.PathLike | None = None, height: int = LINE_HEIGHT
) -> tuple[dict[str, LineSplit], dict[str, Any]]:
    """The ``train``, ``val`` and ``test`` lines of the shipped splits, and their provenance.

    Every file is MD5-checked on each new process (:func:`verify`); the cut lines come from
    the cache when it is there (:func:`cache_dir`) and are kept in memory for later calls.
    Lines set aside (:func:`set_aside_reason`, or a polygon holding no ink) are counted in the
    provenance, not loaded. The alphabet is the training texts' symbols; symbols of val and
    test texts outside it are reported with their counts, not removed.
    """
    folder = dataset_dir(find_copiste(data_dir)).resolve()
    info = shipped()
    if (folder, height) not in _LOADED:
        md5sums = verify(folder)
        _LOADED[folder, height] = (_cached_lines(folder, info["pages"], height, md5sums), md5sums)
    lines, md5sums = _LOADED[folder, height]
    # One copy of all the pixels, then a view per line: a caller changing its images changes
    # nobody else's, and one big copy is far quicker than thousands of small ones.
    sizes = [height * width for width in lines["widths"]]
    images = [flat.view(height, -1) for flat in torch.split(lines["pixels"].clone(), sizes)]
    split_of = {w: split for split in ("train", "val", "test") for w in info[split]}
    members: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, page in enumerate(lines["pages"]):
        members[split_of[writer_of(page)]].append(i)
    splits = {}
    for split, index in members.items():
        splits[split] = LineSplit([images[i] for i in index],
                                  [lines["texts"][i] for i in index],
                                  [writer_of(lines["pages"][i]) for i in index],
                                  [lines["pages"][i] for i in index],
                                  [lines["consent"][i] for i in index])  # fmt: skip
    known = set("".join(splits["train"].texts))
    unseen = {}
    for split in ("val", "test"):
        counts = Counter("".join(splits[split].texts))
        unseen[split] = {c: n for c, n in sorted(counts.items()) if c not in known}
    provenance = {
        "found_in": str(folder),
        "md5sums": md5sums,
        "source": info["source"],
        "licence": "CC BY 4.0: BAnQ, Copiste d'un jour (2024)",
        "split_rule": info["rule"],
        "split_seed": info["seed"],
        "height": height,
        "lines": lines["lines"],
        "set_aside": dict(lines["set_aside"]),
        "sizes": {split: len(s) for split, s in splits.items()},
        "writers": {split: len(set(s.writers)) for split, s in splits.items()},
        "consent_lines": {split: sum(s.consent) for split, s in splits.items()},
        "alphabet": sorted(known),
        "unseen_symbols": unseen,
    }
    return splits, provenance
