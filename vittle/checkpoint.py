"""Loading checkpoints: a plain model (baseline) or one with its Vittle bottleneck, of any family
`vittle.families` supports (the class comes from the config's model type).

`model.save_pretrained(path)` already writes everything (see vittle.model); this module
reads it back. Only safetensors weights are read: never pickles.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from huggingface_hub import snapshot_download
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, BitsAndBytesConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

from vittle.config import BottleneckConfig
from vittle.families import UnsupportedFamilyError, model_class
from vittle.model import BOTTLENECK_ATTR, CONFIG_KEY, attach_bottleneck
from vittle.plugins import PluginError, register_model_types
from vittle.reconstruction import HEAD_ATTR

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded, with the reason and the path."""


def resolve_checkpoint(path_or_id: str | Path) -> Path:
    """A local folder as is; otherwise a Hugging Face hub id, fetched (configs, tokenizer and
    safetensors only) into the local cache. The model types its config.json names that
    transformers does not know are registered first, from their `vittle.model_types` plugin
    (e.g. the toy models' EfficientNet tower), so that AutoConfig and AutoModel read it."""
    folder = _locate(path_or_id)
    try:
        register_model_types(folder)
    except PluginError as err:
        raise CheckpointError(f"cannot load the model in {folder}: {err}") from err
    return folder


def _locate(path_or_id: str | Path) -> Path:
    path = Path(path_or_id)
    if path.is_dir():
        return path
    if path.exists() or str(path_or_id).startswith((".", "/", "~")) or str(path_or_id).count("/") != 1:
        raise CheckpointError(f"checkpoint folder not found: {path_or_id}")
    try:
        return Path(snapshot_download(str(path_or_id), allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as err:  # network, auth, missing repo: all end the same way for the user
        raise CheckpointError(f"checkpoint folder not found: {path_or_id}, and fetching it as a Hugging Face hub id failed: {err}") from err


def weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / shard for shard in shards]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    pickles = sorted(p.name for p in (*folder.glob("*.bin"), *folder.glob("*.pt")) if not _is_trainer_state(p))
    if pickles:
        raise CheckpointError(f"{folder} holds pickle weights ({', '.join(pickles)}); only safetensors are loaded. Convert them first.")
    state = sorted(p.name for p in folder.iterdir() if _is_trainer_state(p)) if folder.is_dir() else []
    if state:
        raise CheckpointError(f"{folder} has the trainer's state ({', '.join(state)}) but no model.safetensors: "
                              "the save was interrupted before the weights were written")
    raise CheckpointError(f"{folder} has no model.safetensors (or model.safetensors.index.json)")


TRAINER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin")
"""What `transformers.Trainer` writes next to the weights of a checkpoint (plus rng_state*.pth)."""


def _is_trainer_state(path: Path) -> bool:
    return path.name in TRAINER_STATE_FILES or (path.name.startswith("rng_state") and path.suffix == ".pth")


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why a Trainer checkpoint folder cannot be resumed from (a missing or damaged file,
    named), or None if it looks intact. Cheap: reads headers, not tensors."""
    folder = Path(folder)
    state = folder / "trainer_state.json"
    if not state.is_file():
        return "trainer_state.json is missing"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        return f"trainer_state.json is damaged ({err})"
    if (folder / "adapter_model.safetensors").is_file():  # a LoRA run (vittle.lora): adapters + fully trained weights
        files = [folder / "adapter_model.safetensors", folder / "vittle_trained.safetensors"]
    else:
        try:
            files = weight_files(folder)
        except (CheckpointError, ValueError, KeyError) as err:
            return str(err)
    for file in files:
        if not file.is_file():
            return f"{file.name} is missing"
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as err:
            return f"{file.name} is damaged or truncated ({err})"
    for file in sorted(folder.iterdir()):
        if _is_trainer_state(file) and file.suffix in (".pt", ".pth"):
            try:
                zipfile.ZipFile(file).close()  # torch.save writes a zip archive; a truncated one has no directory
            except (zipfile.BadZipFile, OSError) as err:
                return f"{file.name} is damaged or truncated ({err})"
    return None


def read_prefixed(folder: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint folder whose names start with `prefix`, the prefix removed."""
    return _read_prefixed(weight_files(Path(folder)), prefix)


def _read_prefixed(files: list[Path], prefix: str) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    if key.startswith(prefix):
                        tensors[key[len(prefix) :]] = handle.get_tensor(key)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{file} is truncated or corrupted: {err}") from err
    return tensors


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers reports the bottleneck's weights as unexpected; we load them ourselves."""
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def quantization_config(quantize: str, compute_dtype: torch.dtype = torch.bfloat16) -> Any:
    """transformers' BitsAndBytesConfig for "8bit" or "4bit" (NF4, computing in
    `compute_dtype`); a clear error without bitsandbytes or without a CUDA GPU."""
    if quantize not in ("8bit", "4bit"):
        raise ValueError(f"quantize={quantize!r}; choose 8bit or 4bit")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(f"{quantize} weights need bitsandbytes and a CUDA GPU: pip install 'vittle[quant]'")
    if not torch.cuda.is_available():
        raise ValueError(f"{quantize} weights (bitsandbytes) need a CUDA GPU; none is visible here")
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True)


def load_pretrained(path_or_id: str | Path, device: str | torch.device | None = None, dtype: str | torch.dtype = "auto", **kwargs: Any) -> PreTrainedModel:
    """Load a checkpoint of a supported family (LLaVA-1.5, Qwen2.5-VL: `vittle.families`); if
    its config declares a Vittle bottleneck, attach it and load its weights. Extra keyword
    arguments go to `from_pretrained` (e.g. device_map)."""
    if isinstance(dtype, str) and dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed; choose one of auto, {', '.join(DTYPES)}")
    folder = resolve_checkpoint(path_or_id)
    files = weight_files(folder)
    torch_dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    try:
        cls = model_class(AutoConfig.from_pretrained(folder))
    except (UnsupportedFamilyError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot load the model in {folder}: {err}") from err
    try:
        with _quiet_transformers():
            loaded = cls.from_pretrained(folder, dtype=torch_dtype, output_loading_info=True, **kwargs)
        model, info = cast(tuple[PreTrainedModel, dict[str, Any]], loaded)
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"cannot load the model in {folder}: {err}") from err
    foreign = [key for key in info.get("unexpected_keys", []) if not key.startswith((BOTTLENECK_ATTR + ".", HEAD_ATTR + "."))]
    if foreign:
        logger.warning("%s: %d weights not used by the model, e.g. %s", folder, len(foreign), foreign[:3])
    if info.get("missing_keys"):
        raise CheckpointError(f"{folder} lacks weights the model needs, e.g. {sorted(info['missing_keys'])[:5]}")
    settings = getattr(model.config, CONFIG_KEY, None)
    if settings:
        _load_bottleneck(model, folder, files, BottleneckConfig.from_dict(settings))
    if device is not None:
        model.to(device)  # type: ignore[arg-type]  # transformers' decorator hides the signature
    return model.eval()


def _load_bottleneck(model: PreTrainedModel, folder: Path, files: list[Path], config: BottleneckConfig) -> None:
    delattr(model.config, CONFIG_KEY)  # attach_bottleneck writes it back
    attach_bottleneck(model, config, allow_last_layer=True)  # trained that way: load it, with the warning
    bottleneck = getattr(model, BOTTLENECK_ATTR)
    state = _read_prefixed(files, BOTTLENECK_ATTR + ".")
    expected = set(bottleneck.state_dict())
    if not expected:  # the noise control: nothing to load
        if state:
            raise CheckpointError(f"{folder}: a noise-only bottleneck has no weights, but the checkpoint holds {sorted(state)[:3]}")
        return
    if not state:
        raise CheckpointError(
            f"{folder}/config.json declares a Vittle bottleneck (config.{CONFIG_KEY}) but the checkpoint has no "
            f"'{BOTTLENECK_ATTR}.*' weights: it was saved without them or is incomplete"
        )
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(f"{folder}: bottleneck weights do not match its config (missing {missing}, unexpected {unexpected})")
    reference = next(bottleneck.parameters())
    bottleneck.load_state_dict({k: v.to(reference.dtype) for k, v in state.items()})
