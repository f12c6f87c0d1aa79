"""Building perturbed LLaVA datasets: validity, sharing, resume, workers, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from vittle.analysis.perturb import expand_specs
from vittle.analysis.perturb.cli import main
from vittle.analysis.perturb.dataset import BuildConfig, build_variants
from vittle.analysis.perturb.freedict import dictionaries_present
from vittle.analysis.perturb.translate import TranslationSettings
from vittle.data import read_conversations

from . import need

SUFFIX = "\nAnswer the question using a single word or phrase."


@pytest.fixture
def source(tmp_path) -> tuple[Path, Path]:
    images = tmp_path / "src" / "images"
    (images / "coco").mkdir(parents=True)
    for name, load in (("coco/astronaut.jpg", data.astronaut), ("coco/cat.png", data.chelsea),
                       ("coffee.jpg", data.coffee)):
        Image.fromarray(load()).resize((64, 48)).save(images / name)
    question = "<image>\nWhat is the main object shown in this small picture today?" + SUFFIX
    samples = [
        {"id": "a1", "image": "coco/astronaut.jpg", "conversations": [
            {"from": "human", "value": question}, {"from": "gpt", "value": "astronaut"},
            {"from": "human", "value": "What colour is the suit worn by the person?"},
            {"from": "gpt", "value": "white"}]},
        {"id": "a2", "image": "coco/astronaut.jpg", "conversations": [
            {"from": "human", "value": question}, {"from": "gpt", "value": "person"}]},
        {"id": "c1", "image": "coco/cat.png", "conversations": [
            {"from": "human", "value": question}, {"from": "gpt", "value": "cat"}]},
        {"id": "k1", "image": "coffee.jpg", "conversations": [
            {"from": "human", "value": question}, {"from": "gpt", "value": "coffee"}]},
        {"id": "t1", "conversations": [
            {"from": "human", "value": "Name an animal that lives in the cold sea."},
            {"from": "gpt", "value": "seal"}]},
    ]
    json_path = tmp_path / "src" / "llava.json"
    json_path.write_text(json.dumps(samples), encoding="utf-8")
    return json_path, images


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


SPECS = ["clean", "frost:2", "zoom_blur:1", "char_typo:2", "zoom_blur:1+word_delete:2"]


def test_build_writes_valid_llava_variants(source, tmp_path):
    json_path, images = source
    out = tmp_path / "out"
    folders = build_variants(BuildConfig(json_path, images, out, specs=SPECS))
    assert [f.name for f in folders] == ["clean", "frost_2", "zoom_blur_1", "char_typo_2", "zoom_blur_1+word_delete_2"]
    original = json.loads(json_path.read_text())
    for folder in folders:
        samples = read_conversations(folder / "data.json", folder)
        assert [s["id"] for s in samples] == [s["id"] for s in original]
        for new, old in zip(samples, original):
            assert [t["value"] for t in new["conversations"][1::2]] == [t["value"] for t in old["conversations"][1::2]]
            assert ("image" in new) == ("image" in old)
            if "image" in old:
                assert new["image"] == f"images/{old['image']}"
                with Image.open(new["image_path"]) as produced, Image.open(images / old["image"]) as clean:
                    assert produced.size == clean.size
                    changed = np.abs(np.asarray(produced, dtype=np.int16) - np.asarray(clean, dtype=np.int16)).mean()
                    assert (changed > 2) == (folder.name != "clean" and folder.name != "char_typo_2")
        humans = [t["value"] for s in samples for t in s["conversations"][::2]]
        clean_humans = [t["value"] for s in original for t in s["conversations"][::2]]
        text_changed = [a != b for a, b in zip(humans, clean_humans)]
        assert all(text_changed) if "_2" in folder.name and folder.name != "frost_2" else not any(text_changed)
        assert all(h.endswith(SUFFIX) for h in humans if "<image>" in h)
    meta = json.loads((out / "frost_2" / "meta.json").read_text())
    assert meta["spec"] == "frost:2" and meta["seed"] == 0 and meta["samples"] == 5
    # the joint variant shares the zoom-blurred image instead of recomputing it
    joint, visual = out / "zoom_blur_1+word_delete_2" / "images", out / "zoom_blur_1" / "images"
    assert (joint / "coffee.jpg").read_bytes() == (visual / "coffee.jpg").read_bytes()
    assert (out / "clean" / "images" / "coffee.jpg").read_bytes() == (images / "coffee.jpg").read_bytes()


def test_resume_after_interruption_equals_uninterrupted(source, tmp_path):
    json_path, images = source
    specs = ["gaussian_noise:3", "char_delete:1"]
    build_variants(BuildConfig(json_path, images, tmp_path / "full", specs=specs))

    # What a run killed part-way leaves: metadata, some finished images, a half-written
    # temp file, and no data.json.
    partial = tmp_path / "partial" / "gaussian_noise_3"
    (partial / "images" / "coco").mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "gaussian_noise_3" / "meta.json", partial / "meta.json")
    shutil.copy(tmp_path / "full" / "gaussian_noise_3" / "images" / "coco" / "cat.png", partial / "images" / "coco")
    (partial / "images" / ".coffee.jpg.vtmp-1234").write_bytes(b"\xff\xd8 half a jpeg")
    before = (partial / "images" / "coco" / "cat.png").stat().st_mtime_ns

    build_variants(BuildConfig(json_path, images, tmp_path / "partial", specs=specs))
    assert _files(tmp_path / "partial") == _files(tmp_path / "full")
    assert not [p for p in (tmp_path / "partial").rglob("*") if "vtmp" in p.name]
    assert (partial / "images" / "coco" / "cat.png").stat().st_mtime_ns == before  # kept, not redone

    # a finished variant is skipped; a different seed into the same folder is refused
    build_variants(BuildConfig(json_path, images, tmp_path / "partial", specs=specs))
    with pytest.raises(ValueError, match="different build"):
        build_variants(BuildConfig(json_path, images, tmp_path / "partial", specs=specs, seed=1))


def test_two_workers_build_the_same_files(source, tmp_path):
    json_path, images = source
    build_variants(BuildConfig(json_path, images, tmp_path / "one", specs=["shot_noise:2"], workers=1))
    build_variants(BuildConfig(json_path, images, tmp_path / "two", specs=["shot_noise:2"], workers=2))
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_translation_variant_records_its_backend(source, tmp_path):
    need(dictionaries_present("/usr/share/dictd"), "freedict missing: apt-get install dict-freedict-eng-ell")
    json_path, images = source
    settings = TranslationSettings(backend="gloss", cache_dir=str(tmp_path / "cache"))
    (folder,) = build_variants(BuildConfig(json_path, images, tmp_path / "out", specs=["frost:1+greek"],
                                           translation=settings))
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["translation"] == {"backend": "freedict-gloss", "gloss": True, "label": "Greek (word gloss, freedict)"}
    samples = read_conversations(folder / "data.json", folder)
    assert any("\u0370" <= ch <= "\u03ff" for ch in samples[0]["conversations"][0]["value"])


def test_cli_build_and_spec_lists(source, tmp_path, capsys):
    json_path, images = source
    assert len(expand_specs("paper")) == 27
    assert expand_specs("frost:1, clean,frost:1") == ["frost:1", "clean"]
    code = main(["build", "--data", str(json_path), "--images", str(images), "--specs", "contrast:4,word_swap:1",
                 "--out", str(tmp_path / "out"), "--workers", "1", "--seed", "3"])
    assert code == 0 and "built 2 variants" in capsys.readouterr().out
    assert len(read_conversations(tmp_path / "out" / "word_swap_1" / "data.json")) == 5
    with pytest.raises(SystemExit) as exit:  # BuildConfig refuses the spec while the options are read
        main(["build", "--data", str(json_path), "--images", str(images), "--specs", "contrast:9", "--out", str(tmp_path / "bad")])
    assert exit.value.code == 2 and "valid levels" in capsys.readouterr().err


def test_killed_build_resumes_to_the_same_result(tmp_path):
    """A real interruption: SIGKILL the builder part way, rerun, compare."""
    import subprocess
    import sys
    import time

    images = tmp_path / "src"
    images.mkdir()
    samples = []
    for index in range(8):
        Image.fromarray(data.astronaut()[index * 8:, index * 8:]).resize((336, 336)).save(images / f"{index}.png")
        samples.append({"id": str(index), "image": f"{index}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "a person"}]})
    json_path = tmp_path / "data.json"
    json_path.write_text(json.dumps(samples))
    args = ["build", "--data", str(json_path), "--images", str(images), "--specs", "zoom_blur:5"]
    killed_args = [*args, "--out", str(tmp_path / "killed")]
    code = f"import sys; from vittle.analysis.perturb.cli import main; sys.exit(main({killed_args!r}))"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    produced = tmp_path / "killed" / "zoom_blur_5" / "images"
    deadline = time.monotonic() + 60
    while not any(p.suffix == ".png" for p in produced.glob("*")) and time.monotonic() < deadline:
        assert process.poll() is None, "the builder exited before producing an image"
        time.sleep(0.005)
    process.kill()
    process.wait()
    assert not (produced.parent / "data.json").exists(), "killed too late to test a resume"

    assert main(killed_args) == 0
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert _files(tmp_path / "killed") == _files(tmp_path / "whole")
    assert not [p for p in (tmp_path / "killed").rglob("*") if "vtmp" in p.name]
