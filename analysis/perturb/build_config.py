"""The settings of `vittle perturb build` (a module of its own that imports no numpy or Pillow, so
`vittle perturb --help` comes at once; `dataset` re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .spec import expand_specs, parse_spec
from .translate import TranslationSettings


@dataclass
class BuildConfig:
    """One `vittle perturb build` run."""

    data: Path
    """LLaVA conversation JSON (a list of samples)."""
    images: Path
    """Folder the samples' "image" paths are relative to."""
    out: Path
    """Output folder: one subfolder per spec."""
    specs: list[str] | str = "paper"
    """Specs, or spec sets and/or specs comma-separated ("paper": the paper's 27 variants)."""
    workers: int = 1
    """Processes corrupting images (1: in this process)."""
    seed: int = 0
    """Seed of the perturbations."""
    translation: TranslationSettings | None = field(default=None, metadata={"prefix": "translate"})
    """Where translations come from; None: from the environment."""

    def __post_init__(self) -> None:
        self.data, self.images, self.out = Path(self.data), Path(self.images), Path(self.out)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        specs = expand_specs(self.specs) if isinstance(self.specs, str) else self.specs
        self.specs = [str(parse_spec(s)) for s in specs]  # fail early on a bad spec
