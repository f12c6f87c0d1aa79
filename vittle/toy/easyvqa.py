"""easy-vqa (the PyPI package, MIT) converted to the LLaVA conversation JSON.

easy-vqa has 4,000 train and 1,000 test 64x64 images of one coloured shape and 38,575 /
9,673 questions with 13 answers: yes/no existence questions (with negations), shape
questions and colour questions. The converter copies the images next to the JSON and writes
one sample per question, so the tiny models train through exactly the loader the 7B recipes
use. Each sample keeps its metadata: `kind` ("yes/no", "shape" or "color"), `negated`,
`attribute` ("color" or "shape" for yes/no questions) and `image_id`.

The yes/no questions are this data's POPE: asked about an absent colour 7 times in 8, a
model can reach 85% on them from the wording alone. `balance=True` duplicates the rarer
answer within each (attribute, negated) group of the training split until both answers are
equally frequent, so the wording alone no longer predicts the answer.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from vittle.files import copy_atomic, write_text_atomic

SPLITS = ("train", "test")
COLORS = ("red", "green", "blue", "black", "gray", "yellow", "teal", "brown")
SHAPES = ("circle", "rectangle", "triangle")
_NEGATION = re.compile(r"\b(not|no)\b")


def _package() -> Any:
    try:
        import easy_vqa  # optional
    except ImportError as err:
        raise ImportError("easy-vqa is not installed: pip install easy-vqa") from err
    return easy_vqa


def classify(question: str, answer: str) -> dict[str, Any]:
    """The metadata of one question: kind, negated and (for yes/no) attribute."""
    words = set(re.findall(r"[a-z]+", question.lower()))
    if answer in ("yes", "no"):
        attribute = "color" if words & set(COLORS) else "shape"
        return {"kind": "yes/no", "negated": bool(_NEGATION.search(question.lower())), "attribute": attribute}
    return {"kind": "shape" if answer in SHAPES else "color", "negated": False, "attribute": None}


def load_split(split: str) -> list[dict[str, Any]]:
    """The split's questions as dicts: question, answer, image_id, image_path, metadata."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; choose one of {', '.join(SPLITS)}")
    package = _package()
    questions, answers, image_ids = getattr(package, f"get_{split}_questions")()
    paths = getattr(package, f"get_{split}_image_paths")()
    return [
        {"index": n, "question": q, "answer": a, "image_id": int(i), "image_path": paths[i], **classify(q, a)}
        for n, (q, a, i) in enumerate(zip(questions, answers, image_ids))
    ]


def balance_yes_no(rows: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Duplicate the rarer yes/no answer within each (attribute, negated) group until both
    answers are equally frequent; other questions are kept once. Order is shuffled."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    out = [row for row in rows if row["kind"] != "yes/no"]
    for row in rows:
        if row["kind"] == "yes/no":
            groups[(row["attribute"], row["negated"], row["answer"])].append(row)
    rng = random.Random(seed)
    for attribute, negated in {(k[0], k[1]) for k in groups}:
        yes, no = groups.get((attribute, negated, "yes"), []), groups.get((attribute, negated, "no"), [])
        target = max(len(yes), len(no))
        for members in (yes, no):
            if members:
                copies, rest = divmod(target, len(members))
                out.extend(members * copies)
                out.extend(rng.sample(members, rest))
    rng.shuffle(out)
    return out


def convert(out_dir: str | Path, split: str = "train", *, balance: bool = False, limit: int | None = None, seed: int = 0) -> Path:
    """Write `out_dir/{split}[-balanced].json` and copy the split's images into
    `out_dir/images/{split}/`; returns the JSON path. `limit` keeps the questions of the
    first `limit` images (for quick runs and tests)."""
    out_dir = Path(out_dir)
    rows = load_split(split)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit={limit} must be at least 1 image")
        keep = sorted({row["image_id"] for row in rows})[:limit]
        keep_set = set(keep)
        rows = [row for row in rows if row["image_id"] in keep_set]
    if balance:
        rows = balance_yes_no(rows, seed=seed)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    for image_id, path in sorted({(r["image_id"], r["image_path"]) for r in rows}):
        target = image_dir / f"{image_id}.png"
        if not target.exists():
            copy_atomic(path, target)  # another process may read it as soon as it exists
    samples = []
    seen: dict[int, int] = defaultdict(int)
    for row in rows:
        copy = seen[row["index"]]  # ids stay unique when balancing duplicates a question
        seen[row["index"]] += 1
        samples.append(
            {
                "id": f"easyvqa-{split}-{row['index']}" + (f"-{copy}" if copy else ""),
                "image": f"images/{split}/{row['image_id']}.png",
                "conversations": [
                    {"from": "human", "value": f"<image>\n{row['question']}"},
                    {"from": "gpt", "value": row["answer"]},
                ],
                "image_id": row["image_id"],
                "kind": row["kind"],
                "negated": row["negated"],
                "attribute": row["attribute"],
            }
        )
    name = f"{split}-balanced.json" if balance else f"{split}.json"
    target = out_dir / name
    write_text_atomic(target, json.dumps(samples))
    return target


def prepare(path: str | Path, source: str, seed: int = 0) -> Path:
    """Make `path` from `source` ("easyvqa", "easyvqa-balanced", "easyvqa-test") if it is missing."""
    path = Path(path)
    if path.exists():
        return path
    split = "test" if source == "easyvqa-test" else "train"
    written = convert(path.parent, split, balance=source == "easyvqa-balanced", seed=seed)
    if written != path:
        written.replace(path)
    return path


def synthesize(data: Any, seed: int = 0) -> None:
    """The `vittle.datasets` plugins "easyvqa", "easyvqa-balanced" and "easyvqa-test": `prepare` `data.path`."""
    prepare(data.path, data.synthetic)
