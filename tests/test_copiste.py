"""COPISTE, real handwritten French lines: ALTO parsing, line images (from a page and from a
photo), the rules that set lines aside, the consent flag, the published writer splits and the
loaded dataset. Tests that need the data skip when it is nowhere to be found."""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hwr_utils import data
from hwr_utils.data import ChecksumError, DataNotFoundError
from hwr_utils.datasets import copiste
from hwr_utils.datasets.copiste import (
    LINE_HEIGHT,
    AltoLine,
    clean_text,
    cut_line,
    find_copiste,
    is_consent,
    load_copiste,
    page_scale,
    parse_alto,
    preprocess_line_photo,
    set_aside_reason,
    writer_of,
    writer_splits,
)

PAD = LINE_HEIGHT // 20  # the background rows above and below the ink of every line image


@pytest.fixture(scope="module")
def copiste_root() -> Path:
    try:
        return find_copiste(download=False)
    except DataNotFoundError as error:
        pytest.skip(f"COPISTE is not here: {error}")


@pytest.fixture(scope="module")
def folder(copiste_root) -> Path:
    return copiste.dataset_dir(copiste_root)


@pytest.fixture(scope="module")
def loaded(copiste_root):
    return load_copiste(copiste_root)


def _page(folder: Path, name: str) -> tuple[np.ndarray, copiste.AltoPage]:
    image = cv2.imread(str(folder / "pages" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    return image, parse_alto(folder / "alto" / f"{name}.xml")


def _bbox_crop(image: np.ndarray, line: AltoLine, scale: tuple[float, float]) -> np.ndarray:
    """The rectangle around a line's polygon, as someone cropping a photo by hand would take
    it: neighbours' bits and all, no mask."""
    points = np.array(line.polygon) * scale
    x0, y0 = np.floor(points.min(0)).astype(int)
    x1, y1 = np.ceil(points.max(0)).astype(int) + 1
    return image[max(y0, 0) : y1, max(x0, 0) : x1]


# --- Synthetic pages: exact answers ---------------------------------------------------------

# A line, and above it a neighbour whose descenders reach into the line's bounding box.
POLYGON = [(50, 125), (40, 80), (70, 125), (620, 118), (625, 195), (50, 195)]  # page pixels


def _synthetic_page(neighbour: bool = True, paper: int = 235, ink: int = 30, noise: float = 0):
    page = np.full((300, 700), paper, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(page, "Bonjour le monde", (60, 170), font, 1.6, ink, 3, cv2.LINE_AA)
    if neighbour:
        cv2.putText(page, "jugeait quoi", (150, 100), font, 1.6, ink, 3, cv2.LINE_AA)
    if noise:
        grain = np.random.default_rng(0).normal(0, noise, page.shape)
        page = np.clip(page + grain, 0, 255).astype(np.uint8)
    return page


# ALTO coordinates are those of a scan twice the page's size, as in the data.
LINE = AltoLine("l1", "Bonjour le monde", [(2.0 * x, 2.0 * y) for x, y in POLYGON], [], (0,) * 4)


def test_a_cut_line_is_bright_ink_on_zero_at_the_normalised_height():
    image = cut_line(_synthetic_page(), LINE, 0.5)
    assert image.dtype == torch.uint8 and image.shape[0] == LINE_HEIGHT
    assert image.max() == 255 and image.float().mean() < 90  # mostly background, 0
    assert (image[:PAD] == 0).all() and (image[-PAD:] == 0).all()
    # The aspect ratio of the ink is kept: its box, measured on the page without the neighbour.
    ys, xs = np.nonzero(_synthetic_page(neighbour=False)[118:196, 40:626] < 128)
    ink_height, ink_width = np.ptp(ys) + 1, np.ptp(xs) + 1
    expected = ink_width * (LINE_HEIGHT - 2 * PAD) / ink_height + 2 * PAD
    assert abs(image.shape[1] - expected) <= 2


def test_the_polygon_masks_out_the_neighbours():
    with_neighbour = cut_line(_synthetic_page(neighbour=True), LINE, 0.5)
    alone = cut_line(_synthetic_page(neighbour=False), LINE, 0.5)
    assert torch.equal(with_neighbour, alone)  # what lies outside the polygon does not count
    # The neighbour's descenders are in the polygon's bounding box: without the mask they show.
    everything = AltoLine("box", "", [(80, 160), (1252, 160), (1252, 390), (80, 390)], [], (0,) * 4)
    assert not torch.equal(cut_line(_synthetic_page(), everything, 0.5), alone)


def test_grey_grainy_paper_comes_out_as_background():
    clean = cut_line(_synthetic_page(), LINE, 0.5)
    grainy = cut_line(_synthetic_page(paper=200, ink=90, noise=8), LINE, 0.5)
    assert grainy.shape[0] == LINE_HEIGHT and grainy.max() == 255
    assert (grainy == 0).float().mean() >= 0.9 * (clean == 0).float().mean()


def test_a_photo_of_the_line_looks_like_its_cut_line():
    page = _synthetic_page()
    crop = page[80:196, 40:626]  # the polygon's bounding box, neighbour's descenders and all
    cut, photo = cut_line(page, LINE, 0.5), preprocess_line_photo(crop)
    assert photo.shape == cut.shape
    assert (photo.float() - cut.float()).abs().mean() < 2
    colour = np.repeat(crop[..., None], 3, axis=2)  # an RGB photo reads the same
    assert torch.equal(preprocess_line_photo(colour), photo)
    with pytest.raises(copiste.ImageError, match="no ink"):
        preprocess_line_photo(np.full((60, 400), 230, np.uint8))


# --- Texts, writers, consent ----------------------------------------------------------------


def test_writers_are_page_names_without_the_page_number():
    assert writer_of("wikitexte_0001_1") == writer_of("wikitexte_0001_2") == "wikitexte_0001"
    assert writer_of("imp_wikitexte_0172_double") == "imp_wikitexte_0172_double"
    assert writer_of("imp_wikitexte_0022") == "imp_wikitexte_0022"
    assert writer_of("oldbatch_wikitexte_0003") == "oldbatch_wikitexte_0003"  # 4 digits: a text
    assert writer_of(writer_of("wikitexte_0221_double_1")) == "wikitexte_0221_double"


def test_texts_are_nfc_with_single_spaces():
    assert clean_text("  Le\u00a0 lac  e\u0301te\u0301\t") == "Le lac été"
    assert len(clean_text("e\u0301")) == 1


@pytest.mark.parametrize(
    "text, page, reason",
    [
        ("imp_wikitexte_0022", "imp_wikitexte_0022", "id_lines"),
        ("Nom de référence : imp_wikitexte_0172", "imp_wikitexte_0172", "id_lines"),
        ("Wiki texte_0018", "wikitexte_0018_1", "id_lines"),
        ("ref. 0149", "imp_wikitexte_0149", "id_lines"),
        ("#0001", "oldbatch_wikitexte_0001", "id_lines"),
        ("imp_wikitexte_><", "imp_wikitexte_0094", "id_lines"),  # an id first
        ("1963", "imp_wikitexte_0149", None),  # a year, not the page's number
        ("2", "wikitexte_0172_2", None),  # a page number the writer wrote: handwriting all right
        ("bracelet. Le tournoi principal est>< le", "imp_wikitexte_0058", "unreadable"),
        ("en 1921 sur les terres du com<>te Sergueï", "imp_wikitexte_0184", "unreadable"),
        ("Elly >Jackon< Jackson participera à trois", "imp_wikitexte_0087", "crossed_out"),
        ("discrète de paramètre s>1{-display s>1}.", "wikitexte_0044_1", None),  # copied maths
        ("", "wikitexte_0005", "empty"),
        (">", "imp_wikitexte_0264", "empty"),
        ("La Fédération du Laos de football est une association", "imp_wikitexte_0022", None),
    ],
)
def test_lines_set_aside(text, page, reason):
    assert set_aside_reason(text, page) == reason


def test_consent_lines_are_the_participation_terms_copied():
    for line in ("J'ai lu les conditions de participation et j'y consens.",
                 "commerciales.", "des fins non-commerciales.",
                 "consent. Je comprends que mon manuscrit sera",  # a slip: consent, not consens
                 "RECHERCHE ET DÉVELOPPEMENT, ET QU'IL POURRA"):  # fmt: skip
        assert is_consent(line), line
    for line in ("Le township est baptisé en référence à la communauté de",
                 "sécurité financière. Elle détient une participation",
                 "et dirigeant de banque français.", "des"):  # fmt: skip
        assert not is_consent(line), line


def test_splits_are_by_writer_and_reproducible():
    pages = ["a_1", "a_2", "x_double_1", "x", *(f"w{i:02d}" for i in range(38))]
    splits = writer_splits(pages, seed=3)
    assert splits == writer_splits(reversed(pages), seed=3)  # the order given does not matter
    assert splits != writer_splits(pages, seed=4)
    members = [w for split in splits.values() for w in split]
    assert sorted(members) == sorted({writer_of(p) for p in pages})  # each in exactly one
    assert len(splits["test"]) in (4, 5) and len(splits["val"]) in (4, 5)  # 10% of 40 groups
    assert [s for s in splits if "x" in splits[s]] == [s for s in splits if "x_double" in splits[s]]


def test_missing_data_names_the_places_searched(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError) as info:
        find_copiste(tmp_path / "given")
    assert str(tmp_path / "given" / "COPISTE") in str(info.value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HWR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "default_root", lambda: tmp_path / "repo" / "data")

    def offline(root):
        raise OSError("network unreachable")

    monkeypatch.setattr(copiste, "_download", offline)
    with pytest.raises(DataNotFoundError) as info:
        find_copiste()
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "COPISTE") in message
    assert str(tmp_path / "repo" / "data" / "COPISTE") in message
    assert "network unreachable" in message and "HWR_DATA" in message


def test_another_alto_namespace_parses(tmp_path):
    (tmp_path / "p.xml").write_text(
        '<alto xmlns="http://www.loc.gov/standards/alto/ns-v3#"><Layout>'
        '<Page WIDTH="100" HEIGHT="200"><PrintSpace><TextBlock>'
        '<TextLine ID="a" BASELINE="1 9 50 9" HPOS="1" VPOS="2" WIDTH="49" HEIGHT="9">'
        '<Shape><Polygon POINTS="1 2 50 2 50 11 1 11"/></Shape>'
        '<String CONTENT="Le"/><SP/><String CONTENT="lac"/></TextLine>'
        "</TextBlock></PrintSpace></Page></Layout></alto>"
    )
    page = parse_alto(tmp_path / "p.xml")
    assert (page.name, page.width, page.height) == ("p", 100, 200)
    (line,) = page.lines
    assert line.text == "Le lac" and line.polygon[1] == (50.0, 2.0)
    assert line.baseline == [(1.0, 9.0), (50.0, 9.0)] and line.bbox == (1.0, 2.0, 49.0, 9.0)


# --- The real data --------------------------------------------------------------------------


def test_a_real_page_parses_whole_and_scales(folder):
    image, page = _page(folder, "imp_wikitexte_0022")
    source = (folder / "alto" / "imp_wikitexte_0022.xml").read_text(encoding="utf-8")
    assert len(page.lines) == source.count("<TextLine") > 10
    assert (page.width, page.height) == (2550, 3300) and page_scale(image, page) == (0.5, 0.5)
    assert page.lines[0].text == "imp_wikitexte_0022"
    for line in page.lines:
        points = np.array(line.polygon + line.baseline)
        assert (points >= 0).all() and (points <= (page.width, page.height)).all()
    # A scan of another size was halved too, and the scaled polygons cover the ink.
    image, page = _page(folder, "wikitexte_0219_1")
    sx, sy = page_scale(image, page)
    assert (page.width, page.height) != (2550, 3300) and (sx, sy) == (0.5, 0.5)
    mask = np.zeros(image.shape, np.uint8)
    for line in page.lines:
        cv2.fillPoly(mask, [np.rint(np.array(line.polygon) * (sx, sy)).astype(np.int32)], 1)
    ink = image < 128
    assert ink[mask == 1].mean() > 5 * ink[mask == 0].mean()


def test_real_lines_are_bright_ink_on_dark_and_scale_free(folder):
    image, page = _page(folder, "imp_wikitexte_0087")
    double = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    for line in page.lines[1:]:
        cut = cut_line(image, line, page_scale(image, page))
        assert cut.dtype == torch.uint8 and cut.shape[0] == LINE_HEIGHT
        assert cut.float().mean() < 60 and cut.max() >= 200, line.text
        bigger = cut_line(double, line, page_scale(double, page))
        assert abs(bigger.shape[1] - cut.shape[1]) <= 0.05 * cut.shape[1], line.text


@pytest.mark.parametrize("name", ["imp_wikitexte_0087", "wikitexte_0182"])
def test_photos_of_real_lines_look_like_their_cut_lines(folder, name):
    # A crop of the polygon's box is the same line with its neighbours' bits unmasked; where
    # a polygon clipped a stroke of the line itself the two can differ by a few columns.
    image, page = _page(folder, name)
    scale = page_scale(image, page)
    cuts, photos = [], []
    for line in page.lines:
        if set_aside_reason(clean_text(line.text), name) is None:
            cuts.append(cut_line(image, line, scale).numpy().astype(np.float32))
            photo = preprocess_line_photo(_bbox_crop(image, line, scale))
            photos.append(photo.numpy().astype(np.float32))
    widths = [abs(c.shape[1] - p.shape[1]) / c.shape[1] for c, p in zip(cuts, photos, strict=True)]
    assert np.median(widths) < 0.05
    # Each photo is nearer its own cut line than any other line of the page is.
    distance = np.array([[np.abs(c - cv2.resize(p, c.shape[::-1], interpolation=cv2.INTER_AREA))
                          .mean() for p in photos] for c in cuts])  # fmt: skip
    assert (distance.argmin(1) == np.arange(len(cuts))).mean() >= 0.8


def test_the_shipped_splits_are_the_rule_on_the_shipped_pages(folder):
    shipped = copiste.shipped()
    assert shipped["rule"] == copiste.SPLIT_RULE
    assert {k: shipped[k] for k in ("train", "val", "test")} == writer_splits(
        shipped["pages"], seed=shipped["seed"]
    )
    # The pages are exactly those of the data's MD5SUMS, and their original checksums and
    # commit those of ORIGINAL_MD5SUMS: the download can fetch nothing else.
    sums = (folder / "MD5SUMS").read_text().split()
    assert sorted(Path(p).stem for p in sums[1::2] if p.startswith("pages/")) == shipped["pages"]
    rows = (folder / "ORIGINAL_MD5SUMS").read_text().splitlines()
    assert shipped["source"]["commit"] == rows[0].split()[-1]
    assert dict(reversed(row.split()) for row in rows[1:] if row) == shipped["original_md5"]


def test_verification_names_a_changed_file(folder, tmp_path):
    copy = tmp_path / "COPISTE"
    for sub in ("pages", "alto"):
        (copy / sub).mkdir(parents=True)
        for file in (folder / sub).iterdir():
            os.symlink(file, copy / sub / file.name)
    (copy / "MD5SUMS").write_text((folder / "MD5SUMS").read_text())
    assert copiste.verify(copy) == data.md5sum(folder / "MD5SUMS")
    alto = copy / "alto" / "wikitexte_0041.xml"
    changed = alto.read_text(encoding="utf-8").replace('CONTENT="', 'CONTENT="x', 1)
    alto.unlink()
    alto.write_text(changed, encoding="utf-8")
    with pytest.raises(ChecksumError, match="wikitexte_0041.xml"):
        copiste.verify(copy)
    # A local MD5SUMS made to agree does not pass either: the original labels are checked too.
    sums = (copy / "MD5SUMS").read_text()
    old = re.search(r"(\w+)  alto/wikitexte_0041\.xml", sums).group(1)
    (copy / "MD5SUMS").write_text(sums.replace(old, data.md5sum(alto)))
    with pytest.raises(ChecksumError, match="wikitexte_0041.xml"):
        copiste.verify(copy)


def test_every_line_is_kept_or_counted_as_set_aside(folder, loaded):
    splits, provenance = loaded
    pages = copiste.shipped()["pages"]
    text_lines = sum(
        (folder / "alto" / f"{name}.xml").read_text(encoding="utf-8").count("<TextLine")
        for name in pages
    )
    kept = sum(len(s) for s in splits.values())
    assert provenance["lines"] == text_lines == kept + sum(provenance["set_aside"].values())
    assert provenance["sizes"] == {name: len(s) for name, s in splits.items()}
    assert provenance["set_aside"]["id_lines"] >= len(pages) / 2  # a printed box on most pages
    assert all(provenance["set_aside"][k] > 0 for k in ("unreadable", "crossed_out"))
    for split in splits.values():
        assert all("wikitexte" not in t.lower() and "><" not in t for t in split.texts)
        assert all(t == clean_text(t) and t for t in split.texts)


def test_loaded_splits_follow_the_shipped_writers(loaded):
    splits, provenance = loaded
    shipped = copiste.shipped()
    for name, split in splits.items():
        assert len(split.images) == len(split.texts) == len(split.writers) == len(split.pages)
        assert set(split.writers) <= set(shipped[name])
        assert split.writers == [writer_of(p) for p in split.pages]
        assert all(i.dtype == torch.uint8 and i.shape[0] == LINE_HEIGHT for i in split.images)
    assert set(splits["train"].writers).isdisjoint(splits["val"].writers + splits["test"].writers)
    assert set(splits["val"].writers).isdisjoint(splits["test"].writers)
    assert provenance["writers"] == {n: len(set(s.writers)) for n, s in splits.items()}
    part = splits["val"].subset([3, 1])
    assert part.texts == [splits["val"].texts[3], splits["val"].texts[1]]
    assert torch.equal(part.images[1], splits["val"].images[1]) and len(part) == 2


def test_the_alphabet_is_the_training_texts_and_unseen_symbols_are_counted(loaded):
    splits, provenance = loaded
    alphabet = provenance["alphabet"]
    assert alphabet == sorted(set("".join(splits["train"].texts)))
    for name in ("val", "test"):
        text = "".join(splits[name].texts)
        outside = {c: text.count(c) for c in sorted(set(text) - set(alphabet))}
        assert provenance["unseen_symbols"][name] == outside


def test_consent_flags_some_lines_but_not_most(loaded):
    splits, provenance = loaded
    flagged = [t for s in splits.values() for t, c in zip(s.texts, s.consent, strict=True) if c]
    lines = sum(len(s) for s in splits.values())
    assert 0.02 * lines < len(flagged) < 0.25 * lines
    assert sum(provenance["consent_lines"].values()) == len(flagged)
    assert "J'ai lu les conditions de participation et j'y consens." in flagged
    writers = {w for s in splits.values() for w, c in zip(s.writers, s.consent, strict=True) if c}
    assert len(writers) > 20  # many writers copied the terms, each a few lines


def test_loads_are_remembered_and_copied_out(copiste_root, loaded, monkeypatch):
    splits, _ = loaded
    monkeypatch.setattr(copiste, "verify", lambda folder: pytest.fail("checked twice"))
    again, _ = load_copiste(copiste_root)
    assert torch.equal(again["test"].images[0], splits["test"].images[0])
    again["test"].images[0][:] = 7  # a caller changing its copy changes nobody else's
    assert not torch.equal(load_copiste(copiste_root)[0]["test"].images[0], again["test"].images[0])
    assert list(copiste.cache_dir().glob(f"copiste-{LINE_HEIGHT}-*.pt"))
