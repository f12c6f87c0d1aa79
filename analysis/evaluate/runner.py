"""Evaluate models on a VQA test set, clean and under perturbation specs.

    samples = load_samples("easyvqa", limit_images=100)
    variants = Variants(samples)                      # perturbed inputs, made once per spec
    result = evaluate(assistant, samples, ["clean", "frost:3", "char_typo:3"], variants)   # an EvalResult

A `Variants` object can be shared by several models so each perturbed image and question is
made once (the lab evaluates nine models on the same variants).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from vittle.analysis.evaluate.llava_files import AnswerFile, Question
from vittle.analysis.evaluate.result import EvalResult, SpecScore
from vittle.analysis.evaluate.scoring import score
from vittle.analysis.perturb import apply, parse_spec
from vittle.template import IMAGE_PLACEHOLDER
from vittle.toy.easyvqa import load_split

logger = logging.getLogger(__name__)


def load_samples(data: str | Path, limit_images: int | None = None) -> list[dict[str, Any]]:
    """Test questions as dicts with question, answer, image_path, image_id, kind, negated.

    `data` is "easyvqa" (the package's test split) or a LLaVA conversation JSON, of which the
    first turn of each sample is used. `limit_images` keeps the questions of the first N
    images (in image-id order)."""
    if str(data) == "easyvqa":
        rows = load_split("test")
    else:
        from vittle.data import read_conversations  # heavy
        rows = []
        for sample in read_conversations(data):
            question, answer = sample["turns"][0]
            rows.append({
                "question": question.replace(IMAGE_PLACEHOLDER, "").strip(),
                "answer": answer,
                "image_path": sample["image_path"],
                "image_id": sample.get("image_id", str(sample["image_path"])),
                "kind": sample.get("kind"),
                "negated": sample.get("negated", False),
                "id": sample["id"],
            })
    if limit_images is not None:
        if limit_images < 1:
            raise ValueError(f"limit_images={limit_images} must be at least 1")
        keep = set(sorted({row["image_id"] for row in rows}, key=lambda i: (isinstance(i, str), i))[:limit_images])
        rows = [row for row in rows if row["image_id"] in keep]
    if not rows:
        raise ValueError(f"{data}: no test questions")
    return rows


def _stable_int(key: Any) -> int:
    """A per-image seed offset that does not depend on call order or the process."""
    return key if isinstance(key, int) else zlib.crc32(str(key).encode("utf-8"))


class Variants:
    """Perturbed (image, question) lists per spec, made once and memoized. Each image is
    corrupted once however many questions it has; seeds are fixed per image and question."""

    def __init__(self, samples: Sequence[dict[str, Any]], seed: int = 0, pause: Callable[[], Any] | None = None):
        self.samples = list(samples)
        self.seed = seed
        self.pause = pause
        """Called before each image is corrupted (and each question set perturbed): where a
        server's warm-up work waits for its users' turns."""
        self._clean: dict[Any, Image.Image] = {}
        self._images: dict[tuple[str, Any], Image.Image] = {}
        self._questions: dict[str, list[str]] = {}

    def clean_image(self, sample: dict[str, Any]) -> Image.Image | None:
        if sample.get("image_path") is None:
            return None
        key = sample["image_id"]
        if key not in self._clean:
            from vittle.data import load_image  # heavy

            self._clean[key] = load_image(sample["image_path"], str(sample.get("id", key)))
        return self._clean[key]

    def get(self, spec: str) -> tuple[list[Image.Image | None], list[str]]:
        parsed = parse_spec(spec)
        images = []
        for sample in self.samples:
            image = self.clean_image(sample)
            if parsed.visual is not None and image is not None:
                key = (str(parsed.visual), sample["image_id"])
                if key not in self._images:
                    if self.pause is not None:
                        self.pause()
                    seed = self.seed + _stable_int(sample["image_id"])
                    self._images[key] = apply(str(parsed.visual), image=image, seed=seed)[0]
                image = self._images[key]
            images.append(image)
        if parsed.text is None:
            questions = [s["question"] for s in self.samples]
        else:
            text_key = str(parsed.text)
            if text_key not in self._questions:
                if self.pause is not None:
                    self.pause()
                self._questions[text_key] = [
                    apply(text_key, text=s["question"], seed=self.seed + index)[1] for index, s in enumerate(self.samples)
                ]
            questions = self._questions[text_key]
        return images, questions


def evaluate(assistant: Any, samples: Sequence[dict[str, Any]], specs: Sequence[str], variants: Variants | None = None,
             batch_size: int = 64, progress: bool = True, max_new_tokens: int = 4,
             answer_files: Callable[[str], AnswerFile] | None = None) -> EvalResult:
    """Score `assistant` on every spec, keeping every question and prediction.

    `answer_files(spec)`: where that spec's answers are appended batch by batch (question ids
    are the samples' positions); the answers already there are read back instead of asked
    again, so a run killed part-way resumes where it stopped (`vittle eval`)."""
    variants = variants or Variants(samples)
    if variants.samples != list(samples):
        raise ValueError("the Variants object was made for other samples")
    scores: dict[str, SpecScore] = {}
    started = time.perf_counter()
    bar = tqdm(specs, desc="specs", unit="spec", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec)
        images, questions = variants.get(spec)
        if answer_files is None:
            predictions = assistant.answer_batch(images, questions, max_new_tokens=max_new_tokens, batch_size=batch_size)
        else:
            keys = [{"image_id": str(sample["image_id"]), "seed": variants.seed} for sample in samples]  # what else makes the query
            predictions = _answer_into(answer_files(spec), assistant, images, questions, keys, batch_size, max_new_tokens)
        scores[spec] = SpecScore.from_scores(spec, score(samples, predictions), questions, predictions)
    return EvalResult(n_questions=len(samples), scores=scores, seconds=round(time.perf_counter() - started, 1),
                      answers=[str(s["answer"]) for s in samples])


def _answer_into(answers: AnswerFile, assistant: Any, images: Sequence[Any], questions: Sequence[str], keys: Sequence[dict[str, Any]],
                 batch_size: int, max_new_tokens: int) -> list[str]:
    """The predictions of every query, those not yet in `answers` made now and appended a batch
    at a time. `keys`: per query, what identifies it besides its question (kept as the answer's
    metadata; an answer written for another query is an error, not a result)."""
    found: dict[Any, str] = {}
    for row in answers.rows():
        index = row.get("question_id")
        if (not (isinstance(index, int) and 0 <= index < len(questions)) or row.get("prompt") != questions[index]
                or row.get("metadata") != keys[index]):
            raise ValueError(f"{answers.path}: its answers belong to other queries (another data set or seed); "
                             "move it away or choose another --out")
        found[index] = row["text"]
    todo = [index for index in range(len(questions)) if index not in found]
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        texts = assistant.answer_batch([images[i] for i in batch], [questions[i] for i in batch], max_new_tokens=max_new_tokens,
                                       batch_size=len(batch))
        answers.append([Question(i, None, questions[i]) for i in batch], [questions[i] for i in batch], texts, [keys[i] for i in batch])
        found.update(zip(batch, texts))
    return [found[index] for index in range(len(questions))]


def markdown_table(result: EvalResult, title: str = "") -> str:
    """One row per spec: accuracy, per-kind accuracy and the yes/no POPE metrics."""
    kinds = sorted({k for r in result.scores.values() for k in r.by_kind})
    header = ["spec", "accuracy", *kinds, "yes/no F1", "yes ratio"]
    lines = [f"### {title}" if title else "", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for spec, r in result.scores.items():
        yes_no = r.yes_no or {}
        cells = [spec, f"{r.accuracy:.1f}", *(f"{r.by_kind.get(k, float('nan')):.1f}" for k in kinds),
                 f"{yes_no.get('f1', float('nan')):.1f}", f"{yes_no.get('yes_ratio', float('nan')):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines).strip() + "\n"
