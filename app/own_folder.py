"""The app's own folder for uploads, output images and downloads, inside Gradio's shared one.

Gradio keeps every app's uploads and outputs in one folder per host ($GRADIO_TEMP_DIR, else
<temp>/gradio), so a sweep of that folder would delete other programs' files. The app claims a
folder of its own inside it, points GRADIO_TEMP_DIR there for this process (Gradio reads it when
a component or the server is made), and sweeps, and at exit removes, that folder alone.

    folder = claim()             # <GRADIO_TEMP_DIR>/vittle-app-XXXX/, held for this process
    folder.sweep(3600)           # its files older than an hour, and its folders left empty
    folder.release()             # all of it (also at exit)

A claimed folder holds a marker file under an exclusive lock (flock) while its process lives, so
a later instance can tell a folder left by a killed one (no lock held: removed at its start) from
a running instance's (locked: left alone), whatever the process ids; folders without the marker
are never touched.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; an abandoned folder is then left for the user to delete
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

PREFIX = "vittle-app-"
MARKER = ".vittle-app-owner"
"""A file in each claimed folder, locked by its process while it runs."""

_claimed: OwnFolder | None = None
_lock = threading.Lock()


def shared_folder() -> Path:
    """Gradio's folder for every app's uploads and outputs on this host, as it was before a claim."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


class OwnFolder:
    """A folder inside Gradio's shared one that this process created and holds."""

    def __init__(self, path: Path, base: Path, marker: object | None, previous: str | None):
        self.path, self.base, self._marker = path, base, marker
        self.previous = previous
        """GRADIO_TEMP_DIR before the claim (None: unset), restored by `release`."""
        self.pid = os.getpid()

    def sweep(self, older_than_s: float) -> int:
        """Delete this folder's files older than `older_than_s` and the folders they leave
        empty (Gradio's own sweep deletes files only); returns how many files went."""
        if not self.path.is_dir():
            return 0
        cutoff, removed = time.time() - older_than_s, 0
        marker = self.path / MARKER
        for path in sorted(self.path.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # deepest first
            try:
                if path == marker:
                    continue
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
            except OSError:  # in use, or gone already (Gradio's sweep took it first)
                pass
        if removed:
            logger.info("removed %d upload and output files older than %.0f min from %s", removed, older_than_s / 60, self.path)
        return removed

    def release(self) -> None:
        """Remove the folder with everything in it (this process's only); idempotent."""
        global _claimed
        if os.getpid() != self.pid:  # a forked child does not own its parent's folder
            return
        shutil.rmtree(self.path, ignore_errors=True)
        if os.environ.get("GRADIO_TEMP_DIR") == str(self.path):
            if self.previous is None:
                os.environ.pop("GRADIO_TEMP_DIR", None)
            else:
                os.environ["GRADIO_TEMP_DIR"] = self.previous
        if self._marker is not None:
            self._marker.close()  # type: ignore[attr-defined]
            self._marker = None
        with _lock:
            if _claimed is self:
                _claimed = None


def remove_abandoned(base: Path) -> int:
    """Remove the folders under `base` that earlier instances of the app claimed and left (killed
    before their exit): those whose marker no process holds. Returns how many went."""
    if fcntl is None or not base.is_dir():
        return 0
    removed = 0
    for folder in base.glob(f"{PREFIX}*"):
        marker = folder / MARKER
        if not marker.is_file():
            continue
        try:
            with marker.open("a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # held: its instance is running
                    continue
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    if removed:
        logger.info("removed %d folders left by earlier instances of the app from %s", removed, base)
    return removed


def claim(base: str | Path | None = None) -> OwnFolder:
    """This process's own folder under `base` (default: Gradio's shared folder), made on the
    first call (removing folders abandoned by killed instances first) and the same after;
    GRADIO_TEMP_DIR then names it, so that Gradio writes this app's files there."""
    global _claimed
    with _lock:
        if _claimed is not None and _claimed.pid == os.getpid():
            return _claimed
        base = Path(base) if base is not None else _claimed.base if _claimed is not None else shared_folder()
        base.mkdir(parents=True, exist_ok=True)
        remove_abandoned(base)
        path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
        marker = (path / MARKER).open("w")
        if fcntl is not None:
            fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB)
        marker.write(f"{os.getpid()}\n")
        marker.flush()
        _claimed = OwnFolder(path, base, marker, os.environ.get("GRADIO_TEMP_DIR"))
        os.environ["GRADIO_TEMP_DIR"] = str(path)
        atexit.register(_claimed.release)
        logger.info("uploads and outputs go to %s", path)
        return _claimed
