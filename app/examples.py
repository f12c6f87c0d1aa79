"""The examples gallery: easy-vqa test images and real photos that ship with scikit-image.

The files are written once into a folder of the app's own (`examples_dir()`), which is the
only folder besides uploads that the server may serve.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import easy_vqa
from PIL import Image

from vittle.files import atomic_file

EASYVQA = (  # (test image index, question)
    (0, "what color is the shape?"),
    (1, "what shape is this?"),
    (2, "is there a blue shape?"),
    (3, "is there not a circle?"),
    (5, "what is the color of the shape?"),
)
PHOTOS = (  # scikit-image data (public domain / CC0), shrunk to 256 px
    ("astronaut", "what color is the shape?"),
    ("coffee", "what shape is in the image?"),
    ("chelsea", "is there a green shape?"),
)
PHOTO_SIDE = 256


def examples_dir() -> Path:
    """Where the example images live: $VITTLE_APP_EXAMPLES or a folder in the temp dir."""
    return Path(os.environ.get("VITTLE_APP_EXAMPLES") or Path(tempfile.gettempdir()) / "vittle-app-examples")


def example_rows(folder: Path | None = None) -> list[list[str]]:
    """[[image path, question], ...] for `gr.Examples`, writing missing files first."""
    folder = folder or examples_dir()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    paths = easy_vqa.get_test_image_paths()
    for index, question in EASYVQA:
        target = folder / f"easyvqa-test-{index}.png"
        if not target.exists():
            with Image.open(paths[index]) as image:
                _save(image.convert("RGB"), target)
        rows.append([str(target), question])
    from skimage import data  # heavy

    for name, question in PHOTOS:
        target = folder / f"{name}.jpg"
        if not target.exists():
            image = Image.fromarray(getattr(data, name)()).convert("RGB")
            image.thumbnail((PHOTO_SIDE, PHOTO_SIDE))
            _save(image, target)
        rows.append([str(target), question])
    return rows


def _save(image, target: Path) -> None:
    with atomic_file(target) as handle:
        image.save(handle, format="PNG" if target.suffix == ".png" else "JPEG", quality=90)
