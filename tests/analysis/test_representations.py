"""Cached layer-l embeddings under perturbations and their shift summaries."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from vittle.analysis.evaluate.runner import Variants, load_samples
from vittle.analysis.representations import (
    data_fingerprint,
    extract,
    extract_models,
    model_fingerprint,
)
from vittle.config import BottleneckConfig
from vittle.inference import Assistant
from vittle.model import attach_bottleneck
from vittle.toy.tiny import build_efficientnet_llava

SPECS = ["clean", "brightness:3", "char_typo:3"]


def _assistant(bottleneck: bool = True, seed: int = 0) -> Assistant:
    torch.set_num_threads(1)
    model, processor = build_efficientnet_llava(seed=seed, hidden_size=64, num_layers=2)
    if bottleneck:
        attach_bottleneck(model, BottleneckConfig())
    return Assistant(model.eval(), processor)


def _count_embeds(assistant: Assistant) -> list[int]:
    """Wrap the instance's embed so each call appends its number of queries to the list returned."""
    calls: list[int] = []
    original = assistant.embed

    def embed(images, questions, **kwargs):
        calls.append(len(questions))
        return original(images, questions, **kwargs)

    assistant.embed = embed
    return calls


@pytest.fixture(scope="module")
def samples():
    return load_samples("easyvqa", limit_images=1)[:3]


def test_extract_matches_probe_and_shapes(samples, tmp_path):
    assistant = _assistant()
    embeddings = extract(assistant, samples, SPECS, cache_dir=tmp_path, progress=False)
    assert list(embeddings) == SPECS
    assert all(X.shape == (3, 64) and X.dtype == np.float32 for X in embeddings.values())
    one = extract(assistant, samples[:1], ["clean"], cache_dir=tmp_path, progress=False)["clean"]
    probe = assistant.probe(samples[0]["image_path"], samples[0]["question"])
    assert probe.has_bottleneck
    np.testing.assert_allclose(one[0], probe.hidden_after, atol=1e-5)
    np.testing.assert_allclose(embeddings["clean"][0], probe.hidden_after, atol=1e-5)
    # the text perturbation changes the question, so its embeddings move
    assert not np.allclose(embeddings["char_typo:3"], embeddings["clean"])


def test_cache_hit_then_miss_on_new_spec_and_changed_weight(samples, tmp_path):
    assistant = _assistant()
    calls = _count_embeds(assistant)
    first = extract(assistant, samples, SPECS[:2], cache_dir=tmp_path, progress=False)
    assert calls == [3, 3]
    second = extract(assistant, samples, SPECS[:2], cache_dir=tmp_path, progress=False)
    assert calls == [3, 3]  # all read from disk
    for spec in first:
        np.testing.assert_array_equal(first[spec], second[spec])
    extract(assistant, samples, SPECS, cache_dir=tmp_path, progress=False)
    assert calls == [3, 3, 3]  # only the new spec
    before = model_fingerprint(assistant)
    with torch.no_grad():
        next(assistant.model.parameters()).view(-1)[0] += 0.01
    assert model_fingerprint(assistant) != before
    extract(assistant, samples, SPECS, cache_dir=tmp_path, progress=False)
    assert calls == [3, 3, 3, 3, 3, 3]
    assert len(list(tmp_path.rglob("*.npy"))) == 6  # 3 specs x 2 model fingerprints
    assert not list(tmp_path.rglob("*.tmp"))


def test_model_fingerprint_covers_weights_alpha_and_survives_save_load(tmp_path):
    assistant = _assistant()
    fingerprint = model_fingerprint(assistant)
    assert fingerprint == model_fingerprint(assistant)
    assert fingerprint != model_fingerprint(_assistant(bottleneck=False))
    assert fingerprint != model_fingerprint(_assistant(seed=1))
    assistant.model.save_pretrained(tmp_path)
    assistant.processor.save_pretrained(tmp_path)
    assert model_fingerprint(Assistant.load(tmp_path, device="cpu")) == fingerprint
    from vittle.model import get_bottleneck

    get_bottleneck(assistant.model).inference_alpha = 0.0
    assert model_fingerprint(assistant) != fingerprint
    get_bottleneck(assistant.model).inference_alpha = None
    assert model_fingerprint(assistant) == fingerprint
    # an edit through .data moves no version counter: refresh=True rehashes
    next(assistant.model.parameters()).data[0] += 1.0
    assert model_fingerprint(assistant, refresh=True) != fingerprint


def test_data_fingerprint_covers_questions_order_and_seed(samples):
    base = data_fingerprint(samples)
    assert base == data_fingerprint([dict(s) for s in samples])
    assert base != data_fingerprint(samples[::-1])
    assert base != data_fingerprint(samples, seed=1)
    changed = [dict(samples[0], question="what colour is it?"), *samples[1:]]
    assert base != data_fingerprint(changed)


def test_extract_errors(samples, tmp_path):
    assistant = _assistant()
    with pytest.raises(ValueError, match="sample list is empty"):
        extract(assistant, [], ["clean"], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown perturbation 'nope'"):
        extract(assistant, samples, ["clean", "nope:3"], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no specs"):
        extract(assistant, samples, [], cache_dir=tmp_path)
    with pytest.raises(TypeError, match="list of spec strings"):
        extract(assistant, samples, "clean", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="other samples"):
        extract(assistant, samples, ["clean"], cache_dir=tmp_path, variants=Variants(samples[:1]))
    assert not list(tmp_path.rglob("*.npy"))


def test_env_cache_dir_and_corrupt_file_recomputed(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("VITTLE_CACHE_DIR", str(tmp_path / "env"))
    assistant = _assistant()
    calls = _count_embeds(assistant)
    first = extract(assistant, samples[:2], ["clean"], progress=False)["clean"]
    (path,) = (tmp_path / "env").rglob("*.npy")
    path.write_bytes(b"not an npy file")
    again = extract(assistant, samples[:2], ["clean"], progress=False)["clean"]
    assert calls == [2, 2]
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert np.load(path, allow_pickle=False).shape == (2, 64)


def test_extract_models_shares_variants(samples, tmp_path):
    variants = Variants(samples)
    assistants = {"baseline": _assistant(bottleneck=False), "vittle-f": _assistant()}
    result = extract_models(assistants, samples, ["clean", "char_typo:3"], cache_dir=tmp_path, progress=False,
                            variants=variants)
    assert list(result) == ["baseline", "vittle-f"]
    assert all(X.shape == (3, 64) for per_model in result.values() for X in per_model.values())
    assert not np.allclose(result["baseline"]["clean"], result["vittle-f"]["clean"])
    assert list(variants._questions) == ["char_typo:3"]  # one perturbed question set for both models
    with pytest.raises(ValueError, match="no models"):
        extract_models({}, samples, ["clean"], cache_dir=tmp_path)


def test_the_cache_is_bounded_least_recently_used_first_and_vittle_cache_reports_and_clears(tmp_path, monkeypatch, capsys):
    import os

    import numpy as np

    from vittle.analysis.cache_cli import main as cache_main
    from vittle.analysis.representations import cache_files, cache_limit_bytes, prune_cache

    root = tmp_path / "cache"
    paths = []
    for index in range(4):  # four files of 4,128 bytes (header + 1,000 float32), written a second apart
        path = root / f"model{index % 2}" / "data" / f"spec{index}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.zeros(1000, dtype=np.float32), allow_pickle=False)
        os.utime(path, (1_000 + index, 1_000 + index))
        paths.append(path)
    size = paths[0].stat().st_size
    os.utime(paths[0], (2_000, 2_000))  # the oldest file was read again: now the most recent
    assert cache_files(root) == [paths[1], paths[2], paths[3], paths[0]]
    assert prune_cache(root, max_bytes=2 * size, keep=[paths[1]]) == 2  # 1 is kept, so 2 and 3 go
    assert sorted(cache_files(root)) == sorted([paths[0], paths[1]])
    assert prune_cache(root, max_bytes=0) == 0  # 0: no limit
    monkeypatch.setenv("VITTLE_CACHE_MAX_MB", "-1")
    with pytest.raises(ValueError, match="VITTLE_CACHE_MAX_MB='-1' must be 0"):
        cache_limit_bytes()
    monkeypatch.setenv("VITTLE_CACHE_MAX_MB", "0.001")  # 1,048 bytes: less than one file
    assert cache_main(["info", "--cache-dir", str(root)]) == 0
    assert f"{root}: 2 embedding files" in capsys.readouterr().out
    assert cache_main(["prune", "--cache-dir", str(root)]) == 0
    assert "removed 2 files" in capsys.readouterr().out and not (root / "model1").exists()  # emptied folders go
    assert cache_main(["clear", "--cache-dir", str(root)]) == 0 and not root.exists()
    monkeypatch.setenv("VITTLE_CACHE_MAX_MB", "lots")
    assert cache_main(["info", "--cache-dir", str(root)]) == 2


def test_a_new_embedding_scans_the_cache_only_when_it_may_be_over_its_limit(tmp_path, monkeypatch):
    """A server writes one file per new setting: the cache is scanned (O(files)) when the bytes
    known from the last scan plus those written since pass the limit, or when that scan is old."""
    from vittle.analysis import representations as rep

    root = tmp_path / "cache"
    scans = []
    listed = rep.cache_files
    monkeypatch.setattr(rep, "cache_files", lambda folder=None: scans.append(folder) or listed(folder))
    now = [1_000.0]
    monkeypatch.setattr(rep.time, "monotonic", lambda: now[0])
    monkeypatch.setenv("VITTLE_CACHE_MAX_MB", str(10 * 4128 / 2**20))  # ten files of 4,128 bytes

    def write(index: int) -> int:
        path = root / "model" / f"spec{index}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.zeros(1000, dtype=np.float32), allow_pickle=False)
        os.utime(path, (1_000 + index, 1_000 + index))
        return rep.prune_if_due(root, path.stat().st_size, keep=[path])

    assert write(0) == 0 and len(scans) == 1  # nothing known yet: one scan
    assert [write(index) for index in range(1, 10)] == [0] * 9 and len(scans) == 1  # ten files: at the limit, not over
    assert write(10) == 1 and len(scans) == 2  # the eleventh passes it: scanned, the oldest file goes
    assert sorted(p.name for p in listed(root))[:2] == ["spec1.npy", "spec10.npy"] and len(listed(root)) == 10
    assert write(11) == 1 and len(scans) == 3  # still full: each new file makes room for itself
    monkeypatch.setenv("VITTLE_CACHE_MAX_MB", "1")
    assert write(12) == 0 and len(scans) == 3
    now[0] += rep.RESCAN_S  # another process may have written since: the next write scans again
    assert write(13) == 0 and len(scans) == 4
    monkeypatch.setenv("VITTLE_CACHE_MAX_MB", "0")  # no limit: never scanned
    assert write(14) == 0 and len(scans) == 4
