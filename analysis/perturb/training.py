"""Training-time augmentation with the project's own visual shifts (`data.augment` in a recipe).

    shifts = training_shifts("gaussian_noise,defocus_blur:2", probability=0.5, seed=0)
    image = shifts(image, index)    # each call a fresh draw: another shift on the next epoch

Each time a sample is read, with `probability` its image goes through one of the named shifts,
chosen uniformly; a name without a severity draws one uniformly from 1..5. The draw depends on
(seed, sample index, how often this process read that sample), so a run is reproducible and
every epoch sees other shifts. The method the staged study's positive control showed to work
(docs/robustness-lab.md); `vittle.trainer` reaches it through the `vittle.augmenters` plugin
group, so the core imports nothing of the analysis layer.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from PIL import Image

from vittle.options import UsageError

from .api import apply
from .registry import LEVELS, Modality, get_perturbation
from .spec import parse_step


def parse_shifts(specs: str) -> list[tuple[str, int | None]]:
    """(name, severity or None) for each comma-separated visual shift in `specs`; a ValueError
    naming the bad entry otherwise."""
    parsed: list[tuple[str, int | None]] = []
    for item in (part.strip() for part in specs.split(",")):
        if not item:
            continue
        name, _, level = item.partition(":")
        try:
            perturbation = get_perturbation(name)
            if level:
                parse_step(item)
        except (UsageError, ValueError) as err:
            raise ValueError(f"data.augment: {item!r}: {err}") from None
        if perturbation.modality is not Modality.VISUAL:
            raise ValueError(f"data.augment: {item!r} is a text shift; training-time augmentation takes visual shifts "
                             "(the image is what a sample's shift changes here)")
        parsed.append((perturbation.name, int(level) if level else None))
    if not parsed:
        raise ValueError("data.augment is empty; name visual shifts, e.g. gaussian_noise,defocus_blur")
    return parsed


def training_shifts(specs: str, probability: float, seed: int) -> Callable[[Image.Image, int], Image.Image]:
    """The augmenter for `data.augment` = `specs` at `data.augment_prob` = `probability`."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"data.augment_prob={probability} must be in [0, 1]")
    shifts = parse_shifts(specs)
    reads: dict[int, int] = {}
    lock = threading.Lock()

    def augment(image: Image.Image, index: int) -> Image.Image:
        with lock:
            draw = reads.get(index, 0)
            reads[index] = draw + 1
        rng = random.Random(f"{seed}:{index}:{draw}")
        if rng.random() >= probability:
            return image
        name, level = rng.choice(shifts)
        level = level if level is not None else rng.choice(LEVELS)
        return apply(f"{name}:{level}", image=image, seed=rng.randrange(2**31))[0]

    augment.shifts = shifts  # type: ignore[attr-defined]
    return augment
