"""The demo's settings: which models, how many reference images, what runs in the background.

`vittle demo`'s options are generated from `DemoConfig`: `ServiceConfig` plus how the server
runs (vittle.options), so the command line and the Python API cannot drift apart. A Hugging Face
Space passes no flags: its variables (VITTLE_BASELINE, VITTLE_VITTLE, VITTLE_VITTLE_L,
VITTLE_DEVICE, GRADIO_SERVER_NAME, GRADIO_SERVER_PORT) set the defaults, and flags still win.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

from vittle.app.limits import MAX_UPLOAD_BYTES

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
"""The source tree's root, or the installed `vittle` package: both hold assets/ (the wheel maps
the repository's assets/ into the package)."""
ASSETS = ROOT / "assets" / "models"
LAB_JSON = ROOT / "assets" / "lab.json"
STAGED_JSON = ROOT / "assets" / "staged.json"
EMBEDDED = "embedded:"
"""Prefix of a setting that names a file shipped with vittle: "embedded:tiny-baseline" is
assets/models/tiny-baseline, "embedded:lab.json" the lab's summary. Defaults are written this
way so that they mean the same on every machine (and `--help` shows no local path)."""


def embedded(value: str | Path | None, folder: Path = ASSETS) -> str | None:
    """`value` with an "embedded:NAME" prefix resolved to the shipped file; other values as they are."""
    if value is None:
        return None
    text = str(value)
    return str(folder / text[len(EMBEDDED):]) if text.startswith(EMBEDDED) else text


@dataclass
class ServiceConfig:
    baseline: str = field(default=f"{EMBEDDED}tiny-baseline", metadata={"env": "VITTLE_BASELINE"})
    """Folder or hub id of the baseline model ("embedded:NAME": a model shipped with vittle)."""
    vittle: str = field(default=f"{EMBEDDED}tiny-vittle-f", metadata={"env": "VITTLE_VITTLE"})
    """Folder or hub id of the Vittle model shown by default."""
    vittle_l: str | None = field(default=f"{EMBEDDED}tiny-vittle-l", metadata={"env": "VITTLE_VITTLE_L"})
    """A second Vittle model selectable in the UI (e.g. the learnable-prior variant); null or "none": none.
    An embedded one that is missing is left out with a warning."""
    compare: tuple[str, ...] = field(default=(), metadata={"env": "VITTLE_COMPARE"})
    """More models the second column can show, as NAME=PATH (comma-separated; a folder, a hub id or
    "embedded:NAME"): any checkpoint, with or without a bottleneck, e.g. a model of the staged
    study trained with another method (its model card names the method and the unit)."""
    device: str = field(default="auto", metadata={"env": "VITTLE_DEVICE"})
    """"auto" (CUDA with bf16 when present, else CPU), "cpu", "cuda", "cuda:1", ..."""
    reference_images: int = 48
    """easy-vqa test images (one question each) in the reference set of the embedding and distance panels."""
    default_spec: str = "frost:3"
    """Perturbation whose reference embeddings are computed in the background."""
    max_new_tokens: int = 0
    """Longest answer in tokens; 0: what the models were trained to give (4 when every model is a lab
    model of the easy-vqa task, whose answers are one word; 64 otherwise). Raise it for models that
    answer in sentences."""
    max_upload_bytes: int = field(default=MAX_UPLOAD_BYTES, metadata={"cli": False})  # the command line sets it in MB
    """Largest accepted upload, in bytes."""
    seed: int = 0
    """Seed of the perturbations."""
    lab: str | None = f"{EMBEDDED}lab.json"
    """The robustness lab's lab.json, whose numbers the app shows ("embedded:lab.json": the one
    shipped with vittle); null: none."""
    staged: str | None = f"{EMBEDDED}staged.json"
    """The staged study's staged.json, whose gates and differences the Robustness tab shows for
    models of that study ("embedded:staged.json": the one shipped with vittle); null: none."""
    warm_umap: bool = True
    """Fit UMAP maps in a process of their own (`vittle.analysis.umap_process`), started with the
    app at a lower CPU priority, which pays numba's JIT (~10-20 s of a core) while the models load:
    the first UMAP map a user asks for takes seconds instead of ~20 s, and the compilation never
    holds the server's interpreter. Off: UMAP runs in the app's process and the first map pays it."""
    precompute: bool = True
    """After the warm-up, embed the reference set under every visual corruption at every severity
    for the baseline and the default Vittle model, in the background (each is an embedding job
    between the users' batches, so answers go on): a later query on any visual setting finds
    its reference set ready. Cached on disk, so a restart reads them back."""
    precompute_quiet_s: float = 1.0
    """The precompute embeds its next setting only once the models have had no user query for
    this long: it uses idle time and never slows a user's turn (under constant load it waits,
    and a setting it has not reached is embedded when a user first asks for it)."""
    cache_dir: Path | None = None
    """Where reference embeddings are cached on disk (None: the analysis default)."""
    prefix_cache_mb: int = 512
    """Per model: keep each reference image's prompt prefix (layers up to the bottleneck's) in
    memory, so that a text shift of a visual setting already embedded runs only the questions'
    tokens (vittle.inference.PrefixCache; about 0.2 MB per image for the embedded models: every
    visual setting's 48 images fit, about 430 MB). 0 turns it off."""

    def _compared(self) -> list[str]:
        return [f"{name}={path}" for name, path in compared(tuple(self.compare)).items()]

    def __post_init__(self) -> None:
        if self.reference_images < 3:
            raise ValueError(f"reference_images={self.reference_images} must be at least 3")
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be 0 (the models' own) or positive")
        for name in ("baseline", "vittle", "vittle_l"):
            value = getattr(self, name)
            if name == "vittle_l" and str(value).lower() in ("", "none"):  # a Space variable can't be null
                value = None
            path = embedded(value)
            if path is not None and str(value).startswith(EMBEDDED) and not Path(path).is_dir():
                if name == "vittle_l":
                    logger.warning("the embedded model %s is not in this installation (%s): the app runs without it", value, path)
                    path = None
                else:
                    raise ValueError(f"{name}: the embedded model {value} is not in this installation ({path}); reinstall "
                                     "vittle with its models (pip install --force-reinstall 'vittle[app]'), or name other "
                                     "baseline and vittle models (local folders or hub ids)")
            setattr(self, name, path)
        self.compare = tuple(self._compared())
        self.lab = embedded(self.lab, ASSETS.parent)
        self.staged = embedded(self.staged, ASSETS.parent)


RESERVED = ("baseline", "vittle-f", "vittle-l")


def _compare_entry(entry: str) -> tuple[str, str]:
    name, sep, path = entry.partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
        raise ValueError(f"compare: {entry!r} must look like NAME=PATH (e.g. ross=runs/staged/runs/ross-b0-s0/model)")
    if name in RESERVED or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"compare: the name {name!r} must be letters, digits, '-', '_' or '.', and not one of {', '.join(RESERVED)}")
    return name, path


def compared(entries: tuple[str, ...]) -> dict[str, str]:
    """NAME -> resolved path of `ServiceConfig.compare`'s entries (a ValueError naming a bad one)."""
    found: dict[str, str] = {}
    for entry in entries:
        name, path = _compare_entry(entry)
        if name in found:
            raise ValueError(f"compare: the name {name!r} is given twice")
        resolved = embedded(path)
        if path.startswith(EMBEDDED) and not Path(resolved).is_dir():
            raise ValueError(f"compare: the embedded model {path} is not in this installation ({resolved})")
        found[name] = resolved
    return found


@dataclass
class DemoConfig(ServiceConfig):
    """The service's settings and how the server runs them (`vittle demo`, app.py)."""

    max_upload_bytes: int = field(default=MAX_UPLOAD_BYTES, metadata={"cli": False})
    """Set from `max_upload_mb` (one setting on the command line, in MB)."""
    host: str = field(default="127.0.0.1", metadata={"env": "GRADIO_SERVER_NAME"})
    """Address to listen on."""
    port: int = field(default=7860, metadata={"env": "GRADIO_SERVER_PORT"})
    """Port to listen on."""
    share: bool = False
    """Also open a public gradio.live link."""
    concurrency: int = 16
    """Requests in progress at once (the rest queue): each model batches what they ask."""
    threads: int = 0
    """Torch threads on a CPU (0: half the cores, at least 1: the two models of a turn run side by
    side, and threads that wait for each other only spin); numpy's BLAS runs on one."""
    max_upload_mb: float = MAX_UPLOAD_BYTES / 1024 / 1024
    """Largest accepted upload, in MB."""
    file_lifetime_min: float = 60
    """Delete uploads and output images after this many minutes (and all at shutdown); the app keeps them in a
    folder of its own inside Gradio's ($GRADIO_TEMP_DIR) and touches no other file there."""
    sessions: int = 256
    """Sessions whose state the server keeps (a page open in a browser, or one API call without a session):
    the least recently used leave first. Each holds a copy of the page's settings (about 0.3 MB)."""
    auth: str = field(default="", metadata={"env": "VITTLE_AUTH"})
    """USER:PASSWORD that the page and the API ask for (for a --share link or a shared server); empty: open."""
    mcp: bool = False
    """Also serve the API as an MCP server (Gradio's, at /gradio_api/mcp/; needs pip install 'gradio[mcp]'): the
    tools are /run, /embeddings and /robustness, described by their docstrings."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.concurrency < 1:
            raise ValueError(f"concurrency={self.concurrency} must be at least 1")
        if self.threads < 0:
            raise ValueError(f"threads={self.threads} must be 0 (auto) or positive")
        if self.sessions < 1:
            raise ValueError(f"sessions={self.sessions} must be at least 1")
        if not self.file_lifetime_min > 0:
            raise ValueError(f"file_lifetime_min={self.file_lifetime_min:g} must be positive")
        if not self.max_upload_mb > 0:
            raise ValueError(f"max_upload_mb={self.max_upload_mb:g} must be positive")
        self.max_upload_bytes = int(self.max_upload_mb * 1024 * 1024)
        if self.auth and (":" not in self.auth or not all(self.auth.split(":", 1))):
            raise ValueError("auth must look like USER:PASSWORD, both non-empty")
        if self.mcp:
            if importlib.util.find_spec("mcp") is None:
                raise ValueError("mcp: Gradio's MCP server needs the mcp package: pip install 'gradio[mcp]'")
