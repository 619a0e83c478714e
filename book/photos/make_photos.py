"""Make (again) the photo-like images of handwritten digits that the book ships in this folder.

    python book/photos/make_photos.py        (needs MNIST: see README, "The data, offline")

What each photo is and how it is drawn: :func:`hwr_utils.teaching.synthetic.book_photos`,
which the chapters also call, so a chapter opened without this folder makes the photos itself.
"""

from pathlib import Path

from PIL import Image

from hwr_utils.teaching.synthetic import book_photos

if __name__ == "__main__":
    for path in book_photos(Path(__file__).resolve().parent, overwrite=True):
        print(f"{path.name}: {Image.open(path).size}")
