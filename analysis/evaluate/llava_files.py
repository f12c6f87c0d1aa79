"""LLaVA's evaluation files: question files in, answer files out, appended as they are made.

Question files are JSON lines with `question_id`, `image` (a file name under an image folder),
`text` (the prompt, LLaVA's answer-format suffix included) and, for POPE, `category`. Answer
files are JSON lines with `question_id`, `prompt`, `text`, `answer_id`, `model_id` and
`metadata`, the layout of LLaVA's `model_vqa_loader`, so LLaVA's own scoring scripts read our
answers and our scoring reads theirs.

`AnswerFile` appends each batch of answers as it is made (flushed and fsynced), so a run that
stops part-way loses at most the batch in flight and a rerun continues after the last answer
written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class FormatError(ValueError):
    """A question, label or answer file that does not follow LLaVA's layout; says where."""


@dataclass(frozen=True)
class Question:
    question_id: Any
    image: str | None
    text: str
    category: str | None = None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file; blank lines are skipped. A line that is not a JSON
    object raises FormatError with the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise FormatError(f"{path}, line {number}: not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise FormatError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def read_questions(path: str | Path) -> list[Question]:
    """LLaVA's question file. Every line needs `question_id` and a non-empty `text`;
    `question_id`s must be unique."""
    questions, seen = [], set()
    for number, row in enumerate(read_jsonl(path), 1):
        missing = [key for key in ("question_id", "text") if key not in row]
        if missing:
            raise FormatError(f"{path}: question {number} has no {' or '.join(missing)} (keys: {', '.join(sorted(row))})")
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise FormatError(f"{path}: question {row['question_id']!r} has an empty text")
        if row["question_id"] in seen:
            raise FormatError(f"{path}: question_id {row['question_id']!r} appears twice")
        seen.add(row["question_id"])
        questions.append(Question(row["question_id"], row.get("image"), row["text"], row.get("category")))
    if not questions:
        raise FormatError(f"{path}: no questions")
    return questions


def answer_id(model_id: str, question_id: Any, tag: str = "") -> str:
    """A stable answer id (LLaVA draws a random one; a stable one makes reruns comparable)."""
    return hashlib.blake2b(f"{model_id}|{tag}|{question_id}".encode(), digest_size=11).hexdigest()


def read_appended(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file that is appended to as work is done (answers, reviews).
    A last line cut off by a crash is dropped from the file; a broken line before the last is
    a FormatError (the file was not written that way)."""
    path = Path(path)
    if not path.is_file():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    rows, offset, keep = [], 0, len(raw)
    for index, line in enumerate(lines):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if any(rest.strip() for rest in lines[index + 1:]):
                raise FormatError(f"{path}: line {index + 1} is not JSON and is not the last line; "
                                  "it was not written by an interrupted run: move the file away") from None
            keep = start  # a write cut off by a crash: drop the partial line
            break
    if keep < len(raw):
        with path.open("r+b") as handle:
            handle.truncate(keep)
    elif raw and not raw.endswith(b"\n"):  # whole last line, its newline lost: the next append starts a new line
        with path.open("ab") as handle:
            handle.write(b"\n")
    return rows


def append_rows(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Append JSON lines in one write, flushed and fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        handle.flush()
        os.fsync(handle.fileno())


class AnswerFile:
    """An answers.jsonl that grows one batch at a time and survives interruption: `done()`
    gives the question ids already answered (a last line cut off by a crash is dropped from
    the file), `append()` writes, flushes and fsyncs a batch."""

    def __init__(self, path: str | Path, model_id: str, tag: str = ""):
        self.path = Path(path)
        self.model_id = model_id
        self.tag = tag

    def rows(self) -> list[dict[str, Any]]:
        """The answers written so far (after dropping a truncated last line)."""
        return read_appended(self.path)

    def done(self) -> set[Any]:
        return {row["question_id"] for row in self.rows()}

    def append(self, questions: Sequence[Question], prompts: Sequence[str], answers: Sequence[str],
               metadata: Iterable[dict[str, Any]] | None = None) -> None:
        metadata = list(metadata) if metadata is not None else [{} for _ in questions]
        if not len(questions) == len(prompts) == len(answers) == len(metadata):
            raise ValueError(f"{len(questions)} questions, {len(prompts)} prompts, {len(answers)} answers, {len(metadata)} metadata")
        append_rows(self.path, [
            {"question_id": q.question_id, "prompt": prompt, "text": text, "answer_id": answer_id(self.model_id, q.question_id, self.tag),
             "model_id": self.model_id, "metadata": meta}
            for q, prompt, text, meta in zip(questions, prompts, answers, metadata)])
