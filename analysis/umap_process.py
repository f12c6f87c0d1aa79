"""UMAP in a process of its own, compiled as soon as it starts.

umap-learn compiles its functions with numba the first time a process imports and fits it
(~10-20 s of one core; its own functions are not cached on disk). Paid in a server's process,
that holds the interpreter during users' requests (a first turn 1.3 s -> 4.2 s when the
compilation ran beside it); paid on first use, the first map takes ~20 s. Here a child
interpreter (`python -m vittle.analysis.umap_process`) imports umap and fits a tiny problem as
soon as it starts, at a lower CPU priority, while the server loads its models; the server's
fits and placements then go to it over a pipe, one at a time.

    maps = UmapProcess()                                 # starts and compiles in the background
    Projection().fit(arrays, method="umap", umap=maps)   # the fit runs in the child
    projection.transform(name, X)                        # so does placing new points

The child keeps each fitted map until its `RemoteMap` is garbage-collected in the server (at
most `MAPS_KEPT`, the least recently used dropped first). The messages are pickles exchanged
between the server and the child it started, never read from a file. A child that died is
started again on the next request (its maps are gone: placing a point on one raises
`MapLost`, and the caller fits again).
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict, deque
from typing import IO, Any

import numpy as np

from vittle.files import default_cache_dir

logger = logging.getLogger(__name__)

MAPS_KEPT = 64
"""Fitted maps the child keeps (the app keeps 32 maps; the rest is slack)."""
NICE = 19
"""The child's CPU priority below the server's: its compilation takes only the CPU the models'
work leaves (on a 2-core machine's first start, nice 5 delayed the first answers to ~4-6 s after
Run and nice 19 to ~3.7 s, with the first UMAP map ~2 s after asking either way)."""
_HEADER = struct.Struct("!Q")


def warm_umap(seed: int = 0) -> None:
    """Import umap and fit and transform a tiny random problem, paying numba's JIT (~10-20 s
    in a fresh process) before the first real map; safe to run in a background thread."""
    import umap  # heavy

    points = np.random.default_rng(seed).standard_normal((64, 8))
    reducer = umap.UMAP(n_components=2, n_neighbors=5, random_state=seed, n_jobs=1)
    reducer.fit(points)
    reducer.transform(points[:4])


class MapLost(RuntimeError):
    """A map the child no longer has (it was restarted, or the map was dropped)."""


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the UMAP process closed its pipe")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the UMAP process closed its pipe mid-message")
    return pickle.loads(data)  # noqa: S301 -- our own child's message over its pipe, not a file


class RemoteMap:
    """A UMAP fitted in the child: `transform` places new (already reduced) rows on it."""

    def __init__(self, owner: UmapProcess, key: int, generation: int):
        self._owner, self.key, self.generation = owner, key, generation
        weakref.finalize(self, owner._forget, key, generation)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._owner._request("transform", self.key, np.asarray(X, dtype=np.float64), generation=self.generation))


class UmapProcess:
    """The client of one child interpreter that fits and holds UMAP maps (see the module)."""

    def __init__(self, seed: int = 0, start: bool = True):
        self.seed = seed
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._generation = 0
        self._next_key = 0
        self._dropped: deque[tuple[int, int]] = deque()
        """(key, generation) of maps the server let go, sent to the child with the next request
        (a deque: finalizers append from any thread while a request takes them)."""
        self.warm_seconds: float | None = None
        """The child's import and compilation, measured in the child (None until its first reply)."""
        if start:
            with self._lock:
                self._start()

    # ---------------------------------------------------------------- the server's side
    def fit(self, X: np.ndarray, seed: int, n_neighbors: int) -> tuple[RemoteMap, np.ndarray]:
        """UMAP(n_components=2, n_neighbors, random_state=seed) fitted on X (n, d) in the child:
        the map's handle and the fitted (n, 2) coordinates."""
        with self._lock:
            key = self._next_key
            self._next_key += 1
        coordinates, generation = self._request("fit", key, (np.asarray(X, dtype=np.float64), seed, n_neighbors), with_generation=True)
        return RemoteMap(self, key, generation), np.asarray(coordinates, dtype=np.float64)

    def kept(self) -> list[int]:
        """The keys of the maps the child holds (after it has dropped those the server let go)."""
        return list(self._request("kept", -1, None))

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        """Stop the child (its maps go with it)."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # the child ends at the end of its input
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def _start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._generation += 1
        self._process = subprocess.Popen([sys.executable, "-m", "vittle.analysis.umap_process", str(self.seed)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def _forget(self, key: int, generation: int) -> None:
        self._dropped.append((key, generation))  # a finalizer may run in any thread, even one holding the lock

    def _request(self, op: str, key: int, payload: Any, generation: int | None = None, with_generation: bool = False) -> Any:
        with self._lock:
            if not self.alive:
                if self._process is not None:
                    logger.warning("the UMAP process exited (code %s); starting it again", self._process.returncode)
                self._start()
            if generation is not None and generation != self._generation:
                raise MapLost("this map was fitted by a UMAP process that has since been restarted; fit it again")
            process = self._process
            assert process is not None and process.stdin is not None and process.stdout is not None
            dropped = []
            while self._dropped:
                gone, generation_gone = self._dropped.popleft()
                if generation_gone == self._generation:
                    dropped.append(gone)
            try:
                _send(process.stdin, (op, key, payload, dropped))
                status, value, warm_seconds = _receive(process.stdout)
            except (EOFError, BrokenPipeError, OSError) as err:
                process.kill()
                raise RuntimeError(f"the UMAP process failed during a {op} ({err}); the next request starts it again") from err
            if warm_seconds is not None:
                self.warm_seconds = warm_seconds
            if status == "lost":
                raise MapLost(value)
            if status != "ok":
                raise RuntimeError(f"UMAP {op} failed in its process: {value}")
            return (value, self._generation) if with_generation else value


# -------------------------------------------------------------------- the child's side
def _serve(seed: int, incoming: IO[bytes], outgoing: IO[bytes]) -> None:
    started = time.perf_counter()
    warm_umap(seed)
    import umap  # heavy

    warm_seconds: float | None = round(time.perf_counter() - started, 2)
    maps: OrderedDict[int, Any] = OrderedDict()
    while True:
        try:
            op, key, payload, dropped = _receive(incoming)
        except EOFError:
            return
        for gone in dropped:
            maps.pop(gone, None)
        try:
            if op == "fit":
                X, fit_seed, n_neighbors = payload
                reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=fit_seed, n_jobs=1)
                value = np.asarray(reducer.fit_transform(X), dtype=np.float64)
                maps[key] = reducer
                while len(maps) > MAPS_KEPT:
                    maps.popitem(last=False)
                reply = ("ok", value)
            elif op == "transform":
                if key not in maps:
                    reply = ("lost", f"map {key} is no longer kept by the UMAP process (it keeps {MAPS_KEPT}); fit it again")
                else:
                    maps.move_to_end(key)
                    reply = ("ok", np.asarray(maps[key].transform(payload), dtype=np.float64))
            elif op == "kept":
                reply = ("ok", sorted(maps))
            else:
                reply = ("error", f"unknown request {op!r}")
        except Exception as err:  # reported to the server, which raises it there
            reply = ("error", f"{type(err).__name__}: {err}")
        _send(outgoing, (*reply, warm_seconds))
        warm_seconds = None


def cache_compiled_code() -> None:
    """Keep numba's compiled code on disk (`$NUMBA_CACHE_DIR`, default `numba/` in the
    embeddings' cache folder): umap-learn's functions are compiled without numba's `cache=True`,
    so each new process compiled them again (~15-25 s of a core); here they are cached, and a
    later start of the app warms its UMAP process in ~2 s. Must run before umap is imported (its
    decorators run then); only in this process, which exists to run UMAP.

    On a machine's first start (an empty cache: every new Space container) the compilation is
    also made smaller: pynndescent's functions that name their types are compiled when first
    called instead of when imported (`compile_options`). The app's maps (4 x 48 rows by default)
    are under 4,096 rows, which umap-learn fits and places with exact neighbours: those functions
    never run. Three of umap-learn's parallel loops are compiled as plain loops (`SERIAL`).
    Importing pynndescent took 13.8 s of a core and now takes ~1 s, the whole warm-up 27 -> ~13 s
    (2-core CPU), and the maps are the same to the last bit (umap-learn's own typed functions,
    whose types fix its random numbers, keep their signatures). A map of more rows runs
    pynndescent's functions compiled for the types they are called with."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(default_cache_dir() / "numba"))
    import numba  # heavy

    def caching(decorator: Any) -> Any:
        @functools.wraps(decorator)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            module = sys._getframe(1).f_globals.get("__name__", "")
            if args and callable(args[0]):  # numba.njit(function, ...)
                given, options = compile_options(args, kwargs, module, args[0].__name__)
                return decorator(*given, **options)

            def apply(function: Any) -> Any:  # numba.njit(signature or options)(function)
                given, options = compile_options(args, kwargs, module, getattr(function, "__name__", None))
                return decorator(*given, **options)(function)

            return apply

        return wrapper

    numba.njit, numba.jit = caching(numba.njit), caching(numba.jit)


LAZY_MODULES = ("pynndescent",)
"""Packages whose typed numba functions compile on first call in UMAP's process (see
`cache_compiled_code`)."""
SERIAL = {"umap.utils": ("fast_knn_indices", "submatrix"), "umap.umap_": ("compute_membership_strengths",)}
"""umap-learn's functions compiled here without `parallel=True`: the process fits with one
thread (`n_jobs=1`) and their rows are independent, so the maps are the same; compiling their
parallel loops was ~4 s of a core of the first warm-up. (`smooth_knn_dist` keeps it: its
reductions add up in another order without it, and the maps change.)"""


def compile_options(args: tuple, kwargs: dict[str, Any], module: str, name: str | None = None) -> tuple[tuple, dict[str, Any]]:
    """The arguments of a `numba.njit` / `numba.jit` call made in `module` for the function
    `name`, as UMAP's process passes them on: with `cache=True` (unless the caller chose);
    without the signature (the first argument when it is not the function) when `module` is in
    `LAZY_MODULES`; with `parallel=False` for the functions in `SERIAL`."""
    kwargs = {"cache": True, **kwargs}
    if args and not callable(args[0]) and module.split(".")[0] in LAZY_MODULES:
        args = args[1:]
    if name in SERIAL.get(module, ()):
        kwargs["parallel"] = False
    return args, kwargs


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        os.nice(NICE)
    except OSError:  # not allowed here: run at the server's priority
        pass
    cache_compiled_code()
    incoming, outgoing = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed, by Python or native code, goes to the log, not into the replies
    _serve(int(args[0]) if args else 0, incoming, outgoing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
