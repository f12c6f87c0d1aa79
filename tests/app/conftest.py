"""Fixtures for the app: bad image files written on the fly, and one started service."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (8-bit grey) with one empty data chunk: a
    decompression bomb's header, without the memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    """name -> a file the app must refuse with a clear message."""
    folder = tmp_path_factory.mktemp("bad")
    files = {"text": folder / "notes.txt", "empty": folder / "empty.png"}
    files["text"].write_text("this is not an image\n")
    files["empty"].write_bytes(b"")
    good = folder / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    files["truncated"] = folder / "truncated.png"
    files["truncated"].write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    files["bomb"] = png_header_only(folder / "bomb.png", 20000, 20000)
    return files


@pytest.fixture(scope="session")
def odd_images(tmp_path_factory) -> dict[str, Path]:
    """name -> an unusual but valid image file the app must accept."""
    folder = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    files = {}
    files["1x1"] = folder / "one.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(files["1x1"])
    files["rgba"] = folder / "rgba.png"
    rgba = np.dstack([rgb, np.full((40, 50), 0, np.uint8)])  # fully transparent: must flatten to white
    Image.fromarray(rgba, "RGBA").save(files["rgba"])
    files["cmyk"] = folder / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(files["cmyk"])
    files["16bit"] = folder / "deep.png"
    Image.fromarray((np.linspace(0, 65535, 40 * 50).reshape(40, 50)).astype(np.uint16)).save(files["16bit"])
    files["palette"] = folder / "palette.png"
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(files["palette"])
    files["animated"] = folder / "animated.gif"
    frames = [Image.new("RGB", (30, 30), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(files["animated"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["large"] = folder / "large.png"
    Image.new("RGB", (3000, 1500), (10, 120, 200)).save(files["large"])
    return files


@pytest.fixture(scope="session")
def service():
    """The app's service on the embedded default models, warmed up (UMAP warm-up off: the
    UMAP test pays the JIT itself)."""
    from vittle.app.config import ServiceConfig
    from vittle.app.service import DemoService

    started = DemoService(ServiceConfig(warm_umap=False, reference_images=24, precompute=False)).start()
    assert started.wait_ready(300), "warm-up did not finish"
    assert started.startup_error is None, started.startup_error
    return started


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port()


@pytest.fixture(scope="session")
def app_main():
    """vittle.app.main: the flags, the build and the launch options of `vittle demo` and app.py."""
    import vittle.app.main

    return vittle.app.main


@pytest.fixture(scope="session")
def server(service, app_main):
    """The app launched in-process on 127.0.0.1 with the app's launch options (upload cap 1 MB);
    yields its URL."""
    main = app_main
    args = main.parse_args(["--port", str(_free_port()), "--max-upload-mb", "1"])
    _, demo = main.build(args, service)
    demo.launch(prevent_thread_lock=True, quiet=True, **main.launch_options(args))
    try:
        yield f"http://127.0.0.1:{args.port}/"
    finally:
        demo.close()
