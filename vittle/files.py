"""Atomic file writes: a reader (another process, a resumed run) sees the whole file or none.

Each write goes to a temporary name unique to the process and thread, then `os.replace`
moves it into place, which is atomic on one file system.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np


def _partial(target: Path, suffix: str) -> Path:
    return target.with_name(f"{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp{suffix}")


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    target = Path(target)
    partial = _partial(target, target.suffix)
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def save_npy_atomic(target: str | os.PathLike, array: np.ndarray) -> None:
    """`np.save` without pickle, atomically (`target` should end in .npy)."""
    target = Path(target)
    partial = _partial(target, ".npy")
    try:
        np.save(partial, array, allow_pickle=False)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
