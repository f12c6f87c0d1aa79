"""Write files so that readers (and interrupted runs) never see half of one.

Each write goes to a hidden temp file in the target's folder and is renamed over the
target with `os.replace`, which is atomic on POSIX and Windows. A process killed mid-write
leaves only a temp file, which `remove_stale_temps` clears on the next run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_MARK = ".vtmp-"
# mkstemp creates files readable by the owner only; finished files get the usual
# permissions instead. Reading the umask means setting it, so do it once, at import.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """Open a temp file beside `target`; on success it replaces `target`."""
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


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_file(target) as handle:
        handle.write(data)


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def remove_stale_temps(folder: Path) -> int:
    """Delete temp files left under `folder` by killed runs; returns how many."""
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.rglob(f"*{TEMP_MARK}*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
