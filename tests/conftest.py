"""Shared fixtures: tiny models built from configs, small images and datasets. No downloads."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from functools import cache
from pathlib import Path

import pytest
import torch
from PIL import Image

CLIENT_FOLDER = re.compile(r"[0-9a-f]{40}")


@pytest.fixture(scope="session", autouse=True)
def no_client_folders_left():
    """gradio_client downloads each output through a new folder in the system's temp directory
    (40 hex digits) and leaves it there empty: the folders of that name made during the session
    are removed after it when they are empty (nothing else is touched)."""
    temp = Path(tempfile.gettempdir())

    def client_folders() -> set[Path]:
        return {path for path in temp.iterdir() if CLIENT_FOLDER.fullmatch(path.name)}

    before = client_folders()
    yield
    for folder in client_folders() - before:
        try:
            folder.rmdir()  # only an empty one
        except OSError:
            pass


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
    from vittle.toy.tiny import build_tiny_llava

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
    from vittle.toy.shapes import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("shapes") / "train.json", 48, seed=0)


@cache
def family_builders() -> dict:
    """`BUILDERS` of tests/vittle/conftest.py (one tiny random model per family), for tests in
    any folder: the test folders are not one package, so it is loaded from its file."""
    path = Path(__file__).with_name("vittle") / "conftest.py"
    spec = importlib.util.spec_from_file_location("vittle_tests_family_builders", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.BUILDERS


def pytest_generate_tests(metafunc):
    """A test that takes `tiny_family` runs once per family in BUILDERS (ids: the model_type),
    with that family's builder: `tiny_family(seed=0)` -> (model, processor)."""
    if "tiny_family" in metafunc.fixturenames:
        builders = family_builders()
        metafunc.parametrize("tiny_family", [builders[name] for name in sorted(builders)], ids=sorted(builders))


@pytest.fixture
def save_tiny_family(tiny_family):
    """save_tiny_family(folder, bottleneck=True) -> folder: `tiny_family`'s model (seed 0), with
    a Vittle bottleneck attached (alpha_max 0.5) or without one, saved with its processor as a
    model folder that `Assistant.load`, `vittle eval` and the app read."""

    def save(folder: Path, bottleneck: bool = True) -> Path:
        from vittle.config import BottleneckConfig
        from vittle.model import attach_bottleneck

        model, processor = tiny_family(seed=0)
        if bottleneck:
            attach_bottleneck(model, BottleneckConfig(alpha_max=0.5))
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        return Path(folder)

    return save
