"""Several processes sharing the lab's plan: claim files, and the worker pool.

A run is claimed by holding an exclusive lock (`flock`) on `.claim` in its folder for as long
as the run lasts. The kernel grants the lock to one process at a time and drops it when that
process ends, however it ends, so a killed lab resumes without reading process ids (the file
holds the holder's pid for people only). A lock holder that releases unlinks the file while
still holding it; a process that locked the same file a moment earlier sees that the path no
longer names its file and tries again, so two processes never hold one run.
On a 2-core CPU two one-thread workers train the small models about 1.5x faster than one
two-thread process (their matrices are too small to keep two threads busy).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

from vittle.analysis.lab.plan import LabConfig

try:
    import fcntl
except ImportError:  # Windows: no flock; one worker only (run_workers refuses more there)
    fcntl = None  # type: ignore[assignment]

CLAIM_FILE = ".claim"


class Claim:
    """This process's hold on one run folder; `release()` (or leaving a `with`) gives it up."""

    def __init__(self, folder: Path, fd: int):
        self.folder, self._fd = folder, fd

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            (self.folder / CLAIM_FILE).unlink(missing_ok=True)  # while still locked: see the module's docstring
        finally:
            os.close(self._fd)  # closing drops the lock
            self._fd = -1

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)


def claim(folder: Path) -> Claim | None:
    """Take `folder`'s run for this process; None if another live process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLAIM_FILE
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder released (and unlinked) between our open and our lock: try again
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return Claim(folder, fd)


def alive_claim(folder: Path) -> bool:
    """True if a running process holds `folder`'s run."""
    try:
        fd = os.open(folder / CLAIM_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        if fcntl is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)  # drops the shared lock, if we took it


def _worker(work: Callable[[LabConfig], None], config: LabConfig, threads: int) -> None:
    import torch  # heavy

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s worker {os.getpid()} %(name)s: %(message)s")
    work(config)


def run_workers(config: LabConfig, work: Callable[[LabConfig], None]) -> None:
    """`config.workers` processes share the plan (each runs `work(config)`, a module-level
    function: the processes are spawned), each with its share of the CPU threads
    (small models train faster as two one-thread processes than as one two-thread one)."""
    if fcntl is None:
        raise RuntimeError(f"--workers {config.workers} needs file locks (fcntl), which this platform lacks: use --workers 1")
    threads = max(1, (os.cpu_count() or 1) // config.workers)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(work, config, threads), name=f"vittle-lab-{i}") for i in range(config.workers)]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    failed = [p.name for p in workers if p.exitcode]
    if failed:
        raise RuntimeError(f"lab worker(s) {', '.join(failed)} failed; their error is in the log above (rerun to resume)")
