"""Answer a LLaVA question file, clean or under a perturbation spec, into a LLaVA answer file.

    questions = read_questions("llava_pope_test.jsonl")
    answers = AnswerFile("runs/pope/vittle/gaussian_noise:3/answers.jsonl", model_id="vittle", tag="gaussian_noise:3")
    answer_questions(assistant, questions, "val2014/", answers, spec="gaussian_noise:3")

Questions already in the answer file are skipped, so a rerun after a crash continues where
the last run stopped. A visual shift corrupts each image once per spec (seeded by the image
name, so every question about an image sees the same corrupted image); a text shift edits the
question's first line only, not the answer-format instruction that follows it (LLaVA's
"Answer the question using a single word or phrase."), seeded by the question id.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vittle.analysis.evaluate.llava_files import AnswerFile, Question, read_appended
from vittle.analysis.evaluate.runner import _stable_int
from vittle.analysis.perturb import CLEAN, apply, parse_spec
from vittle.files import write_text_atomic


class _Images:
    """Clean and perturbed images of one spec, the last `size` of each kept."""

    def __init__(self, folder: Path | None, spec: str, seed: int, size: int = 64):
        self.folder, self.seed, self.size = folder, seed, size
        parsed = parse_spec(spec)
        self.visual = str(parsed.visual) if parsed.visual is not None else None
        self._memo: OrderedDict[str, Any] = OrderedDict()

    def get(self, name: str | None) -> Any:
        if name is None:
            return None
        if name in self._memo:
            self._memo.move_to_end(name)
            return self._memo[name]
        from vittle.data import load_image  # heavy

        if self.folder is None:
            raise ValueError(f"the questions name images ({name}) but no image folder was given")
        image = load_image(self.folder / name, name)
        if self.visual is not None:
            image = apply(self.visual, image=image, seed=self.seed + _stable_int(Path(name).name))[0]
        self._memo[name] = image
        while len(self._memo) > self.size:
            self._memo.popitem(last=False)
        return image


def perturb_prompt(text: str, spec: str, seed: int) -> str:
    """The prompt under the text part of `spec`: the first line edited, the rest kept."""
    parsed = parse_spec(spec)
    if parsed.text is None:
        return text
    question, newline, rest = text.partition("\n")
    return apply(str(parsed.text), text=question, seed=seed)[1] + newline + rest


def answer_questions(assistant: Any, questions: Sequence[Question], image_folder: str | Path | None, answers: AnswerFile,
                     spec: str = CLEAN, seed: int = 0, batch_size: int = 16, max_new_tokens: int = 128,
                     progress: bool = True, desc: str | None = None, skip: set | None = None) -> int:
    """Answer the questions not yet in `answers` (nor in `skip`), `batch_size` at a time, each
    batch appended as soon as it is generated. Returns how many were answered now."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    done = answers.done() | (skip or set())
    todo = [q for q in questions if q.question_id not in done]
    images = _Images(Path(image_folder) if image_folder is not None else None, spec, seed)
    bar = tqdm(total=len(questions), initial=len(questions) - len(todo), desc=desc or spec, unit="q", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        pictures = [images.get(q.image) for q in batch]
        prompts = [perturb_prompt(q.text, spec, seed + _stable_int(q.question_id)) for q in batch]
        texts = assistant.answer_batch(pictures, prompts, max_new_tokens=max_new_tokens, batch_size=len(batch))
        answers.append(batch, prompts, texts, [{"spec": spec} for _ in batch])
        bar.update(len(batch))
    bar.close()
    return len(todo)


def spec_kind(spec: str) -> str:
    """"clean", "visual", "text" or "joint"."""
    if spec == CLEAN:
        return "clean"
    parsed = parse_spec(spec)
    if parsed.visual is not None and parsed.text is not None:
        return "joint"
    return "visual" if parsed.visual is not None else "text"


def table11(values: dict[str, dict[str, float]], title: str) -> list[str]:
    """The paper's Table 11 layout: models as rows; clean, V, T, J columns, each shift column
    the mean over that kind's specs (their count in brackets)."""
    kinds = [k for k in ("clean", "visual", "text", "joint") if any(spec_kind(s) == k for specs in values.values() for s in specs)]
    lines = [f"## {title}", "", "| model | " + " | ".join({"clean": "clean", "visual": "V", "text": "T", "joint": "J"}[k] for k in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    for model, specs in values.items():
        cells = []
        for kind in kinds:
            found = [v for s, v in specs.items() if spec_kind(s) == kind]
            cells.append("–" if not found else f"{sum(found) / len(found):.2f}" + (f" ({len(found)})" if kind != "clean" else ""))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def load_assistant(path: str, args: Any, shard: Shard | None = None) -> Any:
    """The model for `args`; under a data-parallel run with --device auto, on this rank's GPU (LOCAL_RANK)."""
    import torch  # heavy

    from vittle.inference import Assistant  # heavy

    device = args.device
    if device == "auto" and shard is not None and shard.world > 1 and torch.cuda.is_available() and args.device_map is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', shard.rank)) % torch.cuda.device_count()}"
    return Assistant.load(path, device=device, dtype=args.dtype, device_map=args.device_map, quantize=args.quantize)


@dataclass(frozen=True)
class Shard:
    """This process's part of a data-parallel run: `torchrun --nproc-per-node N` and
    `accelerate launch` set RANK and WORLD_SIZE (and LOCAL_RANK, the GPU); no process group
    is needed, the ranks meet through the answer files."""

    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"RANK={self.rank} and WORLD_SIZE={self.world}: need 0 <= RANK < WORLD_SIZE")

    @classmethod
    def from_env(cls) -> Shard:
        try:
            return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))
        except ValueError as err:
            raise ValueError(f"RANK and WORLD_SIZE must be integers: {err}") from None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def part(self, questions: Sequence[Question], rank: int | None = None) -> list[Question]:
        """Every world-th question from `rank` (default: this process's)."""
        return list(questions[self.rank if rank is None else rank :: self.world])


def _merge_shards(folder: Path, answers: AnswerFile, questions: Sequence[Question], shard: Shard, timeout_s: float) -> None:
    """On rank 0: wait until every rank's shard file holds its part, then write answers.jsonl
    with all answers in question order."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = {row["question_id"]: row for row in answers.rows()}
        for rank in range(shard.world):
            rows.update({row["question_id"]: row for row in read_appended(folder / f"answers.rank{rank}-of-{shard.world}.jsonl")})
        missing = [rank for rank in range(shard.world) if any(q.question_id not in rows for q in shard.part(questions, rank))]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{folder}: ranks {missing} of {shard.world} did not finish their answers within {timeout_s:g} s")
        time.sleep(2.0)
    write_text_atomic(answers.path, "".join(json.dumps(rows[q.question_id], ensure_ascii=False) + "\n" for q in questions))


def answer_models(models: dict[str, str], specs: Sequence[str], questions: Sequence[Question], args: Any,
                  prog: str = "vittle eval", shard: Shard | None = None, wait_s: float = 24 * 3600) -> Iterator[tuple[str, str, AnswerFile]]:
    """Load each model in turn (the `--dtype`/`--device-map`/`--quantize` of `args`), answer
    `questions` under each spec into `<args.out>/<model>/<spec>/answers.jsonl` (resuming what
    is there) and yield (model, spec, its answer file).

    Data-parallel (`shard.world` > 1, from RANK / WORLD_SIZE): each rank answers every
    world-th question into `answers.rank<r>-of-<world>.jsonl` (resumable like the whole
    file); rank 0 then waits for the others, merges the parts into answers.jsonl in question
    order and yields; the other ranks yield nothing."""
    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be at least 1, got {args.batch_size} and {args.max_new_tokens}")
    shard = shard or Shard.from_env()
    for name, path in models.items():
        where = f" (rank {shard.rank} of {shard.world})" if shard.world > 1 else ""
        print(f"{prog}: {name} ({path}): {len(questions)} questions x {len(specs)} specs{where}", file=sys.stderr)
        assistant = load_assistant(path, args, shard)
        for spec in specs:
            folder = Path(args.out) / name / spec
            answers = AnswerFile(folder / "answers.jsonl", model_id=name, tag=spec)
            if shard.world == 1:
                answer_questions(assistant, questions, args.images, answers, spec=spec, seed=args.seed, batch_size=args.batch_size,
                                 max_new_tokens=args.max_new_tokens, desc=f"{name} {spec}")
                yield name, spec, answers
                continue
            part = AnswerFile(folder / f"answers.rank{shard.rank}-of-{shard.world}.jsonl", model_id=name, tag=spec)
            answer_questions(assistant, shard.part(questions), args.images, part, spec=spec, seed=args.seed, batch_size=args.batch_size,
                             max_new_tokens=args.max_new_tokens, desc=f"{name} {spec} [rank {shard.rank}]", skip=answers.done())
            if shard.main:
                _merge_shards(folder, answers, questions, shard, wait_s)
                yield name, spec, answers
        del assistant


def write_results(prog: str, out: str | Path, report: dict[str, Any], table: str) -> None:
    """results.json and results.md under `out` (atomically), the table printed; on ranks other
    than 0 of a data-parallel run, only a line saying the rank's part is done."""
    shard = Shard.from_env()
    if not shard.main:
        print(f"{prog}: rank {shard.rank} of {shard.world}: its answers are written; rank 0 writes the results", file=sys.stderr)
        return

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps(report, indent=1))
    write_text_atomic(out / "results.md", table)
    print(table)
    print(f"{prog}: wrote {out / 'results.json'} and {out / 'results.md'}", file=sys.stderr)
