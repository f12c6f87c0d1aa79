"""`vittle eval`: exact-match accuracy, clean and under perturbations, as JSON and markdown.

    vittle eval easyvqa --model assets/models/tiny-vittle-f --specs paper --out runs/eval   # rerun: resumes
    vittle eval test.json --model base=PATH --model vittle=PATH --specs visual,text --limit-images 100
    vittle eval pope --model PATH --questions llava_pope_test.jsonl --images val2014/ --labels coco/   (see pope_cli)
    vittle eval llava-bench --model PATH --questions questions.jsonl --context ... --rules rule.json  (llava_bench_cli)
"""

from __future__ import annotations

import json
import logging
import sys

from vittle.analysis.evaluate.args import EvalArgs
from vittle.analysis.perturb import expand_specs
from vittle.files import write_text_atomic
from vittle.options import configure_logging, failed, parse

from .closed_cli import main as closed
from .llava_bench_cli import main as llava_bench
from .llava_files import AnswerFile
from .pope_cli import main as pope
from .runner import Variants, evaluate, load_samples, markdown_table

PROG = "vittle eval"
DESCRIPTION = ("Score models by exact match on a VQA test set, clean and under perturbations. "
               "Yes/no questions are also scored POPE-style (precision, recall, F1, yes-ratio).")
EPILOG = ("Benchmarks in LLaVA's files: `vittle eval pope --help`, `vittle eval llava-bench --help`, "
          "`vittle eval mc --help` (multiple choice), `vittle eval mme --help`. "
          "Spec sets: paper (27 variants), paper-visual, paper-text, paper-joint (its 9 of each kind), visual (9 corruptions "
          "x severities 1..5), text (9 text perturbations), full (visual + text); or specs such as "
          "frost:3,char_typo:2,zoom_blur:3+greek.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "pope":
        return pope(argv[1:])
    if argv and argv[0] in ("mc", "mme"):
        return closed(argv[0], argv[1:])
    if argv and argv[0] == "llava-bench":
        return llava_bench(argv[1:])
    args = parse(EvalArgs, argv, prog=PROG, description=DESCRIPTION, epilog=EPILOG, aliases={"--data": "data"})
    configure_logging(logging.WARNING)
    try:
        models = args.models
        specs = expand_specs(args.specs, clean=True)
        samples = load_samples(args.data, args.limit_images)
        variants = Variants(samples, seed=args.seed)
        args.out.mkdir(parents=True, exist_ok=True)  # before any model loads: a folder that cannot be made fails now
        from vittle.inference import Assistant  # heavy
        from vittle.toy.efficientnet import FeatureCache, use_feature_cache  # heavy

        features = FeatureCache()  # the models share the frozen tower's features (the easy-vqa models have the same tower)
        report = {"data": args.data, "limit_images": args.limit_images, "seed": args.seed, "specs": specs, "models": {}}
        tables = []
        for name, path in models.items():
            print(f"{PROG}: {name} ({path}) on {len(samples)} questions x {len(specs)} specs", file=sys.stderr)
            assistant = Assistant.load(path, device=args.device)
            use_feature_cache(assistant.model, features)

            def answer_file(spec: str, name: str = name) -> AnswerFile:
                return AnswerFile(args.out / name / spec / "answers.jsonl", model_id=name, tag=spec)

            result = evaluate(assistant, samples, specs, variants, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                              answer_files=answer_file)
            report["models"][name] = {"path": path, **result.to_json()}
            tables.append(markdown_table(result, title=name))
        write_text_atomic(args.out / "eval.json", json.dumps(report, indent=1))
        write_text_atomic(args.out / "eval.md", "\n".join(tables))
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        return failed(PROG, err)
    print("\n".join(tables))
    print(f"{PROG}: wrote {args.out / 'eval.json'} and {args.out / 'eval.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
