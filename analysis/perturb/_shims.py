"""Load imagecorruptions 1.1.2 on today's numpy and setuptools.

Two incompatibilities, both fixed here and nowhere else:
- it imports `pkg_resources.resource_filename` (gone from setuptools >= 81) to locate the
  frost images shipped in its wheel; we provide a stand-in only for the duration of the
  import, so nothing else in the process sees a fake `pkg_resources`;
- `fog` allocates with `np.float_` (removed in numpy 2); we alias it to `np.float64`.
Its deprecated `scipy.ndimage.interpolation` import still works; we silence that warning.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import types
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

logger = logging.getLogger(__name__)


def _resource_filename(package: str, resource: str) -> str:
    """What pkg_resources.resource_filename returns for a plain installed package."""
    return str(Path(sys.modules[package].__file__).parent / resource)


def _stand_in_pkg_resources() -> ModuleType:
    module = types.ModuleType("pkg_resources")
    module.resource_filename = _resource_filename  # type: ignore[attr-defined]
    return module


@functools.cache
def imagecorruptions() -> ModuleType:
    """The imagecorruptions package, imported once with the shims applied."""
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # type: ignore[attr-defined]
    inserted = False
    try:
        importlib.import_module("pkg_resources")
    except ImportError:
        sys.modules["pkg_resources"] = _stand_in_pkg_resources()
        inserted = True
    try:
        with warnings.catch_warnings():
            # Its `scipy.ndimage.interpolation` import is deprecated, not broken.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module("imagecorruptions")
    finally:
        if inserted:
            # The corruptions module has bound resource_filename already; nobody else
            # should find the stand-in.
            del sys.modules["pkg_resources"]
    logger.debug("imagecorruptions loaded (pkg_resources stand-in: %s)", inserted)
    return module
