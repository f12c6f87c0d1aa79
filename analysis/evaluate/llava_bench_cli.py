"""`vittle eval llava-bench`: LLaVA-Bench (COCO or In-the-Wild) judged by an LLM, clean and shifted.

    export VITTLE_JUDGE_URL=https://api.openai.com/v1 VITTLE_JUDGE_MODEL=gpt-4-0613 VITTLE_JUDGE_KEY=...
    vittle eval llava-bench --model base=PATH --model vittle=PATH --questions questions.jsonl --images images/ \\
        --context context.jsonl --reference answers_gpt4.jsonl --rules rule.json --specs clean,paper --out runs/llava-bench
    vittle eval llava-bench --answer llava=answers.jsonl ...       # judge answers made elsewhere (LLaVA's own)

Per model and spec: `answers.jsonl` (LLaVA's format, appended per batch), `reviews-<run>.jsonl`
for each of `--judge-runs` runs (appended per review; a rerun continues), then
`results.json` (per category: reference and model means, relative score, failures; mean and
std of the relative score over the runs) and `results.md` (Table 11 layout of the overall
relative score, then each model by category). See vittle.analysis.evaluate.judge for the judge.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from vittle.analysis.evaluate.args import LlavaBenchArgs
from vittle.analysis.evaluate.benchmark import Shard, answer_models, table11, write_results
from vittle.analysis.evaluate.judge import Judge, JudgeSettings, combine_runs, read_contexts, read_rules, run_reviews, summarize
from vittle.analysis.evaluate.llava_files import read_jsonl, read_questions
from vittle.analysis.perturb import expand_specs
from vittle.options import USAGE_ERROR, configure_logging, failed, parse

PROG = "vittle eval llava-bench"


def run(args: LlavaBenchArgs, judge_factory: Any = None) -> dict[str, Any]:
    questions = read_questions(args.questions)[: args.limit]
    contexts, rules = read_contexts(args.context), read_rules(args.rules)
    references = {row["question_id"]: row for row in read_jsonl(args.reference) if "question_id" in row}
    settings = JudgeSettings.from_env(base_url=args.judge_url, model=args.judge_model, timeout_s=args.judge_timeout, retries=args.judge_retries)
    judge = (judge_factory or Judge)(settings)
    specs = expand_specs(args.specs, clean=True)
    work: dict[str, dict[str, Path]] = {}  # model -> spec -> answers file
    for name, path in args.answers.items():
        work[name] = {"clean": Path(path)}
    results: dict[str, Any] = {}
    try:
        for name, spec, answers in answer_models(args.models, specs, questions, args, PROG):
            work.setdefault(name, {})[spec] = answers.path
        if not Shard.from_env().main:  # a data-parallel rank: its answers are written; rank 0 judges
            work = {}
        for name, files in work.items():
            results[name] = {}
            for spec, file in files.items():
                answers = {row["question_id"]: row for row in read_jsonl(file)}
                runs = [summarize(run_reviews(judge, questions, contexts, references, answers, rules,
                                              args.out / name / spec / f"reviews-{index + 1}.jsonl"))
                        for index in range(args.judge_runs)]
                results[name][spec] = {"runs": runs, "combined": combine_runs(runs)}
    finally:
        judge.close()
    return {"benchmark": "llava-bench", "questions": str(args.questions), "specs": specs, "judge": {"url": settings.base_url,
            "model": settings.model, "temperature": settings.temperature, "runs": args.judge_runs}, "results": results}


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = table11({m: {s: r["combined"]["all"]["relative_mean"] for s, r in specs.items() if "all" in r["combined"]}
                     for m, specs in results.items()}, "LLaVA-Bench: relative score (%) over all categories, mean over judge runs")
    for model, specs in results.items():
        categories = sorted({c for r in specs.values() for c in r["combined"]}, key=lambda c: (c == "all", c))
        lines += ["", f"## {model}: relative score (%) by category, mean ± std over judge runs", "",
                  "| spec | " + " | ".join(categories) + " | failures |", "|---|" + "---|" * (len(categories) + 1)]
        for spec, r in specs.items():
            cells = [f"{r['combined'][c]['relative_mean']:.1f} ± {r['combined'][c]['relative_std']:.1f}" if c in r["combined"] else "–"
                     for c in categories]
            failures = r["combined"].get("all", {}).get("failures", 0)
            lines.append(f"| {spec} | " + " | ".join(cells) + f" | {failures} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, judge_factory: Any = None) -> int:
    args = parse(LlavaBenchArgs, argv, prog=PROG, description=__doc__.split("\n\n")[0])
    configure_logging(logging.WARNING)
    try:  # the judge's settings are settings: checked before any work, a usage error if wrong
        JudgeSettings.from_env(base_url=args.judge_url, model=args.judge_model, timeout_s=args.judge_timeout, retries=args.judge_retries)
    except ValueError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    try:
        report = run(args, judge_factory)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        return failed(PROG, err)
    write_results(PROG, args.out, report, markdown(report["results"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
