"""Shared fixtures: tiny models built from configs, small images and datasets. No downloads."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True)
def _feature_cache_folder_stays_with_its_test():
    """A lab (`Lab`, `StagedLab`) points $VITTLE_FEATURE_CACHE at its own folder for its worker
    processes; put it back after each test, so that later tests do not read that disk cache."""
    saved = os.environ.get("VITTLE_FEATURE_CACHE")
    yield
    if saved is None:
        os.environ.pop("VITTLE_FEATURE_CACHE", None)
    else:
        os.environ["VITTLE_FEATURE_CACHE"] = saved


@pytest.fixture
def require():
    """require("module"): import an optional dependency; skip without it locally, but fail
    in CI (CI=true), where a missing dependency is a broken install."""

    def load(module: str):
        if os.environ.get("CI"):
            return __import__(module)
        return pytest.importorskip(module)

    return load


@pytest.fixture
def tiny():
    """A fresh tiny LLaVA (seed 0) in eval mode and its processor."""
    from vittle.tiny import build_tiny_llava

    model, processor = build_tiny_llava(seed=0)
    return model.eval(), processor


@pytest.fixture
def image():
    """A 40x30 image with structure (not a flat colour)."""
    gen = torch.Generator().manual_seed(0)
    pixels = (torch.rand(30, 40, 3, generator=gen) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory):
    """A synthetic LLaVA-format dataset of 48 images x 3 questions."""
    from vittle.shapes import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("shapes") / "train.json", 48, seed=0)
