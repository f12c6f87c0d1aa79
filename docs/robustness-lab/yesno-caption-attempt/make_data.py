"""Captioning-stage attempt (issue: yes/no questions at the wording prior).
Design, fixed before any run:
  stage 1: 800 steps x 32, lr 1e-3, from scratch, 6 x 128 Llama with TIED embeddings, on
           captions only: "<image>\nDescribe the image." -> "a {color} {shape}" (4,000 train images).
  stage 2: 1,500 steps x 32, lr 1e-3 from stage 1, on the yes/no-balanced easy-vqa train split
           plus the captions (so stage 1 is not forgotten).
  eval:    clean, first 300 test images: colour, shape, yes/no (plain and negated), yes-ratio.
Reference without stage 1 (measured earlier, same data, 2,500 steps, tied, H200):
  c2-h128-tie yes/no 17.1 plain / 83.3 negated, i.e. the wording prior.
Reading: yes/no on plain AND negated questions well above 50% on balanced data -> the caption
stage lets the model compare the question's word with the image; both near 50% (or one near
0/100) -> still at chance / the wording prior."""
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from vittle.toy.easyvqa import convert, load_split

out = Path("runs/caption")
balanced = convert(out, "train", balance=True, seed=0)
rows = load_split("train")
attrs = defaultdict(dict)
for r in rows:
    if r["kind"] in ("color", "shape"):
        attrs[r["image_id"]][r["kind"]] = r["answer"]
captions = [{"id": f"caption-{i}", "image": f"images/train/{i}.png",
             "conversations": [{"from": "human", "value": "<image>\nDescribe the image."},
                               {"from": "gpt", "value": f"a {a['color']} {a['shape']}"}]}
            for i, a in sorted(attrs.items()) if "color" in a and "shape" in a]
(out / "captions.json").write_text(json.dumps(captions))
mixed = json.loads(balanced.read_text()) + captions
random.Random(0).shuffle(mixed)
(out / "stage2.json").write_text(json.dumps(mixed))
print(len(captions), "captions;", len(mixed), "stage-2 samples")
