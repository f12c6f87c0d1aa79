"""The report's settings (`vittle analyze`'s options are generated from `ReportConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ReportConfig:
    """What to analyse and how; validated at construction."""

    models: dict[str, str]
    """Model name -> checkpoint folder (or hub id), in report order."""
    out: Path
    """Folder for report.html and report.json."""
    data: str = "easyvqa"
    """"easyvqa" or a LLaVA conversation JSON."""
    specs: str = "paper"
    """Spec sets and/or specs, comma-separated ("clean" is always added)."""
    limit_images: int | None = None
    """Keep the questions of the first N images."""
    map_specs: str | None = None
    """Specs drawn as embedding maps, comma-separated; None: the first three perturbed specs."""
    projection: str = "pca"
    """"pca" or "umap"."""
    device: str = "auto"
    batch_size: int = 32
    max_new_tokens: int = 4
    """Longest generated answer (scored by exact match, embedded for EMID)."""
    cache_dir: Path | None = None
    """Embedding cache; None: $VITTLE_CACHE_DIR or ~/.cache/vittle/representations."""
    emid: bool = True
    club_steps: int = 2000
    """Most CLUB training steps per MI estimate."""
    text_embedder: str = "minilm"
    image_embedder: str = "efficientnet-lite0"
    seed: int = 0
    """Seed of the perturbations, the projection and CLUB."""
    progress: bool = True

    def __post_init__(self) -> None:
        from analysis.projection import METHODS

        if not self.models:
            raise ValueError("no models given: pass --models NAME=PATH [NAME=PATH ...]")
        if self.limit_images is not None and self.limit_images < 1:
            raise ValueError(f"--limit-images={self.limit_images} must be at least 1")
        for name in ("batch_size", "max_new_tokens", "club_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}={getattr(self, name)} must be at least 1")
        if self.projection not in METHODS:
            raise ValueError(f"--projection={self.projection!r}: choose one of {', '.join(METHODS)}")
        self.out = Path(self.out)
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else None
