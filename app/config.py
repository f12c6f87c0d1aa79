"""The demo's settings: which models, how many reference images, what runs in the background.

`vittle demo`'s options are generated from `ServiceConfig` (vittle.settings), so the command
line and the Python API cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.inputs import MAX_UPLOAD_BYTES

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets" / "models"
LAB_JSON = ROOT / "docs" / "robustness-lab" / "lab.json"


@dataclass
class ServiceConfig:
    baseline: str = str(ASSETS / "tiny-baseline")
    """Folder or hub id of the baseline model."""
    vittle: str = str(ASSETS / "tiny-vittle-f")
    """Folder or hub id of the Vittle model shown by default."""
    vittle_l: str | None = str(ASSETS / "tiny-vittle-l")
    """A second Vittle model selectable in the UI (e.g. the learnable-prior variant); None: none."""
    device: str = "auto"
    reference_images: int = 48
    """easy-vqa test images (one question each) in the reference set of the embedding and distance panels."""
    default_spec: str = "frost:3"
    """Perturbation whose reference embeddings are computed in the background."""
    max_new_tokens: int = 24
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    seed: int = 0
    lab: Path | None = LAB_JSON
    warm_umap: bool = True
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
