"""Image files of a perturbed dataset: corrupt one file, or share an unchanged one.

Both write atomically, so an output image that exists is complete; that is what lets an
interrupted build resume by skipping the images already present.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vittle.files import atomic_file

logger = logging.getLogger(__name__)

JPEG_QUALITY = 95  # high, so compression adds little to the corruption being measured
_JPEG_MODES = {"L", "RGB", "CMYK"}


@dataclass(frozen=True)
class CorruptTask:
    """Corrupt `source` into `target` (picklable, for worker processes)."""

    source: Path
    target: Path
    name: str
    severity: int
    seed: int


def run_corrupt_task(task: CorruptTask) -> Path:
    """Worker entry point: read, corrupt, save atomically; returns the target."""
    from .visual import corrupt  # heavy

    with Image.open(task.source) as image:
        image.load()
        result = corrupt(image, task.name, task.severity, task.seed)
        save_image(result, task.target, image.format)
    return task.target


def save_image(image: Image.Image, target: Path, source_format: str | None = None) -> None:
    """Save in the format the target's extension names (else the source's)."""
    extension = target.suffix.lower()
    image_format = Image.registered_extensions().get(extension) or source_format or "PNG"
    options: dict[str, object] = {}
    if image_format == "JPEG":
        options["quality"] = JPEG_QUALITY
        if image.mode not in _JPEG_MODES:
            image = image.convert("RGB")
    with atomic_file(target) as handle:
        image.save(handle, format=image_format, **options)


def share_file(source: Path, target: Path) -> None:
    """Put an unchanged image at `target`: a hard link where the file system allows
    (no extra space; outputs are replaced, never edited in place), else a copy."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:
        return  # another worker or an earlier run put it there
    except OSError:
        with atomic_file(target) as handle, open(source, "rb") as original:
            shutil.copyfileobj(original, handle)
