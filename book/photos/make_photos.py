"""Make the photo-like images of handwritten digits that the book ships in this folder.

    python book/photos/make_photos.py        (needs MNIST: see README, "The data, offline")

Each image is an MNIST *test* digit (never seen in training) drawn by
:func:`hwr_utils.teaching.synthetic.make_photo` as a photo would show it. The file name starts
with the true label, so the book can check its predictions.
"""

from pathlib import Path

from PIL import Image

from hwr_utils.data import load_mnist
from hwr_utils.teaching.synthetic import make_photo

HERE = Path(__file__).resolve().parent

# name: (label, options for make_photo, file format)
PHOTOS = {
    "7_pen_on_paper.jpg": (7, {"thin": 0.4, "size": (900, 1200), "digit_height": 500}),
    "2_marker.jpg": (2, {"size": (480, 640), "digit_height": 300, "angle": -6}),
    "1_chalk_on_board.jpg": (1, {"dark_ink": False, "size": (600, 800), "digit_height": 380}),
    "4_tablet_drawing.png": (4, {"alpha": True, "size": (400, 400), "digit_height": 300}),
    "0_off_centre.jpg": (0, {"offset": (0.2, -0.25), "digit_height": 180, "size": (720, 960)}),
    "9_tilted.jpg": (9, {"angle": 12, "size": (600, 600), "digit_height": 360}),
    "3_large_photo.jpg": (3, {"thin": 0.5, "size": (2400, 3200), "digit_height": 1400, "noise": 2}),
    "5_gray_scan.png": (5, {"color": False, "noise": 3, "size": (300, 300), "digit_height": 220}),
}


def main() -> None:
    _, test = load_mnist()
    for seed, (name, (label, options)) in enumerate(PHOTOS.items()):
        index = int((test.labels == label).nonzero()[0])  # the first test image of that digit
        photo = make_photo(test.images[index].numpy(), seed=seed, **options)
        extra = {"quality": 88} if name.endswith(".jpg") else {}
        Image.fromarray(photo).save(HERE / name, **extra)
        print(f"{name}: MNIST test image {index}, {photo.shape}")


if __name__ == "__main__":
    main()
