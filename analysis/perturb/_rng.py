"""Seeds for the perturbations, and a fence around libraries that use global RNGs.

imagecorruptions and nlpaug draw from `numpy.random` and `random` module state. We seed
both for the duration of one call and put the caller's state back afterwards, so a
perturbation never shifts the random stream of the code around it.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

# Global RNG state is process-wide: two threads inside the fence would corrupt each other.
_GLOBAL_RNG_LOCK = threading.RLock()


def derive_seed(*parts: object) -> int:
    """A stable 32-bit seed from any printable parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed `random` and `numpy.random` inside the block, restore both on exit."""
    with _GLOBAL_RNG_LOCK:
        py_state = random.getstate()
        np_state = np.random.get_state()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
