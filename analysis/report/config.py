"""The report's settings (`vittle analyze`'s options are generated from `ReportConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vittle.analysis.projection import METHODS


@dataclass
class ReportConfig:
    """What to analyse and how; validated at construction."""

    models: dict[str, str]
    """Model name -> checkpoint folder (or hub id), in report order."""
    out: Path
    """Folder for report.html and report.json."""
    data: str = "easyvqa"
    """"easyvqa" (the package's test split) or a LLaVA conversation JSON."""
    specs: str = "paper"
    """Spec sets and/or specs, comma-separated ("clean" is always added)."""
    limit_images: int | None = 60
    """Keep the questions of the first N images (easy-vqa: ~9.7 questions each); null: every image.
    60 runs the paper's 27 variants for two tiny models in about 8 minutes on 2 CPU cores."""
    map_specs: str | None = None
    """Perturbed specs drawn as embedding maps, comma-separated; null: the first three."""
    projection: str = field(default="pca", metadata={"choices": METHODS})
    """2-D map method (umap: ~10 s of JIT first)."""
    device: str = "auto"
    """"auto", "cpu", "cuda", "cuda:1", "mps"."""
    batch_size: int = 32
    """Queries per forward pass."""
    max_new_tokens: int = 4
    """Longest generated answer (scored by exact match, embedded for EMID)."""
    cache_dir: Path | None = None
    """Embedding cache; null: $VITTLE_CACHE_DIR or ~/.cache/vittle/representations."""
    emid: bool = True
    """Estimate EMID (CLUB MI between query and answer embeddings)."""
    club_steps: int = 2000
    """Most CLUB training steps per MI estimate."""
    text_embedder: str = "minilm"
    """Embeds questions and answers for EMID: minilm, or a name given to
    vittle.analysis.embedders.register_embedder (checked when the report starts, so that --help
    loads no model code)."""
    image_embedder: str = "efficientnet-lite0"
    """Embeds images for EMID: efficientnet-lite0, or a registered name (as text_embedder)."""
    seed: int = 0
    """Seed of the perturbations, the projection and CLUB."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models: none given; name at least one checkpoint")
        if self.limit_images is not None and self.limit_images < 1:
            raise ValueError(f"limit_images={self.limit_images} must be at least 1 (null: every image)")
        for name in ("batch_size", "max_new_tokens", "club_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.projection not in METHODS:
            raise ValueError(f"projection={self.projection!r}: choose one of {', '.join(METHODS)}")
        self.out = Path(self.out)
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else None
