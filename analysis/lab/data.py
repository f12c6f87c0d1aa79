"""The lab's training data with shifted images (`augment`) and what a finished run reports of
itself (`final_log`, `hits_string`)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vittle.analysis.evaluate.scoring import normalize_answer
from vittle.analysis.lab.plan import SHIFT_GROUPS
from vittle.analysis.perturb import apply
from vittle.files import atomic_file, write_text_atomic


def final_log(history: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The last logged value of ce, kl_v, kl_t, alpha, reconstruction (ROSS) and loss."""
    final: dict[str, float] = {}
    for entry in history:
        for key in ("ce", "kl_v", "kl_t", "alpha", "reconstruction", "loss"):
            if key in entry:
                final[key] = float(entry[key])
    return final


def hits_string(predictions: Sequence[str], answers: Sequence[str]) -> str:
    return "".join("1" if normalize_answer(p) == normalize_answer(a) else "0" for p, a in zip(predictions, answers, strict=True))


def augment(source: Path, target: Path, image_dir: Path, share: float = 0.5, seed: int = 0) -> Path:
    """Write `target`: the samples of `source` with the images of a `share` of the train images
    replaced by a copy under one of the label-keeping visual shifts at severity 1..5, chosen
    per image with a fixed seed."""
    from vittle.data import load_image  # heavy
    samples = json.loads(source.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    image_dir.mkdir(parents=True, exist_ok=True)
    replaced: dict[str, str] = {}
    for path in sorted({s["image"] for s in samples}):
        if rng.random() >= share:
            continue
        spec = f"{rng.choice(SHIFT_GROUPS['visual, label-keeping'])}:{rng.randint(1, 5)}"
        name = f"{Path(path).stem}-{spec.replace(':', '-')}.png"
        if not (image_dir / name).exists():
            shifted = apply(spec, image=load_image(source.parent / path), seed=seed + len(replaced))[0]
            with atomic_file(image_dir / name) as handle:
                shifted.save(handle, format="PNG")
        replaced[path] = str((image_dir / name).relative_to(source.parent))
    out = [{**s, "image": replaced.get(s["image"], s["image"])} for s in samples]
    write_text_atomic(target, json.dumps(out))
    return target
