"""`vittle eval pope`: POPE in LLaVA's files, clean and under shifts, resumable.

    vittle eval pope --model base=PATH --model vittle=PATH --questions llava_pope_test.jsonl \\
        --images val2014/ --labels coco/ --specs clean,paper-visual --out runs/pope
    vittle eval pope --score-only answers.jsonl --questions llava_pope_test.jsonl --labels coco/

Writes `<out>/<model>/<spec>/answers.jsonl` (LLaVA's answer format, appended batch by batch:
a rerun continues after the last answer written), `<out>/results.json` (per model, spec and
category: accuracy, precision, recall, F1, yes-ratio) and `<out>/results.md` (the paper's
Table 11 layout: models as rows, clean / visual / text / joint columns; then each model's
specs by category).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from vittle.analysis.evaluate.args import PopeArgs
from vittle.analysis.evaluate.benchmark import answer_models, table11, write_results
from vittle.analysis.evaluate.llava_files import read_jsonl, read_questions
from vittle.analysis.evaluate.pope import align_labels, read_labels, score_pope
from vittle.analysis.perturb import expand_specs
from vittle.options import configure_logging, failed, parse

PROG = "vittle eval pope"


EPILOG = ("Spec sets: paper-visual (the paper's 9 visual shifts at severity 3), visual, text, paper-text, paper-joint, "
          "paper; or specs such as frost:3,zoom_blur:5.")


def limit_questions(questions: list, limit: int | None) -> list:
    """The first `limit` questions of each category, in file order."""
    if limit is None:
        return questions
    if limit < 1:
        raise ValueError(f"limit={limit} must be at least 1")
    counts: dict[Any, int] = {}
    kept = []
    for question in questions:
        counts[question.category] = counts.get(question.category, 0) + 1
        if counts[question.category] <= limit:
            kept.append(question)
    return kept


def markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Table 11 layout (F1 over all categories; V, T, J are means over the specs of each kind),
    then each model's specs by category."""
    lines = table11({model: {spec: r["all"]["f1"] for spec, r in specs.items()} for model, specs in results.items()},
                    "POPE: F1 (%) over all categories")
    for model, specs in results.items():
        categories = [c for c in next(iter(specs.values())) if c not in ("all", "missing")]
        lines += ["", f"## {model}: accuracy / F1 (%) by category", "",
                  "| spec | " + " | ".join(categories) + " | all | yes-ratio |", "|---|" + "---|" * (len(categories) + 2)]
        for spec, r in specs.items():
            lines.append(f"| {spec} | " + " | ".join(f"{r[c]['accuracy']:.2f} / {r[c]['f1']:.2f}" for c in categories)
                         + f" | {r['all']['accuracy']:.2f} / {r['all']['f1']:.2f} | {r['all']['yes_ratio']:.1f} |")
    return "\n".join(lines) + "\n"


def run(args: PopeArgs) -> dict[str, Any]:
    questions = limit_questions(read_questions(args.questions), args.limit)
    labels = align_labels(questions, read_labels(args.labels))
    if args.score_only is not None:
        return {"answers": str(args.score_only), "scores": score_pope(read_jsonl(args.score_only), questions, labels)}
    models = args.models
    specs = expand_specs(args.specs, clean=True)
    results: dict[str, dict[str, Any]] = {}
    for name, spec, answers in answer_models(models, specs, questions, args, PROG):
        results.setdefault(name, {})[spec] = score_pope(answers.rows(), questions, labels)
    return {"benchmark": "pope", "questions": str(args.questions), "limit": args.limit, "specs": specs,
            "max_new_tokens": args.max_new_tokens, "seed": args.seed, "models": models, "results": results}


def main(argv: list[str] | None = None) -> int:
    args = parse(PopeArgs, argv, prog=PROG, description=__doc__.split("\n\n")[0], epilog=EPILOG)
    configure_logging(logging.WARNING)

    try:
        report = run(args)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        return failed(PROG, err)
    if args.score_only is not None:
        print(json.dumps(report["scores"], indent=1))
        return 0
    write_results(PROG, args.out, report, markdown(report["results"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
