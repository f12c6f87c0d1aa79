"""Train and evaluate what the plan lists; resumable. Each process computes the frozen tower's
features and the perturbed inputs once and shares them between the models it runs; several
processes share the plan through claim files (`--workers`)."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vittle.analysis.evaluate import Variants, load_samples
from vittle.analysis.evaluate.scoring import GROUNDED_KINDS
from vittle.analysis.lab.card import export_assets
from vittle.analysis.lab.data import augment, final_log, hits_string
from vittle.analysis.lab.plan import BASE_RECIPE, BATCH_SIZE, MAX_NEW_TOKENS, Arm, LabConfig, lab_specs
from vittle.analysis.lab.report import write_report
from vittle.analysis.lab.results import LabSummary, RunResult, environment, git_commit
from vittle.analysis.lab.summary import summarize
from vittle.analysis.lab.workers import alive_claim, claim, run_workers
from vittle.analysis.perturb import expand_specs, parse_spec
from vittle.files import write_text_atomic
from vittle.settings import load_recipe
from vittle.toy.easyvqa import convert

logger = logging.getLogger(__name__)

class Lab:
    poll_seconds = 5.0
    """How long a worker with nothing to claim waits before it looks again."""

    def __init__(self, config: LabConfig):
        self.config = config
        self.specs = lab_specs(config.severities) if not config.specs else expand_specs(list(config.specs), clean=True)
        self.slice = load_samples("easyvqa", config.slice_images)
        self.grounded = [s for s in self.slice if s["kind"] in GROUNDED_KINDS]
        if not self.grounded:
            raise ValueError(f"the first {config.slice_images} test images have no colour or shape question")
        self.clean_variants = Variants(self.slice)
        self.variants = Variants(self.grounded)
        self.data_dir = config.out / "data"
        from vittle.toy.efficientnet import FeatureCache, use_feature_cache  # heavy

        self.features = FeatureCache(config.out / "features")  # the models' tower features, on disk for other workers and a resumed lab
        self.use_features = functools.partial(use_feature_cache, cache=self.features)  # gives a model's towers the lab's cache

    # ------------------------------------------------------------------ running
    def folder(self, arm: Arm | None, seed: int) -> Path:
        return self.config.out / "runs" / f"{'base' if arm is None else arm.name}-s{seed}"

    def train_data(self, kind: str = "train") -> Path:
        """The training JSON: easy-vqa's train split, or ("augmented") the same with the images
        of half the train images replaced by a blurred or noised copy (one of the label-keeping
        visual shifts at a random severity, fixed per image)."""
        path = self.data_dir / "train.json"
        if not path.exists():
            convert(self.data_dir, "train", limit=self.config.train_images)
        if kind == "train":
            return path
        if kind != "augmented":
            raise ValueError(f"unknown training data {kind!r}; choose train or augmented")
        target = self.data_dir / "train-augmented.json"
        if not target.exists():
            augment(path, target, self.data_dir / "images" / "augmented")
        return target

    def run(self, report_only: bool = False) -> LabSummary | list[str]:
        """Train and evaluate every planned run not done yet (with `config.workers` processes),
        then write lab.json, lab.md and the figures. With `report_only`, train nothing: report
        the finished runs. With `config.train_only`, train and return the run ids."""
        config = self.config
        config.out.mkdir(parents=True, exist_ok=True)
        planned = config.planned()
        if not planned:
            raise ValueError("the lab has nothing to run: no seeds for the selected groups")
        started = time.perf_counter()
        if not report_only:
            for kind in sorted({"train" if arm is None else arm.data for arm, _ in planned}):
                self.train_data(kind)  # written once, here, before any worker reads it
            if config.workers > 1:
                run_workers(config, _work_in_process)
            else:
                self.work(planned, progress=True)
        ids = [f"{'base' if arm is None else arm.name}-s{seed}" for arm, seed in planned]
        if config.train_only:
            return ids
        results = [self.result(arm, seed) for arm, seed in planned]
        missing = [run_id for run_id, result in zip(ids, results) if result is None]
        results = [r for r in results if r is not None]
        self.archive_missing(results)
        if missing and not report_only:
            raise RuntimeError(f"runs not finished: {', '.join(missing)} (see the log; rerun to resume)")
        if not results:
            raise ValueError(f"no finished runs in {config.out / 'runs'}")
        summary = summarize(results, self, planned, seconds=time.perf_counter() - started)
        write_report(summary, config.out, png=config.png)
        if config.assets is not None:
            export_assets(results, summary, config, device=config.device)
        return summary

    def archived(self, arm: Arm | None, seed: int) -> Path | None:
        """The run's result in `config.archive`, if it is there."""
        if self.config.archive is None:
            return None
        path = self.config.archive / f"{self.folder(arm, seed).name}.json"
        return path if path.exists() else None

    def result(self, arm: Arm | None, seed: int) -> RunResult | None:
        """A finished run's result (its folder's, else the archive's), checked against this
        lab's slice; None if not finished."""
        path = self.folder(arm, seed) / "result.json"
        if not path.exists():
            path = self.archived(arm, seed)
        if path is None:
            return None
        result = RunResult.load(path)
        if len(result.clean_predictions) != len(self.slice) or len(result.hits["clean"]) != len(self.grounded):
            raise ValueError(f"{path} was evaluated on another slice ({len(result.clean_predictions)} questions, not "
                             f"{len(self.slice)}): use the same --slice-images, or another --out")
        return result

    def archive_missing(self, results: Sequence[RunResult]) -> list[Path]:
        """Copy finished runs that the archive lacks into it (runs of a lab started without
        `archive`, or before it existed)."""
        archive = self.config.archive
        if archive is None:
            return []
        archive.mkdir(parents=True, exist_ok=True)
        return [r.save(archive / f"{r.run_id}.json", compact=True) for r in results if not (archive / f"{r.run_id}.json").exists()]

    def done(self, arm: Arm | None, seed: int, planned: Sequence[tuple[Arm | None, int]] = ()) -> bool:
        """Finished: its result is in its folder or the archive (with --train-only: trained).
        An archived base whose model is gone is not finished while an arm of its seed in
        `planned` still has to run: that arm fine-tunes from it."""
        folder = self.folder(arm, seed)
        if self.config.train_only:
            return (folder / "train_log.json").exists()
        if (folder / "result.json").exists():
            return True
        if self.archived(arm, seed) is None:
            return False
        if arm is not None or (folder / "model" / "config.json").exists():
            return True
        return all(self.done(a, s) for a, s in planned if a is not None and s == seed)

    def work(self, planned: Sequence[tuple[Arm | None, int]], progress: bool = False) -> None:
        """Run what is not done, in plan order; a run waits for its seed's base. Several
        processes may share the plan: each claims a run before starting it (a lock on the
        run's claim file, held while it runs and gone with a process that dies) and checks,
        once it holds the claim, that nobody finished the run meanwhile."""
        bar = tqdm(total=len(planned), desc="lab runs", unit="run", disable=not progress)
        bar.update(sum(self.done(arm, seed, planned) for arm, seed in planned))
        while True:
            todo = [(arm, seed) for arm, seed in planned if not self.done(arm, seed, planned)]
            if not todo:
                break
            ready = [(arm, seed) for arm, seed in todo if arm is None or (self.folder(None, seed) / "train_log.json").exists()]
            claimed = None
            for arm, seed in ready:
                hold = claim(self.folder(arm, seed))
                if hold is None:
                    continue
                if self.done(arm, seed, planned):  # another process finished it since `todo` was listed
                    hold.release()
                    continue
                claimed = (arm, seed, hold)
                break
            if claimed is None:  # everything left runs elsewhere or waits for a base
                if not any(alive_claim(self.folder(arm, seed)) for arm, seed in todo):
                    todo = [(arm, seed) for arm, seed in planned if not self.done(arm, seed, planned)]
                    if not todo:
                        continue
                    waiting = ", ".join(self.folder(arm, seed).name for arm, seed in todo)
                    raise RuntimeError(f"nothing left can run: {waiting} wait for a base that did not finish")
                time.sleep(self.poll_seconds)
                continue
            arm, seed, hold = claimed
            with hold:
                self.run_one(arm, seed)
            bar.update(1)
        bar.close()

    def run_one(self, arm: Arm | None, seed: int) -> RunResult | None:
        folder = self.folder(arm, seed)
        folder.mkdir(parents=True, exist_ok=True)
        if arm is None:
            recipe, overrides = BASE_RECIPE, [f"model.seed={seed}", *self.config.overrides_for("base")]
        else:
            base = self.folder(None, seed) / "model"
            if not (base / "config.json").exists():
                raise RuntimeError(f"{arm.name} seed {seed} needs its base {base}, which is missing")
            recipe, overrides = arm.recipe, [*arm.overrides, f"model.init={base}", *self.config.overrides_for("arm")]
        data = self.train_data("train" if arm is None else arm.data)
        trained = self.train(recipe, [*overrides, f"train.seed={seed}", f"data.path={data}"], folder)
        if self.config.train_only:
            return None
        result = self.evaluate(arm, seed, recipe, trained)
        result.save(folder / "result.json")
        if self.config.archive is not None:
            self.config.archive.mkdir(parents=True, exist_ok=True)
            result.save(self.config.archive / f"{folder.name}.json", compact=True)
        return result

    def train(self, recipe_name: str, overrides: list[str], folder: Path) -> dict[str, Any]:
        """Train once: a finished training leaves train_log.json (with --train-only, maybe
        on another machine) and is not repeated."""
        from vittle.analysis.report import to_jsonable  # heavy
        from vittle.trainer import train  # heavy

        log_path = folder / "train_log.json"
        recipe = load_recipe(recipe_name, [*overrides, f"train.output_dir={folder / 'model'}", "data.synthetic=''"])
        if log_path.exists():
            return json.loads(log_path.read_text())
        tic = time.perf_counter()
        history = train(recipe, on_model=self.use_features)["log_history"]
        trained = {"history": history, "train_seconds": round(time.perf_counter() - tic, 1), "train_device": environment()["device"],
                   "overrides": overrides, "recipe_config": to_jsonable(dataclasses.asdict(recipe))}
        write_text_atomic(log_path, json.dumps(trained, indent=1))  # arms start from the model once this exists
        return trained

    # ------------------------------------------------------------------ measuring
    def evaluate(self, arm: Arm | None, seed: int, recipe: str, trained: dict[str, Any]) -> RunResult:
        from vittle.inference import Assistant  # heavy

        folder = self.folder(arm, seed)
        assistant = Assistant.load(folder / "model", device=self.config.device)
        self.use_features(assistant.model)
        tic = time.perf_counter()
        images, questions = self.clean_variants.get("clean")
        predictions = assistant.answer_batch(images, questions, max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE)
        answers = [s["answer"] for s in self.grounded]
        grounded_index = [i for i, s in enumerate(self.slice) if s["kind"] in GROUNDED_KINDS]
        hits = {"clean": hits_string([predictions[i] for i in grounded_index], answers)}
        specs = self.specs[1:] if arm is not None else []  # a base is measured clean only
        for batch in tqdm(self.spec_batches(specs), desc=f"{'base' if arm is None else arm.name}-s{seed} shifts", unit="batch", leave=False):
            images_, questions_ = [], []
            for spec in batch:
                spec_images, spec_questions = self.variants.get(spec)
                images_ += spec_images
                questions_ += spec_questions
            outputs = assistant.answer_batch(images_, questions_, max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE)
            for k, spec in enumerate(batch):
                hits[spec] = hits_string(outputs[k * len(answers) : (k + 1) * len(answers)], answers)
        diagnostics = self.diagnose(assistant)
        return RunResult(
            name="base" if arm is None else arm.name, seed=seed, group="base" if arm is None else arm.group, recipe=recipe,
            overrides=list(trained.get("overrides", [])), model_dir=str(folder / "model"),
            train_seconds=float(trained["train_seconds"]), train_device=str(trained.get("train_device", "?")),
            eval_seconds=round(time.perf_counter() - tic, 1), eval_device=str(assistant.device), commit=git_commit(),
            final_log=final_log(trained["history"]), clean_predictions=predictions, hits=hits, diagnostics=diagnostics,
            layer=assistant.layer, recipe_config=trained.get("recipe_config", {}),
        )

    @staticmethod
    def spec_batches(specs: Sequence[str]) -> list[list[str]]:
        """The text-only shifts in one batch (they keep the clean images, so each image's prompt
        prefix is computed once for all of them), every other spec alone."""
        text = [spec for spec in specs if parse_spec(spec).visual is None]
        return ([text] if text else []) + [[spec] for spec in specs if spec not in text]

    def diagnose(self, assistant: Any) -> dict[str, float]:
        """Posterior statistics and the use measures on clean colour/shape queries; grounded
        accuracy with the bottleneck switched off."""
        from vittle.analysis.evaluate.diagnostics import posterior_diagnostics, use_diagnostics  # heavy
        from vittle.model import bottleneck_alpha  # heavy

        images, questions = self.variants.get("clean")
        count = min(self.config.diagnostic_queries, len(questions))
        out: dict[str, float] = {}
        posterior = posterior_diagnostics(assistant, images[:count], questions[:count])
        for modality in ("visual", "text"):
            for key, value in posterior.get(modality, {}).items():
                if key != "tokens":
                    out[f"{key}_{modality}"] = float(value)
        for key, value in use_diagnostics(assistant, images[:count], questions[:count]).items():
            if isinstance(value, (int, float)) and key != "queries":
                out[key] = float(value)
        if assistant.has_bottleneck:
            with bottleneck_alpha(assistant.model, 0.0):
                off = assistant.answer_batch(images, questions, max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE)
            hits = hits_string(off, [s["answer"] for s in self.grounded])
            out["grounded_bottleneck_off"] = 100.0 * hits.count("1") / len(hits)
        return out


def _work_in_process(config: LabConfig) -> None:
    """A lab worker process's job: its share of the plan (`run_workers`)."""
    Lab(config).work(config.planned())
