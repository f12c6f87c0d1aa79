"""Several processes sharing the lab's plan: claim files, and the worker pool.

A run is claimed by creating `.claim` in its folder with the process id (O_EXCL, so two
processes cannot both create it); a claim whose process is gone is taken over, so a killed
lab resumes. On a 2-core CPU two one-thread workers train the small models about 1.5x faster
than one two-thread process (their matrices are too small to keep two threads busy).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from analysis.lab.plan import LabConfig


def claim(folder: Path) -> bool:
    """Take `folder`'s run for this process; False if a live process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".claim"
    for _ in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if alive_claim(folder):
                return False
            path.unlink(missing_ok=True)  # its process is gone: take over
            continue
        with os.fdopen(handle, "w") as file:
            file.write(str(os.getpid()))
        return True
    return False


def alive_claim(folder: Path) -> bool:
    """True if `folder`'s run is claimed by a process that is still running."""
    try:
        pid = int((folder / ".claim").read_text() or 0)
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release(folder: Path) -> None:
    (folder / ".claim").unlink(missing_ok=True)


def _worker(work: Callable[[LabConfig], None], config: LabConfig, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s worker {os.getpid()} %(name)s: %(message)s")
    work(config)


def run_workers(config: LabConfig, work: Callable[[LabConfig], None]) -> None:
    """`config.workers` processes share the plan (each runs `work(config)`, a module-level
    function: the processes are spawned), each with its share of the CPU threads
    (small models train faster as two one-thread processes than as one two-thread one)."""
    import multiprocessing

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
