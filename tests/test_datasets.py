"""Datasets from the data: specs, folder datasets (classes and texts), their splits and every
kind of bad input, each a one-line error naming what is wrong."""

from __future__ import annotations

import warnings

import pytest
import torch
from PIL import Image

from hwr_utils.datasets import MNIST_VAL_SIZE, evaluation_split, load_dataset, parse_spec
from hwr_utils.datasets.folders import FolderDataError, write_class_folder
from hwr_utils.errors import ConfigError
from hwr_utils.preprocess import load_image, preprocess_number_photo, preprocess_photo

FRENCH = ["zéro", "un", "deux"]  # non-ASCII class names, in the order of digits 0, 1, 2


@pytest.fixture(scope="module")
def digits(mnist):
    """Twelve MNIST test digits of each of 0, 1, 2."""
    _, test = mnist
    index = torch.cat([torch.nonzero(test.labels == d).flatten()[:12] for d in range(3)])
    return test.images[index], test.labels[index]


@pytest.fixture
def class_folder(tmp_path, digits):
    return write_class_folder(*digits, FRENCH, tmp_path / "mine")


def test_specs_name_what_they_accept():
    assert parse_spec("mnist") == ("mnist", None)
    assert parse_spec("folder:/a/b") == ("folder", "/a/b")
    for bad in ("iam", "folder:", "mnist:x", "Folder:/a", "copiste:x"):
        with pytest.raises(ConfigError, match="folder:PATH"):
            parse_spec(bad)


def test_mnist_keeps_the_books_splits(mnist):
    dataset = load_dataset("mnist", seed=3)
    assert dataset.task == "classification" and dataset.class_names == list("0123456789")
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (55000, MNIST_VAL_SIZE,
                                                                          10000)  # fmt: skip
    assert torch.equal(dataset.test.images, mnist[1].images)
    assert dataset.provenance["md5"]["t10k-images-idx3-ubyte"].startswith("2646ac")
    with pytest.raises(ConfigError, match="--val-size 70000 leaves no training data"):
        load_dataset("mnist", val_size=70000)


def test_a_class_folder_is_read_as_predict_reads_a_file(class_folder, digits):
    dataset = load_dataset(f"folder:{class_folder}", seed=0)
    assert dataset.task == "classification"
    assert dataset.class_names == sorted(FRENCH)  # the folders' names, sorted: deux, un, zéro
    images = torch.cat([dataset.train.images, dataset.val.images])
    assert images.shape[1:] == (28, 28) and len(images) == 36
    assert len(dataset.val) == 4 and set(dataset.val.labels.tolist()) == {0, 1, 2}  # by class
    assert dataset.test is None
    first = sorted((class_folder / "deux").iterdir())[0]
    expected = torch.from_numpy(preprocess_photo(load_image(first)))
    assert any(torch.equal(expected, image) for image in images)
    again = load_dataset(f"folder:{class_folder}", seed=0)
    assert again.provenance["md5"] == dataset.provenance["md5"]
    assert torch.equal(again.val.images, dataset.val.images)  # the split is seeded
    (class_folder / "un" / "00012.png").write_bytes(
        (class_folder / "un" / "00013.png").read_bytes()
    )
    changed = load_dataset(f"folder:{class_folder}", seed=0)
    assert changed.provenance["md5"] != dataset.provenance["md5"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "un" / "00012.png").write_bytes(b""), r"00012\.png is empty"),
        (lambda root: (root / "un" / "00013.png").write_text("no picture"),
         r"00013\.png is not an image"),
        (lambda root: Image.new("L", (64, 64), 255).save(root / "deux" / "blank.png"),
         r"blank\.png: no ink found"),
        (lambda root: (root / "trois").mkdir(), r"class folder\(s\) with no image: trois"),
    ],
    ids=["empty", "not-an-image", "blank", "empty-class"],
)  # fmt: skip
def test_a_bad_file_is_named_in_one_line(class_folder, damage, message):
    damage(class_folder)
    with pytest.raises(FolderDataError, match=message) as caught:
        load_dataset(f"folder:{class_folder}")
    assert "\n" not in str(caught.value)


def test_other_files_are_counted_and_named_not_dropped_in_silence(class_folder):
    (class_folder / "un" / "notes.txt").write_text("written on 3 May")
    with pytest.warns(UserWarning, match=r"skipped 1 files .*notes\.txt"):
        dataset = load_dataset(f"folder:{class_folder}")
    assert [p.endswith("notes.txt") for p in dataset.provenance["skipped"]] == [True]


def test_folders_that_are_not_datasets(tmp_path, class_folder):
    with pytest.raises(FolderDataError, match="is not a folder"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "flat").mkdir()
    with pytest.raises(FolderDataError, match="neither class folders .* nor a labels.csv"):
        load_dataset(f"folder:{tmp_path / 'flat'}")
    for name in ("un", "deux"):
        for file in (class_folder / name).iterdir():
            file.unlink()
        (class_folder / name).rmdir()
    with pytest.raises(FolderDataError, match="1 class folder; at least 2"):
        load_dataset(f"folder:{class_folder}")


def test_train_val_test_subfolders_are_the_splits(tmp_path, digits):
    images, labels = digits
    for part, rows in (("train", slice(0, 30)), ("val", slice(30, 33)), ("test", slice(33, 36))):
        write_class_folder(images[rows], labels[rows], FRENCH, tmp_path / "d" / part)
    # Each part holds only the classes its rows have: val and test hold "deux" alone.
    dataset = load_dataset(f"folder:{tmp_path / 'd'}")
    assert [len(s) for s in (dataset.train, dataset.val, dataset.test)] == [30, 3, 3]
    assert set(dataset.test.labels.tolist()) == {0}  # "deux", first of the sorted names
    (tmp_path / "d" / "test" / "quatre").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "d" / "test" / "quatre" / "x.png")
    with pytest.raises(FolderDataError, match="class folders the training data does not: quatre"):
        load_dataset(f"folder:{tmp_path / 'd'}")


def test_a_labels_csv_folder_holds_texts(tmp_path, mnist, write_text_folder):
    root = write_text_folder(tmp_path / "numbers", mnist, ["12", "305", "7", "2026"] * 3)
    dataset = load_dataset(f"folder:{root}", val_size=2)
    assert dataset.task == "ctc" and dataset.class_names == list("0123567")
    assert len(dataset.train) == 10 and len(dataset.val) == 2
    strip = preprocess_number_photo(load_image(root / "n3.png"))
    images = torch.cat([dataset.train.images, dataset.val.images])
    assert any(torch.equal(torch.from_numpy(strip), image[:, : strip.shape[1]]) for image in images)
    texts = {"".join(dataset.class_names[i] for i in row if i >= 0)
             for row in torch.cat([dataset.train.labels, dataset.val.labels]).tolist()}  # fmt: skip
    assert texts == {"12", "305", "7", "2026"}


def test_bad_rows_and_unknown_symbols_are_named(tmp_path, mnist, write_text_folder):
    bad_rows = [{"file": "gone.png", "text": "5"}, {"file": "n0.png", "text": ""}]
    root = write_text_folder(tmp_path / "n", mnist, ["12", "34"], bad_rows)
    with pytest.raises(FolderDataError, match=r"line 4: no file gone\.png; line 5: n0\.png has no"):
        load_dataset(f"folder:{root}")
    root = write_text_folder(tmp_path / "m", mnist, ["12", "34"])
    with pytest.raises(FolderDataError, match=r"outside the alphabet \(0123\): n1\.png \(4\)"):
        load_dataset(f"folder:{root}", alphabet=list("0123"))


def test_evaluation_maps_folder_classes_to_the_models(class_folder):
    names = ["zéro", "un", "deux"]  # the model's own order differs from the folder's sorted one
    split, which = evaluation_split(f"folder:{class_folder}", None, names, "classification")
    assert which == "all" and len(split) == 36
    dataset = load_dataset(f"folder:{class_folder}", val_size=0)
    expected = [names.index(dataset.class_names[i]) for i in dataset.train.labels.tolist()]
    assert split.labels.tolist() == expected
    with pytest.raises(ConfigError, match="classes the model does not know: deux"):
        evaluation_split(f"folder:{class_folder}", None, ["zéro", "un"], "classification")


def test_no_warning_for_a_clean_folder(class_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(f"folder:{class_folder}")
