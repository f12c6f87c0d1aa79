"""Image captions for the alignment stage (stage 1), generated from easy-vqa's own labels.

LLaVA's stage 1 trains only the projector on image-caption pairs. easy-vqa ships no captions,
but each image's questions and answers fix its colour and shape ("what color is the shape?"
-> blue; "does the image not contain a circle?" -> no, so a circle): the caption is "a blue
circle". An image whose questions fix only one of the two gets a caption with what is known
("a blue shape", "a circle"). The instruction is one of a few brief-description prompts,
chosen per image by a fixed rule; none of them is an easy-vqa question.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from vittle.files import write_text_atomic
from vittle.toy.easyvqa import COLORS, SHAPES, convert, load_split

PROMPTS = (
    "Describe the image briefly.",
    "Give a short caption for the picture.",
    "Summarize the visual content in a few words.",
)


def image_attributes(rows: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """image_id -> {"color": ..., "shape": ...} as far as the image's questions determine them."""
    found: dict[int, dict[str, str]] = defaultdict(dict)
    for row in rows:
        words = set(re.findall(r"[a-z]+", row["question"].lower()))
        known = found[row["image_id"]]
        if row["kind"] == "color":
            known["color"] = row["answer"]
        elif row["kind"] == "shape":
            known["shape"] = row["answer"]
            colour = words & set(COLORS)  # "what is the blue shape?"
            if len(colour) == 1:
                known["color"] = colour.pop()
        else:
            present = (row["answer"] == "yes") != row["negated"]
            if not present:
                continue
            for attribute, names in (("color", COLORS), ("shape", SHAPES)):
                named = words & set(names)
                if len(named) == 1:
                    known[attribute] = named.pop()
    return dict(found)


def caption(attributes: dict[str, str]) -> str:
    """"a blue circle", "a blue shape" or "a circle"."""
    if not attributes:
        raise ValueError("nothing is known about the image")
    return f"a {attributes.get('color', '')} {attributes.get('shape', 'shape')}".replace("  ", " ")


def write_captions(path: str | Path, split: str = "train", limit: int | None = None) -> Path:
    """Write `path`: one caption sample per image of the split (images copied next to it as
    `vittle.toy.easyvqa.convert` does, so the VQA JSON of the same folder shares them)."""
    path = Path(path)
    convert(path.parent, split, limit=limit)  # the images (and the VQA JSON of the same split)
    rows = load_split(split)
    if limit is not None:
        keep = set(sorted({row["image_id"] for row in rows})[:limit])
        rows = [row for row in rows if row["image_id"] in keep]
    samples = []
    for image_id, attributes in sorted(image_attributes(rows).items()):
        if not attributes:
            continue
        samples.append({
            "id": f"caption-{split}-{image_id}",
            "image": f"images/{split}/{image_id}.png",
            "conversations": [
                {"from": "human", "value": f"<image>\n{PROMPTS[image_id % len(PROMPTS)]}"},
                {"from": "gpt", "value": caption(attributes)},
            ],
            "image_id": image_id,
        })
    write_text_atomic(path, json.dumps(samples))
    return path


def synthesize(data: Any, seed: int = 0) -> None:
    """The `vittle.datasets` plugin "easyvqa-captions": write the captions to `data.path` if it is missing."""
    if not Path(data.path).exists():
        write_captions(data.path)
