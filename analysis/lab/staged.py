"""The staged study: LLaVA's training stages at small scale, the bottleneck present while the
task is learned (issue 22; docs/robustness-lab/staged.md).

Per base b: stage 0 pretrains the tiny Llama on text alone (`tiny-stage0-text`, WordNet
glosses), stage 1 aligns the projector on captions (`tiny-stage1-align`, LM and tower frozen)
and the pressure on a bottleneck is measured on the stage-1 model. Per unit (b, s), every
stage-2 arm learns easy-vqa from base b's stage-1 model with seed s: the same data, order,
steps and learning rate. Arms: baseline, Vittle (F), Vittle (L), the noise-only control (the
main arms, every unit); Vittle (F) at the paper's literal KL weight 0.1 on the units of
`extra_seeds`; the comparison methods (augmentation, weight decay, L2T, ROSS, Vittle (F) +
augmentation) on every unit; the units of `new_bases` (baseline, Vittle (F), the methods).
A base trained again because its model is gone (models are not archived) must reproduce its
archived record, or the study stops.

Runs are the lab's (claims, archive, evaluation, diagnostics: `analysis.lab.runner.Lab`); a
run's `seed` field holds the unit code 10 * b + s (a stage record: b). The plan, the arms and
the settings are in `staged_plan`, the gates and the report in `staged_report`.

    python -m analysis.lab.staged --out runs/staged --archive docs/robustness-lab/staged/runs --workers 2
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vittle.analysis.lab.data import final_log, hits_string
from vittle.analysis.lab.plan import BATCH_SIZE, MAX_NEW_TOKENS, Arm
from vittle.analysis.lab.results import RunResult, git_commit
from vittle.analysis.lab.runner import Lab
from vittle.analysis.lab.staged_measures import pressure, text_numbers
from vittle.analysis.lab.staged_plan import (
    ALIGN_RECIPE,
    REPRODUCE_TOLERANCE,
    TEXT_RECIPE,
    Job,
    StagedConfig,
    StageRecord,
    label_keeping_specs,
    max_relative_difference,
)
from vittle.analysis.lab.staged_report import (
    markdown,
    summarize_staged,
    write_staged_report,
)
from vittle.analysis.lab.workers import alive_claim, claim, run_workers
from vittle.corpus import write_wordnet_corpus
from vittle.options import configure_logging, parse
from vittle.toy.captions import write_captions

logger = logging.getLogger(__name__)

class StagedLab(Lab):
    """Runs the staged plan with the lab's claims, evaluation and diagnostics."""

    def __init__(self, config: StagedConfig):
        if not config.specs:
            config.specs = ("clean",) if config.clean_only else tuple(label_keeping_specs(config.severities))
        elif config.clean_only:
            config.specs = ("clean",)
        super().__init__(config)
        self.config: StagedConfig = config

    def job_folder(self, job: Job) -> Path:
        return self.config.out / "runs" / job.name

    def archived_path(self, job: Job) -> Path | None:
        if self.config.archive is None:
            return None
        path = self.config.archive / f"{job.name}.json"
        return path if path.exists() else None

    def model_of(self, kind: str, base: int) -> Path:
        return self.job_folder(Job(kind, base)) / "model"

    def job_done(self, job: Job, jobs: list[Job]) -> bool:
        folder = self.job_folder(job)
        if (folder / "result.json").exists():
            return True
        if self.archived_path(job) is None:
            return False
        if job.kind == "arm" or (folder / "model" / "config.json").exists():
            return True
        later = {"text": "align", "align": "arm"}[job.kind]  # a lost base model is needed only by runs still to do
        return all(self.job_done(j, jobs) for j in jobs if j.base == job.base and j.kind == later)

    def ready(self, job: Job) -> bool:
        if job.kind == "text":
            return True
        before = "text" if job.kind == "align" else "align"
        return (self.job_folder(Job(before, job.base)) / "train_log.json").exists()

    def prepare_data(self) -> None:
        """Every data file, written once before any worker starts."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "text.json").exists():
            write_wordnet_corpus(self.data_dir / "text.json")
        if not (self.data_dir / "captions.json").exists():
            write_captions(self.data_dir / "captions.json", limit=self.config.train_images)
        for kind in sorted({job.arm.data for job in self.config.jobs() if job.arm is not None}):
            self.train_data(kind)

    def run(self, report_only: bool = False) -> Any:
        config = self.config
        config.out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if not report_only:
            self.prepare_data()
            if config.workers > 1:
                run_workers(config, _work_in_process)
            else:
                self.work()
        summary = summarize_staged(self, seconds=time.perf_counter() - started)
        write_staged_report(summary, config.out, png=config.png)
        return summary

    def work(self, planned: Any = None, progress: bool = False) -> None:
        """Run what is not done, in plan order, each run claimed first (see Lab.work)."""
        jobs = self.config.jobs()
        while True:
            todo = [job for job in jobs if not self.job_done(job, jobs)]
            if not todo:
                return
            claimed = None
            for job in (j for j in todo if self.ready(j)):
                hold = claim(self.job_folder(job))
                if hold is None:
                    continue
                if self.job_done(job, jobs):
                    hold.release()
                    continue
                claimed = (job, hold)
                break
            if claimed is None:
                if not any(alive_claim(self.job_folder(job)) for job in todo):
                    if all(self.job_done(job, jobs) for job in todo):
                        continue
                    raise RuntimeError(f"nothing left can run: {', '.join(j.name for j in todo)} wait for a stage that did not finish")
                time.sleep(self.poll_seconds)
                continue
            job, hold = claimed
            with hold:
                self.run_job(job)

    def run_job(self, job: Job) -> Any:
        folder = self.job_folder(job)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.config
        if job.kind == "text":
            recipe = TEXT_RECIPE
            overrides = [f"model.seed={job.base}", f"train.max_steps={config.text_steps}", f"data.path={self.data_dir / 'text.json'}"]
        elif job.kind == "align":
            recipe = ALIGN_RECIPE
            overrides = [f"model.init={self.model_of('text', job.base)}", f"train.max_steps={config.align_steps}",
                         f"data.path={self.data_dir / 'captions.json'}"]
        else:
            recipe = job.arm.recipe
            overrides = [*job.arm.overrides, f"model.init={self.model_of('align', job.base)}", f"train.max_steps={config.arm_steps}",
                         f"data.path={self.train_data(job.arm.data)}"]
        scope = "base" if job.kind != "arm" else "arm"
        overrides += [*config.overrides_for(scope), f"train.seed={job.seed if job.kind == 'arm' else job.base}"]
        trained = self.train(recipe, overrides, folder)
        if job.kind == "arm":
            result = self.evaluate(job.arm, job.unit, recipe, trained)
        else:
            if job.kind == "text":
                numbers = text_numbers(folder / "model", self.data_dir / "text.json")
            else:
                numbers = pressure(folder / "model", self.train_data("train"), self.data_dir / "captions.json", config.pressure_samples)
            result = StageRecord(job.name, job.base, job.kind, float(trained["train_seconds"]), str(trained.get("train_device", "?")),
                                 git_commit(), final_log(trained["history"]), numbers, overrides)
            archived = self.archived_path(job)
            if archived is not None:  # a base trained again for runs still to do: it must be the archived one
                difference = max_relative_difference(StageRecord.load(archived), result)
                result.reproduces = {"max_relative_difference": difference}
                result.save(folder / "result.json")
                if difference > REPRODUCE_TOLERANCE:
                    raise RuntimeError(f"{job.name} trained again differs from its archived record {archived} (largest relative "
                                       f"difference {difference:.3g} > {REPRODUCE_TOLERANCE:g}): the new arms would not be paired "
                                       "with the archived ones; run on the machine and versions the archive names, or start a new archive")
                return result
        result.save(folder / "result.json")
        if config.archive is not None:
            config.archive.mkdir(parents=True, exist_ok=True)
            result.save(config.archive / f"{job.name}.json", compact=True)
        return result

    def folder(self, arm: Arm | None, seed: int) -> Path:
        """Lab.evaluate's folder for a unit code."""
        return self.job_folder(Job("arm", seed // 10, seed % 10, arm)) if arm is not None else self.model_of("align", seed).parent

    # ------------------------------------------------------------------ measuring
    def diagnose(self, assistant: Any) -> dict[str, float]:
        """The lab's diagnostics plus gate (b)'s intervention: grounded accuracy with alpha 1
        at inference (the state after layer l is the posterior mean alone; for the noise
        control, 0)."""
        from vittle.model import bottleneck_alpha  # heavy

        out = super().diagnose(assistant)
        if assistant.has_bottleneck:
            images, questions = self.variants.get("clean")
            with bottleneck_alpha(assistant.model, 1.0):
                answers = assistant.answer_batch(images, questions, max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE)
            hits = hits_string(answers, [s["answer"] for s in self.grounded])
            out["grounded_alpha1"] = 100.0 * hits.count("1") / len(hits)
        return out

    def records(self) -> tuple[dict[str, StageRecord], dict[str, RunResult]]:
        """Finished stage records and arm results by job name (run folder first, else the archive)."""
        stages: dict[str, StageRecord] = {}
        arms: dict[str, RunResult] = {}
        for job in self.config.jobs():
            path = self.job_folder(job) / "result.json"
            if not path.exists():
                path = self.archived_path(job)
            if path is None:
                continue
            if job.kind == "arm":
                arms[job.name] = RunResult.load(path)
            else:
                stages[job.name] = StageRecord.load(path)
        return stages, arms


def _work_in_process(config: StagedConfig) -> None:
    StagedLab(config).work()


@dataclass
class StagedCommand(StagedConfig):
    quick: bool = False
    """Start from the quick preset (one base, one unit, short stages: under 10 minutes)."""
    report_only: bool = False
    """Train nothing; report the finished runs."""


def _make(quick: bool = False, report_only: bool = False, **given: Any) -> tuple[StagedConfig, bool]:
    return (StagedConfig.quick(**given) if quick else StagedConfig(**given)), report_only


def main(argv: list[str] | None = None) -> int:
    config, report_only = parse(StagedCommand, argv, prog="python -m analysis.lab.staged",
                                description="The staged study (docs/robustness-lab/staged.md).", make=_make)
    configure_logging(logging.WARNING)
    try:
        summary = StagedLab(config).run(report_only=report_only)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"staged: error: {err}", file=sys.stderr)
        return 2
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
