"""Build perturbed copies of a LLaVA-format dataset, one folder per spec.

    OUT/<spec slug>/meta.json   what was built, from what, with which seed and translator
    OUT/<spec slug>/images/...  the (perturbed) images, same relative paths as the source
    OUT/<spec slug>/data.json   the samples, human turns perturbed, answers unchanged

Resumable: every file is written atomically, images already present are kept, and a
variant with a data.json is done. Seeds derive from the sample (image path, sample id,
turn), so a resumed or parallel build equals an uninterrupted serial one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path, PurePosixPath
from typing import Any, Self

from tqdm.auto import tqdm

from vittle.files import remove_stale_temps, write_text_atomic

from ._rng import derive_seed
from .api import apply
from .build_config import BuildConfig
from .imagefiles import CorruptTask, run_corrupt_task, share_file
from .registry import Category
from .spec import Spec, parse_spec
from .translate import Language, Translator, get_translator

logger = logging.getLogger(__name__)

TRANSLATION_THREADS = 8  # API calls wait on the network, not the CPU
HUMAN_ROLES = ("human", "user")  # the turns a text perturbation applies to; answers stay


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Read a LLaVA conversation list, checking the fields the builder relies on."""
    samples = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(samples, list):
        raise ValueError(f"{path} must hold a JSON list of samples")  # noqa: TRY004 (bad data, not a bad call)
    for index, sample in enumerate(samples):
        if not isinstance(sample, dict) or not isinstance(sample.get("conversations"), list):
            raise ValueError(f"{path}: sample #{index} needs a 'conversations' list")  # noqa: TRY004
        image = sample.get("image")
        if image is not None and (PurePosixPath(image).is_absolute() or ".." in PurePosixPath(image).parts):
            raise ValueError(f"{path}: sample #{index} has an image path outside the image folder: {image!r}")
    return samples


def build_variants(config: BuildConfig) -> list[Path]:
    """Build every spec of `config`; returns the variant folders."""
    samples = read_samples(config.data)
    _check_images(samples, config.images)
    with _ImageWorkers(config.workers) as workers:
        build = _Build(config, samples, hashlib.sha256(config.data.read_bytes()).hexdigest(), workers)
        return [build.variant(parse_spec(spec)) for spec in config.specs]


@dataclass
class _Build:
    """State shared by the variants of one build."""

    config: BuildConfig
    samples: list[dict[str, Any]]
    source_digest: str
    workers: _ImageWorkers
    translator: Translator | None = None  # created on the first translation spec
    visual_done: dict[str, Path] = field(default_factory=dict)  # visual step -> folder with its images

    def variant(self, spec: Spec) -> Path:
        if _is_translation(spec) and self.translator is None:
            self.translator = get_translator(self.config.translation)
        folder = self.config.out / spec.slug
        meta = _meta(spec, self.config, self.source_digest, len(self.samples), self.translator)
        if _prepare(folder, meta):
            logger.info("%s: already built, skipping", spec)
        else:
            reuse = self.visual_done.get(str(spec.visual)) if spec.visual else None
            self._images(spec, folder, reuse)
            out_samples = _perturb_samples(self.samples, spec, self.config.seed, self.translator)
            write_text_atomic(folder / "data.json", json.dumps(out_samples, ensure_ascii=False, indent=1))
            logger.info("%s: wrote %d samples to %s", spec, len(out_samples), folder)
        if spec.visual is not None:
            self.visual_done.setdefault(str(spec.visual), folder)
        return folder

    def _images(self, spec: Spec, folder: Path, reuse: Path | None) -> None:
        todo = []
        for relative in dict.fromkeys(s["image"] for s in self.samples if s.get("image")):
            target = folder / "images" / relative
            if target.exists():
                continue
            if spec.visual is None:
                share_file(self.config.images / relative, target)
            elif reuse is not None and (reuse / "images" / relative).is_file():
                share_file(reuse / "images" / relative, target)  # same visual step, same seed
            else:
                todo.append(CorruptTask(self.config.images / relative, target, spec.visual.name,
                                        spec.visual.level, derive_seed(self.config.seed, relative)))
        self.workers.run(todo, f"{spec} images")


def _is_translation(spec: Spec) -> bool:
    return spec.text is not None and spec.text.perturbation.category is Category.SENTENCE


def _check_images(samples: Sequence[dict[str, Any]], folder: Path) -> None:
    missing = sorted({s["image"] for s in samples if s.get("image") and not (folder / s["image"]).is_file()})
    if missing:
        raise FileNotFoundError(f"{len(missing)} images missing under {folder}, e.g. {missing[:3]}")


def _meta(spec: Spec, config: BuildConfig, digest: str, count: int, translator: Translator | None) -> dict:
    meta: dict[str, Any] = {"spec": str(spec), "seed": config.seed, "source": str(config.data.resolve()),
                            "source_sha256": digest, "samples": count}
    if _is_translation(spec) and translator is not None:
        meta["translation"] = {"backend": translator.backend_id, "gloss": translator.is_gloss,
                               "label": translator.label(Language(spec.text.name))}
    return meta


def _prepare(folder: Path, meta: dict) -> bool:
    """Check or record what this folder holds; True when it is already complete."""
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        previous = json.loads(meta_path.read_text(encoding="utf-8"))
        if previous != meta:
            raise ValueError(
                f"{folder} holds a different build ({previous.get('spec')}, seed {previous.get('seed')}, "
                "other source or translator); choose another --out or delete that folder"
            )
        if (folder / "data.json").is_file():
            return True
    removed = remove_stale_temps(folder)
    if removed:
        logger.info("%s: removed %d unfinished files from an interrupted run", folder.name, removed)
    write_text_atomic(meta_path, json.dumps(meta, ensure_ascii=False, indent=1))
    return False


class _ImageWorkers:
    """Runs corruption tasks here (1 worker) or in one process pool kept for the whole
    build, so worker start-up (imports) is paid once, not once per spec."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def run(self, tasks: list[CorruptTask], description: str) -> None:
        if not tasks:
            return
        with tqdm(total=len(tasks), desc=description, unit="img") as progress:
            if self.workers == 1:
                for task in tasks:
                    run_corrupt_task(task)
                    progress.update()
                return
            if self._pool is None:
                # spawn, not fork: the parent may hold threads (torch, tqdm) that fork would copy mid-flight.
                self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"))
            for future in as_completed([self._pool.submit(run_corrupt_task, t) for t in tasks]):
                future.result()
                progress.update()


def _perturb_samples(samples: Sequence[dict[str, Any]], spec: Spec, seed: int,
                     translator: Translator | None) -> list[dict[str, Any]]:
    def one(indexed: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        index, sample = indexed
        out = copy.deepcopy(sample)
        if out.get("image"):
            out["image"] = f"images/{out['image']}"
        for turn_index, turn in enumerate(out["conversations"]):
            if turn.get("from") in HUMAN_ROLES and spec.text is not None and isinstance(turn.get("value"), str):
                turn_seed = derive_seed(seed, sample.get("id", f"#{index}"), turn_index)
                turn["value"] = apply(Spec(text=spec.text), text=turn["value"], seed=turn_seed,
                                      translator=translator)[1]
        return out

    threads = TRANSLATION_THREADS if _is_translation(spec) and translator is not None and not translator.is_gloss else 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = pool.map(one, enumerate(samples))
        return list(tqdm(results, total=len(samples), desc=f"{spec} text", unit="sample",
                         disable=spec.text is None))
