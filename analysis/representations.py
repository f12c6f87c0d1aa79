"""Layer-l query embeddings under perturbations, cached on disk.

    samples = load_samples("easyvqa", limit_images=100)
    embeddings = extract(assistant, samples, ["clean", "frost:3", "char_typo:3"])
    ShiftAnalysis.compute({"model": embeddings})   # how far they shift: vittle.analysis.shift

Each embedding is `Assistant.embed`'s row: the last input token's layer-l hidden state after
the bottleneck (the paper's representation analysis; docs/method.md). Extraction is cached as one `.npy` per
(model fingerprint, data fingerprint, spec) under `cache_dir` (default
`$VITTLE_CACHE_DIR`, else `~/.cache/vittle/representations`), laid out as
`<model>/<data>/<spec>-<hash>.npy`, so a second call with the same model, samples and spec
computes nothing. Files are written atomically and read with `allow_pickle=False`.

What the fingerprints cover:
- model: every state-dict tensor (parameters and persistent buffers: name, dtype, shape and
  raw bytes), the model config (minus what saving or loading rewrites: `_name_or_path`,
  `architectures`, `dtype`, ...), the bottleneck config and its effective inference alpha,
  the layer, the system prompt and the processor (image-processor settings, vocabulary, chat
  template), so a saved-and-reloaded model keeps its fingerprint. The weights digest is
  memoised per model object and reused while no tensor has been replaced or modified in
  place (torch's version counters); an edit through `tensor.data` bypasses those counters,
  so call `model_fingerprint(assistant, refresh=True)` after one. The first fingerprint of a
  model reads every weight once (a 7B model in bf16: ~14 GB, some tens of seconds).
- data: each sample's question, answer, image id and the bytes of its image file (the
  easy-vqa images are ~400 bytes; file digests are memoised per path, size and mtime), plus
  the `Variants` seed and `CACHE_VERSION`. The perturbation code itself is not hashed: bump
  `CACHE_VERSION` (or clear the cache) when a perturbation's implementation changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vittle.analysis.evaluate.runner import Variants
from vittle.analysis.perturb import CLEAN, parse_spec
from vittle.files import atomic_file, default_cache_dir
from vittle.model import get_bottleneck

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Part of the data fingerprint; bump it to invalidate every cached embedding."""
_CONFIG_IGNORED = {"_name_or_path", "architectures", "dtype", "torch_dtype", "transformers_version", "_commit_hash",
                   "_attn_implementation_autoset", "_attn_implementation_internal"}
_CHUNK_BYTES = 1 << 26  # tensors are hashed 64 MiB at a time, so a GPU model needs no full CPU copy
WEIGHTS_DIGEST_ATTR = "_vittle_weights_digest"
"""Where a model keeps its weights' digest with the signature it was computed for (the model
owns its memo; nothing is kept here)."""


CACHE_LIMIT_ENV = "VITTLE_CACHE_MAX_MB"
DEFAULT_CACHE_MB = 2048
"""The cache keeps at most this much (or $VITTLE_CACHE_MAX_MB); past it, the files least
recently read or written go first."""


def cache_limit_bytes() -> int:
    """The cache's size limit in bytes ($VITTLE_CACHE_MAX_MB, else DEFAULT_CACHE_MB); 0: no limit."""
    raw = os.environ.get(CACHE_LIMIT_ENV, "")
    try:
        megabytes = float(raw) if raw.strip() else DEFAULT_CACHE_MB
    except ValueError:
        raise ValueError(f"{CACHE_LIMIT_ENV}={raw!r} must be a number of megabytes (0: no limit)") from None
    if megabytes < 0:
        raise ValueError(f"{CACHE_LIMIT_ENV}={raw!r} must be 0 (no limit) or positive")
    return int(megabytes * 1024 * 1024)


def cache_files(folder: str | Path | None = None) -> list[Path]:
    """The cache's embedding files, least recently used first."""
    folder = Path(folder).expanduser() if folder is not None else default_cache_dir()
    if not folder.is_dir():
        return []
    files = [p for p in folder.rglob("*.npy") if p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime)


RESCAN_S = 600.0
"""`prune_if_due` counts the bytes this process writes between scans of the cache; it scans it
again at least this often (other processes may write to the same cache)."""
_sizes: dict[Path, tuple[int, float]] = {}  # cache root -> (bytes at the last scan plus bytes written since, scan time)
_sizes_lock = threading.Lock()


def _root(folder: str | Path | None) -> Path:
    return (Path(folder).expanduser() if folder is not None else default_cache_dir()).resolve()


def prune_if_due(folder: str | Path | None, written_bytes: int, keep: Sequence[Path] = ()) -> int:
    """`prune_cache` after this process wrote `written_bytes` to the cache, only when it may be
    over its limit: the cache's size is known from the last scan plus what was written since, and
    a scan (O(files)) runs when that passes the limit, or when the last one is `RESCAN_S` old.
    A long-running server embeds one reference set per new setting; each used to scan the
    whole cache. Returns how many files were deleted."""
    limit = cache_limit_bytes()
    if limit <= 0:
        return 0
    root = _root(folder)
    with _sizes_lock:
        known = _sizes.get(root)
        if known is not None and time.monotonic() - known[1] < RESCAN_S and known[0] + written_bytes <= limit:
            _sizes[root] = (known[0] + written_bytes, known[1])
            return 0
    return prune_cache(root, limit, keep)


def prune_cache(folder: str | Path | None = None, max_bytes: int | None = None, keep: Sequence[Path] = ()) -> int:
    """Delete the least recently used files until the cache holds at most `max_bytes` (default:
    `cache_limit_bytes()`; 0 keeps everything), never one in `keep`; emptied folders go too.
    Returns how many files were deleted."""
    limit = cache_limit_bytes() if max_bytes is None else max_bytes
    if limit <= 0:
        return 0
    scanned = time.monotonic()
    files = cache_files(folder)
    total = sum(p.stat().st_size for p in files)
    kept, removed = {Path(p).resolve() for p in keep}, 0
    for path in files:
        if total <= limit:
            break
        if path.resolve() in kept:
            continue
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        total -= size
        removed += 1
        parent = path.parent
        while parent != Path(folder or default_cache_dir()).expanduser() and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    with _sizes_lock:
        _sizes[_root(folder)] = (total, scanned)
    if removed:
        logger.info("embedding cache over %.0f MB: removed the %d least recently used files", limit / 2**20, removed)
    return removed


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
    return h.hexdigest()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, default=str).encode()


def _weights_digest(model: Any, refresh: bool) -> str:
    """blake2b over every state-dict tensor (name, dtype, shape, raw bytes), memoised on the model
    (recomputed when a tensor is replaced, modified in place or moved)."""
    state = model.state_dict()
    signature = tuple((name, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype), str(t.device))
                      for name, t in state.items())
    memo = getattr(model, WEIGHTS_DIGEST_ATTR, None)
    if memo is not None and memo[0] == signature and not refresh:
        return memo[1]
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(state):
        tensor = state[name].detach()
        h.update(_json_bytes([name, str(tensor.dtype), list(tensor.shape)]))
        raw = tensor.contiguous().reshape(-1).view(torch.uint8)
        for start in range(0, raw.numel(), _CHUNK_BYTES):
            h.update(raw[start : start + _CHUNK_BYTES].cpu().numpy())
    setattr(model, WEIGHTS_DIGEST_ATTR, (signature, h.hexdigest()))
    return h.hexdigest()


def _config_without_bookkeeping(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: _config_without_bookkeeping(v) for k, v in config.items() if k not in _CONFIG_IGNORED}
    return config


def _processor_digest(processor: Any) -> str:
    tokenizer = processor.tokenizer
    image_settings = processor.image_processor.to_dict() if getattr(processor, "image_processor", None) else None
    return _digest(_json_bytes(sorted(tokenizer.get_vocab().items())),
                   _json_bytes([getattr(tokenizer, "chat_template", None), image_settings]))


def model_fingerprint(assistant: Any, refresh: bool = False) -> str:
    """A 32-hex-digit hash of everything that decides `assistant.embed`'s output: weights,
    model and bottleneck config, inference alpha, layer, system prompt and processor.
    `refresh=True` rehashes the weights even if no version counter moved."""
    model = assistant.model
    bottleneck = get_bottleneck(model)
    header = {
        "weights": _weights_digest(model, refresh),
        "config": _config_without_bookkeeping(model.config.to_dict()),
        "bottleneck": bottleneck.config.to_dict() if bottleneck is not None else None,
        "alpha": bottleneck.alpha if bottleneck is not None else None,
        "layer": assistant.layer,
        "system": getattr(assistant, "system", None),
        "processor": _processor_digest(assistant.processor),
    }
    return _digest(_json_bytes(header))


def _file_digest(path: str | os.PathLike) -> str:
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _file_content_digest(str(resolved), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _file_content_digest(path: str, size: int, mtime_ns: int) -> str:
    """A file's digest, for this size and modification time (a changed file is read again)."""
    return _digest(Path(path).read_bytes())


def data_fingerprint(samples: Sequence[Mapping[str, Any]], seed: int = 0) -> str:
    """A 32-hex-digit hash of the samples (in order: question, answer, image id, image file
    bytes) and the `Variants` seed."""
    h = hashlib.blake2b(digest_size=16)
    h.update(_json_bytes({"cache_version": CACHE_VERSION, "seed": seed, "n": len(samples)}))
    for sample in samples:
        path = sample.get("image_path")
        image = _file_digest(path) if path is not None else None
        h.update(_json_bytes([sample.get("question"), sample.get("answer"), sample.get("image_id"), image]))
    return h.hexdigest()


def _spec_file(folder: Path, spec: str) -> Path:
    canonical = str(parse_spec(spec))
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", canonical)
    return folder / f"{safe}-{_digest(canonical.encode())[:8]}.npy"


def _read_cached(path: Path, rows: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
        os.utime(path)  # recently used: the last to be pruned
    except (OSError, ValueError, EOFError) as err:
        logger.warning("unreadable cache file %s (%s); recomputing", path, err)
        return None
    if array.ndim != 2 or array.shape[0] != rows or array.dtype != np.float32:
        logger.warning("cache file %s holds %s %s, expected (%d, d) float32; recomputing", path, array.dtype, array.shape, rows)
        return None
    return array


def _check_inputs(samples: Sequence[Mapping[str, Any]], specs: Sequence[str], variants: Variants | None) -> list[str]:
    if len(samples) == 0:
        raise ValueError("no samples to embed: the sample list is empty")
    if isinstance(specs, str):
        raise TypeError(f"specs must be a list of spec strings, got the string {specs!r}")
    specs = list(dict.fromkeys(specs))
    if not specs:
        raise ValueError(f"no specs given; pass e.g. [{CLEAN!r}, 'frost:3']")
    for spec in specs:
        parse_spec(spec)  # raises ValueError naming the unknown perturbation or level
    if variants is not None and variants.samples != list(samples):
        raise ValueError("the Variants object was made for other samples")
    return specs


def cache_key(assistant: Any, samples: Sequence[Mapping[str, Any]], seed: int = 0) -> str:
    """The cache subfolder of a model's embeddings of `samples`: model fingerprint / data fingerprint."""
    return f"{model_fingerprint(assistant)}/{data_fingerprint(samples, seed)}"


def extract(assistant: Any, samples: Sequence[Mapping[str, Any]], specs: Sequence[str], cache_dir: str | Path | None = None,
            batch_size: int = 32, progress: bool = True, variants: Variants | None = None,
            desc: str = "embedding", key: str | None = None) -> dict[str, np.ndarray]:
    """{spec: (N, d) float32} layer-l embeddings of every sample's query under each spec, in
    sample order; cached specs are read from disk, the others embedded and stored.

    `key` is the cache subfolder `cache_key(assistant, samples, seed)` when the caller has it
    already (a server asking for many specs of the same frozen models and samples); by
    default it is computed here, which hashes the model's state dict and the sample files."""
    specs = _check_inputs(samples, specs, variants)
    variants = variants if variants is not None else Variants(samples)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / (key or cache_key(assistant, samples, variants.seed))
    result: dict[str, np.ndarray] = {}
    written: list[Path] = []
    bar = tqdm(specs, desc=desc, unit="spec", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec)
        path = _spec_file(folder, spec)
        cached = _read_cached(path, len(samples))
        if cached is None:
            images, questions = variants.get(spec)
            cached = np.asarray(assistant.embed(images, questions, batch_size=batch_size, progress=False), dtype=np.float32)
            with atomic_file(path) as handle:  # a killed run never leaves half a file
                np.save(handle, cached, allow_pickle=False)
            logger.info("embedded %d queries for %s -> %s", len(samples), spec, path)
            written.append(path)
        result[spec] = cached
    if written:
        prune_if_due(root, sum(path.stat().st_size for path in written), keep=[_spec_file(folder, spec) for spec in specs])
    return result


def extract_models(assistants: Mapping[str, Any], samples: Sequence[Mapping[str, Any]], specs: Sequence[str],
                   cache_dir: str | Path | None = None, batch_size: int = 32, progress: bool = True,
                   variants: Variants | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{model name: {spec: (N, d)}} for several models; perturbed inputs are made once, in one
    shared `Variants`."""
    if not assistants:
        raise ValueError("no models given")
    specs = _check_inputs(samples, specs, variants)
    variants = variants if variants is not None else Variants(samples)
    return {name: extract(assistant, samples, specs, cache_dir, batch_size, progress, variants, desc=f"embedding {name}")
            for name, assistant in assistants.items()}
