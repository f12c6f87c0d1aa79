"""Plain English text to pretrain the tiny language model on (stage 0), read at run time.

The corpus is WordNet's glosses: every synset's words and definition ("circle: ellipse in
which the two axes are of equal length; ..."), with their example sentences, read from
Debian's `wordnet-base` (/usr/share/wordnet/data.{noun,verb,adj,adv}, about 117k synsets;
`make apt` installs it). Nothing of it is copied into the repository: the samples are written
into the run's data folder. No easy-vqa question is in it, so a model pretrained on it has
learned English words (colour and shape names among them), not the task.

A sample is {"id", "text"}: plain text, every token supervised (vittle.data reads it).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vittle.files import write_text_atomic

WORDNET_DIR = Path("/usr/share/wordnet")
PARTS = ("noun", "verb", "adj", "adv")


def wordnet_glosses(folder: str | Path = WORDNET_DIR) -> Iterator[tuple[str, str]]:
    """(synset id, "word, other word: gloss") for every synset of the data files in `folder`."""
    folder = Path(folder)
    missing = [f"data.{part}" for part in PARTS if not (folder / f"data.{part}").is_file()]
    if missing:
        raise FileNotFoundError(f"WordNet data files {', '.join(missing)} not found in {folder}: "
                                "apt-get install wordnet-base (or `make apt`)")
    for part in PARTS:
        with open(folder / f"data.{part}", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("  ") or " | " not in line:  # the licence header
                    continue
                head, gloss = line.split(" | ", 1)
                fields = head.split()
                count = int(fields[3], 16)
                words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
                words = [w.split("(")[0] for w in words]  # adjective markers such as "(a)"
                yield f"{part[0]}-{fields[0]}", f"{', '.join(dict.fromkeys(words))}: {gloss.strip()}"


def text_samples(glosses: list[tuple[str, str]], max_chars: int = 240, seed: int = 0) -> list[dict[str, str]]:
    """Glosses in a fixed shuffled order, packed into samples of at most `max_chars`
    characters (a longer gloss is a sample of its own, cut at the loader's max_length)."""
    order = list(glosses)
    random.Random(seed).shuffle(order)
    samples: list[dict[str, str]] = []
    ids: list[str] = []
    text = ""
    for synset, gloss in order:
        if text and len(text) + 1 + len(gloss) > max_chars:
            samples.append({"id": f"wordnet-{ids[0]}", "text": text})
            ids, text = [], ""
        ids.append(synset)
        text = f"{text} {gloss}" if text else gloss
    if text:
        samples.append({"id": f"wordnet-{ids[0]}", "text": text})
    return samples


def write_wordnet_corpus(path: str | Path, folder: str | Path = WORDNET_DIR, max_chars: int = 240, seed: int = 0) -> Path:
    """Write the packed WordNet text samples as a JSON list to `path` (atomically); returns it."""
    path = Path(path)
    samples = text_samples(list(wordnet_glosses(folder)), max_chars=max_chars, seed=seed)
    if not samples:
        raise ValueError(f"no glosses read from {folder}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(samples))
    return path


def synthesize(data: Any, seed: int = 0) -> None:
    """The `vittle.datasets` plugin "wordnet": write the corpus to `data.path` if it is missing."""
    if not Path(data.path).exists():
        write_wordnet_corpus(data.path)
