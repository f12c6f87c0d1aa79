"""A small synthetic VQA set of coloured shapes, for the quick start and tests.

Each image is one filled shape on a light background; each image gets a colour question, a
shape question and a yes/no existence question (half of them true). Written in the LLaVA
conversation format.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")


def draw_shape(shape: str, colour: tuple[int, int, int], size: int, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (size, size), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    extent = rng.randint(size // 2, size - 4)
    x0, y0 = rng.randint(0, size - extent), rng.randint(0, size - extent)
    box = (x0, y0, x0 + extent - 1, y0 + extent - 1)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(x0 + extent // 2, y0), (x0, y0 + extent - 1), (x0 + extent - 1, y0 + extent - 1)], fill=colour)
    return image


def make_shapes_dataset(json_path: Path, n_images: int, seed: int = 0, size: int = 32) -> Path:
    """Write `n_images` images under `json_path`'s folder and a LLaVA JSON of 3 questions each."""
    rng = random.Random(seed)
    folder = json_path.parent
    (folder / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    for index in range(n_images):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        relative = f"images/{index:05d}.png"
        draw_shape(shape, COLOURS[colour], size, rng).save(folder / relative)
        asked = colour if rng.random() < 0.5 else rng.choice([c for c in COLOURS if c != colour])
        questions = [
            ("What colour is the shape?", colour),
            ("What shape is in the image?", shape),
            (f"Is there a {asked} shape in the image?", "yes" if asked == colour else "no"),
        ]
        for number, (question, answer) in enumerate(questions):
            samples.append({
                "id": f"shapes-{index:05d}-{number}",
                "image": relative,
                "conversations": [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}],
            })
    json_path.write_text(json.dumps(samples, indent=1))
    return json_path


def synthesize(data: Any, seed: int = 0) -> None:
    """The `vittle.datasets` plugin "shapes": `data.synthetic_samples` images at `data.path` if it is missing."""
    if not Path(data.path).exists():
        make_shapes_dataset(Path(data.path), data.synthetic_samples, seed=seed)
