"""`vittle eval mc` and `vittle eval mme`: closed-form benchmarks, clean and shifted, resumable.

    vittle eval mc --model PATH --questions scienceqa_img.jsonl --images images/ --specs clean,paper-visual --out runs/sqa
    vittle eval mme --model PATH --questions mme.jsonl --images MME/ --out runs/mme

File formats: vittle.analysis.evaluate.closed_form. Writes `<out>/<model>/<spec>/answers.jsonl`
(LLaVA's answer format, appended per batch), `<out>/results.json` and `<out>/results.md`
(Table 11 layout: accuracy for mc, the perception score for mme).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

from vittle.analysis.evaluate.args import ClosedArgs
from vittle.analysis.evaluate.benchmark import answer_models, table11, write_results
from vittle.analysis.evaluate.closed_form import YES_NO_INSTRUCTION, extract_letter, gold_letter, mc_prompt, mc_scores, mme_scores
from vittle.analysis.evaluate.llava_files import FormatError, Question, read_jsonl
from vittle.analysis.perturb import expand_specs
from vittle.options import configure_logging, failed, parse


def load(kind: str, path: Path) -> tuple[list, dict[Any, dict[str, Any]]]:
    """(Question list with the prompts, question_id -> the row) from a closed-form questions file."""
    questions, rows = [], {}
    for number, row in enumerate(read_jsonl(path), 1):
        needed = ("question_id", "question", "options", "answer") if kind == "mc" else ("question_id", "text", "answer", "category")
        missing = [key for key in needed if key not in row]
        if missing:
            raise FormatError(f"{path}: question {number} has no {', '.join(missing)}")
        if row["question_id"] in rows:
            raise FormatError(f"{path}: question_id {row['question_id']!r} appears twice")
        try:
            if kind == "mc":
                row = {**row, "gold": gold_letter(row["answer"], row["options"])}
                text = mc_prompt(row["question"], row["options"], row.get("context"))
            else:
                if str(row["answer"]).strip().lower() not in ("yes", "no"):
                    raise ValueError(f"the answer must be Yes or No, got {row['answer']!r}")
                text = row["text"] if YES_NO_INSTRUCTION in row["text"] else f"{row['text'].rstrip()}\n{YES_NO_INSTRUCTION}"
        except ValueError as err:
            raise FormatError(f"{path}: question {row['question_id']!r}: {err}") from None
        rows[row["question_id"]] = row
        questions.append(Question(row["question_id"], row.get("image"), text, row.get("category")))
    if not questions:
        raise FormatError(f"{path}: no questions")
    return questions, rows


def score(kind: str, answers: list[dict[str, Any]], rows: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    if kind == "mc":
        picked = [(extract_letter(a["text"], rows[a["question_id"]]["options"]), rows[a["question_id"]]) for a in answers]
        return mc_scores([p for p, _ in picked], [r["gold"] for _, r in picked], [r.get("category") for _, r in picked])
    return mme_scores([{"category": rows[a["question_id"]]["category"], "image": rows[a["question_id"]].get("image"),
                        "answer": rows[a["question_id"]]["answer"], "prediction": a["text"]} for a in answers])


def main(kind: str, argv: list[str] | None = None) -> int:
    prog = f"vittle eval {kind}"
    args = parse(ClosedArgs, argv, prog=prog, description=__doc__.split("\n\n")[0], make=partial(ClosedArgs, kind=kind))
    configure_logging(logging.WARNING)
    results: dict[str, dict[str, Any]] = {}
    try:
        questions, rows = load(kind, args.questions)
        questions = questions[: args.limit]
        models, specs = args.models, expand_specs(args.specs, clean=True)
        for name, spec, answers in answer_models(models, specs, questions, args, prog):
            results.setdefault(name, {})[spec] = score(kind, answers.rows(), rows)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        return failed(prog, err)
    if kind == "mc":
        lines = table11({m: {s: r["all"]["accuracy"] for s, r in v.items()} for m, v in results.items()}, "Multiple choice: accuracy (%)")
    else:
        lines = table11({m: {s: r["perception"] for s, r in v.items()} for m, v in results.items()}, "MME: perception score")
        lines += ["", "| model | spec | perception | cognition |", "|---|---|---|---|"]
        lines += [f"| {m} | {s} | {r['perception']:.1f} | {r['cognition']:.1f} |" for m, v in results.items() for s, r in v.items()]
    table = "\n".join(lines) + "\n"
    write_results(prog, args.out, {"benchmark": kind, "questions": str(args.questions), "specs": specs, "results": results}, table)
    return 0
