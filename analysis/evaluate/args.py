"""The settings of `vittle eval` and its benchmark subcommands; their options are generated
from these classes (vittle.options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def check_out_folder(out: Path | None) -> None:
    """An output folder that is a file (or lies under one) is a usage error, found before any
    model loads: the results of a whole run would otherwise be lost when they are written."""
    if out is None:
        return
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            where = "is a file" if path == out else f"lies under {path}, a file"
            raise ValueError(f"out: {out} {where}; name a folder (the results go in it)")


def _check_counts(config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"{name}={value} must be at least 1")


@dataclass
class EvalArgs:
    """`vittle eval DATA`: exact-match accuracy on a VQA test set, clean and under perturbations."""

    models: dict[str, str]
    """Checkpoint folder or hub id, optionally named: NAME=PATH."""
    data: str = field(default="easyvqa", metadata={"positional": True})
    """"easyvqa" (the package's test split) or a LLaVA conversation JSON; also --data, as in
    `vittle analyze`."""
    specs: str = "paper"
    """Spec sets and/or specs, comma-separated ("clean" is always added)."""
    limit_images: int | None = None
    """Keep the questions of the first N images; null: every image."""
    out: Path = Path("runs/eval")
    """Folder for eval.json, eval.md and each model's answers per spec (<out>/<model>/<spec>/answers.jsonl,
    appended as they are made: a rerun with the same settings resumes after the last answer written)."""
    batch_size: int = 64
    """Queries per forward pass."""
    max_new_tokens: int = 4
    """Longest answer (easy-vqa answers are one word)."""
    device: str = "auto"
    """"auto", "cpu", "cuda", "cuda:1", "mps"."""
    seed: int = 0
    """Seed of the perturbations."""

    def __post_init__(self) -> None:
        _check_counts(self, "limit_images", "batch_size", "max_new_tokens")
        check_out_folder(self.out)


@dataclass(kw_only=True)
class BenchmarkArgs:
    """What every benchmark in LLaVA's files shares: the models, the questions, the shifts and how
    the models load (as `Assistant.load` takes them)."""

    models: dict[str, str] = field(default_factory=dict)
    """Checkpoint folder or hub id, optionally named: NAME=PATH."""
    questions: Path
    """The benchmark's questions as JSON lines."""
    images: Path | None = None
    """Folder of the images the questions name."""
    specs: str = "clean"
    """Spec sets and/or specs, comma-separated ("clean" is always added)."""
    out: Path
    """Folder for the answers, results.json and results.md."""
    limit: int | None = None
    """The first N questions only; null: all."""
    batch_size: int = 16
    """Queries per forward pass."""
    max_new_tokens: int = 16
    """Longest answer."""
    seed: int = 0
    """Seed of the perturbations."""
    device: str = "auto"
    """"auto", "cpu", "cuda", "cuda:1", "mps"."""
    dtype: str = "auto"
    """"auto" (bfloat16 on CUDA, float32 on CPU), "float32", "bfloat16" or "float16"."""
    device_map: str | None = None
    """"auto" or "balanced": spread a big model over the GPUs (accelerate)."""
    quantize: str | None = field(default=None, metadata={"choices": ("8bit", "4bit")})
    """Load the language model's linear layers in 8 or 4 bits (bitsandbytes, CUDA)."""

    def __post_init__(self) -> None:
        _check_counts(self, "limit", "batch_size", "max_new_tokens")
        check_out_folder(self.out)


@dataclass(kw_only=True)
class PopeArgs(BenchmarkArgs):
    questions: Path
    """LLaVA's question file (llava_pope_test.jsonl)."""
    images: Path | None = None
    """Folder of the images the questions name (COCO val2014)."""
    labels: Path
    """Folder of POPE's coco_pope_<category>.json label files."""
    out: Path = Path("runs/pope")
    """Folder for the answers, results.json and results.md."""
    limit: int | None = None
    """The first N questions of each category only; null: all."""
    max_new_tokens: int = 128
    """Longest answer (LLaVA's default is 128)."""
    score_only: Path | None = field(default=None, metadata={"metavar": "ANSWERS"})
    """Score an existing LLaVA answers.jsonl (ours or LLaVA's) and print the metrics; no model runs."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.models and self.score_only is None:
            raise ValueError("models: none given; name a checkpoint, or score_only an answers file")


@dataclass(kw_only=True)
class ClosedArgs(BenchmarkArgs):
    """`vittle eval mc` and `vittle eval mme`: the kind is the subcommand, not an option."""

    kind: str = field(metadata={"cli": False})
    """"mc" (multiple choice) or "mme"."""
    questions: Path
    """Questions as JSON lines (see vittle.analysis.evaluate.closed_form)."""
    out: Path | None = None
    """Folder for the answers, results.json and results.md; null: runs/mc or runs/mme."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.models:
            raise ValueError("models: none given; name at least one checkpoint")
        self.out = Path(self.out) if self.out is not None else Path("runs") / self.kind
        check_out_folder(self.out)


@dataclass(kw_only=True)
class LlavaBenchArgs(BenchmarkArgs):
    answers: dict[str, str] = field(default_factory=dict, metadata={"metavar": "NAME=ANSWERS"})
    """An existing LLaVA answers.jsonl to judge instead of answering (clean spec)."""
    questions: Path
    """The benchmark's questions.jsonl."""
    context: Path
    """context.jsonl (captions per image)."""
    reference: Path
    """The reference answers (answers_gpt4.jsonl)."""
    rules: Path
    """LLaVA's rule.json (llava_bench_conv, _detail, _complex)."""
    out: Path = Path("runs/llava-bench")
    """Folder for the answers, the reviews, results.json and results.md."""
    judge_url: str | None = None
    """OpenAI-compatible API root; null: $VITTLE_JUDGE_URL or $OPENAI_BASE_URL."""
    judge_model: str | None = None
    """The judge's model; null: $VITTLE_JUDGE_MODEL."""
    judge_runs: int = 3
    """Independent judge runs (the paper: 3)."""
    judge_timeout: float = 120.0
    """Seconds per judge request."""
    judge_retries: int = 5
    """Retries after a timeout, 429 or 5xx."""
    batch_size: int = 8
    """Queries per forward pass."""
    max_new_tokens: int = 1024
    """Longest answer (LLaVA-Bench answers are long)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_counts(self, "judge_runs")
        if not self.models and not self.answers:
            raise ValueError("models and answers: none given; name a checkpoint to answer or an answers file to judge")
