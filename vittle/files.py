"""Atomic file writes, the project's one writer: a reader (another process, a resumed run)
sees the whole file or none.

Each write goes to a hidden temp file beside the target, unique to the call (`mkstemp`), and
`os.replace` moves it into place, which is atomic on one file system. A process killed
mid-write leaves only a temp file, which `remove_stale_temps` clears.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import numpy as np

TEMP_MARK = ".vtmp-"
# mkstemp creates files readable by the owner only; finished files get the usual
# permissions instead. Reading the umask means setting it, so do it once, at import.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def default_cache_dir() -> Path:
    """The embeddings' cache folder: `$VITTLE_CACHE_DIR` if set, else `~/.cache/vittle/representations`."""
    folder = os.environ.get("VITTLE_CACHE_DIR")
    return Path(folder).expanduser() if folder else Path.home() / ".cache" / "vittle" / "representations"


@contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary handle on a temp file beside `target`; on success it replaces `target`, on
    an error it is removed and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.chmod(temp, 0o666 & ~_UMASK)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_file(target) as handle:
        handle.write(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


def copy_atomic(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy `source` to `target` so that `target`, once it exists, is whole."""
    with open(source, "rb") as src, atomic_file(target) as handle:
        shutil.copyfileobj(src, handle)


def save_npy_atomic(target: str | os.PathLike[str], array: np.ndarray) -> None:
    """`np.save` without pickle, atomically (`target` should end in .npy)."""
    import numpy as np  # heavy: here: `import vittle.analysis.perturb` stays light

    with atomic_file(target) as handle:
        np.save(handle, array, allow_pickle=False)


def remove_stale_temps(folder: str | os.PathLike[str]) -> int:
    """Delete temp files left under `folder` by killed runs; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.rglob(f"*{TEMP_MARK}*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
