"""Parameter counts and one-GPU training memory per model family: the "Memory, one GPU" table of
docs/models.md.

    python benchmarks/family_memory.py [--seq 2048] [--out benchmarks/results/family_memory.json]

Each family's full-size model is built on the meta device (nothing allocated, nothing
downloaded) from its own transformers config class with the published sizes of its public
checkpoint (`PUBLISHED`, from the checkpoints' config.json files; where a config.json leaves a
key out, transformers' default is the checkpoint's value). The parameters are counted by part:
the language model (decoder and LM head; tied embeddings once), the projector with what is
trained with it (`vittle.families.projector_paths`: Qwen3-VL's deepstack mergers, LLaVA-NeXT's
image_newline), the rest (the vision tower: frozen), LoRA adapters of rank 64 on the language model's linear layers (the
modules `vittle.lora.apply_lora` targets) and the Vittle bottleneck (built by vittle at the
family's hidden size).

Memory is benchmarks/scaling_memory.py's model (`one_gpu_states_gib`, `activations_gib`):
16 B per trained parameter (bf16 weight and gradient, fp32 master and Adam moments), 2 B per
frozen one, NF4 (0.53 B) for the language model's linear layers under QLoRA; activations with
gradient checkpointing at a padded length of `--seq` tokens. A set-up "fits" a GPU when its
estimate plus `MARGIN_GIB` (CUDA context, allocator slack) is at most the GPU's memory.
Estimates, not measurements: they leave out the frozen vision tower's forward activations
(large for high-resolution Qwen and LLaVA-NeXT images), the data loader, fragmentation, and
bitsandbytes quantizing the vision tower as well (which would lower QLoRA's figure).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import transformers
from scaling_memory import activations_gib, bottleneck_params, one_gpu_states_gib  # benchmarks/ is on sys.path as a script
from torch import nn

from vittle.config import LoraConfig, default_layer
from vittle.families import family_of, in_projector, language_model, lm_head, model_class, projector_paths

CLIP_L_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
              "image_size": 336, "patch_size": 14, "projection_dim": 768}
"""CLIP ViT-L/14-336, the vision tower of LLaVA-1.5 and LLaVA-NeXT."""
VICUNA_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32064}
"""Vicuna v1.5 7B as the llava-hf checkpoints hold it (32,000 tokens + 64 added for padding)."""

PUBLISHED: dict[str, dict[str, Any]] = {
    "Qwen2.5-VL-7B": {
        "hub": "Qwen/Qwen2.5-VL-7B-Instruct", "model_type": "qwen2_5_vl",
        "config": {
            "text_config": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                            "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False},
            "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
                              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
                              "fullatt_block_indexes": [7, 15, 23, 31]},
            "tie_word_embeddings": False,
        },
    },
    "Qwen3-VL-8B": {
        "hub": "Qwen/Qwen3-VL-8B-Instruct", "model_type": "qwen3_vl",
        "config": {
            "text_config": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
                            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": False},
            "vision_config": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16, "out_hidden_size": 4096,
                              "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 2304,
                              "deepstack_visual_indexes": [8, 16, 24]},
            "tie_word_embeddings": False,
        },
    },
    "Gemma-3-4B": {
        "hub": "google/gemma-3-4b-it", "model_type": "gemma3",
        "config": {
            "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34, "num_attention_heads": 8,
                            "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 262208, "sliding_window": 1024},
            "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                              "image_size": 896, "patch_size": 14, "vision_use_head": False},
            "mm_tokens_per_image": 256,
        },
    },
    "LLaVA-NeXT-vicuna-7B": {
        "hub": "llava-hf/llava-v1.6-vicuna-7b-hf", "model_type": "llava_next",
        "config": {"text_config": VICUNA_7B, "vision_config": CLIP_L_336,
                   "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]},
    },
    "LLaVA-1.5-7B": {
        "hub": "llava-hf/llava-1.5-7b-hf", "model_type": "llava",
        "config": {"text_config": VICUNA_7B, "vision_config": CLIP_L_336},
    },
    "LLaVA-1.5-13B": {
        "hub": "llava-hf/llava-1.5-13b-hf", "model_type": "llava",
        "config": {"text_config": {**VICUNA_7B, "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
                                   "num_attention_heads": 40, "num_key_value_heads": 40},
                   "vision_config": CLIP_L_336},
    },
}
"""Published sizes of each family's public checkpoint (its config.json), as config-class kwargs."""

GPUS_GIB = {"24GB": 24, "80GB": 80}
MARGIN_GIB = 2.0
"""CUDA context and allocator slack added to every estimate before comparing with a GPU."""
LORA_RANK = 64
BATCHES = (1, 4)
SETUPS = ("full", "lora", "qlora")


def published_config(name: str) -> transformers.PretrainedConfig:
    """The config of a published checkpoint, built from its family's config class."""
    entry = PUBLISHED[name]
    return transformers.AutoConfig.for_model(entry["model_type"], **entry["config"])


def build_meta(config: transformers.PretrainedConfig) -> nn.Module:
    """The family's model for `config` on the meta device: shapes only, no memory."""
    with torch.device("meta"):
        return model_class(config)(config)


def _numel(module: nn.Module, seen: set[int]) -> int:
    """Parameters of `module` not counted yet (tied weights count once)."""
    total = 0
    for param in module.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            total += param.numel()
    return total


def lora_params(model: nn.Module, rank: int, modules: list[str] | None = None) -> int:
    """Adapter parameters of rank `rank` on the language model's linear layers named in `modules`
    (LoraConfig's default: the seven projections), as `vittle.lora.apply_lora` places them."""
    modules = modules or LoraConfig(r=rank).modules
    return sum(rank * (m.in_features + m.out_features) for name, m in language_model(model).named_modules()
               if isinstance(m, nn.Linear) and name.split(".")[-1] in modules)


def count_params(model: nn.Module, rank: int = LORA_RANK) -> dict[str, int]:
    """Parameters by part: llm (decoder + LM head), embeddings (input and output, counted once
    when tied), projector (with its extras), frozen (everything else: vision tower and the like), lora, bottleneck,
    and total (the model's own parameters, bottleneck and adapters excluded)."""
    seen: set[int] = set()
    llm = _numel(language_model(model), seen) + _numel(lm_head(model), seen)
    embedding_params = {id(p) for p in (model.get_input_embeddings().weight, lm_head(model).weight)}
    paths = projector_paths(model)  # the projector and the family's extras, trained with it
    proj = 0
    for name, param in model.named_parameters():
        if in_projector(name, paths) and id(param) not in seen:
            seen.add(id(param))
            proj += param.numel()
    frozen = _numel(model, seen)
    text = model.config.get_text_config()
    return {"llm": llm, "embeddings": sum(p.numel() for p in model.parameters() if id(p) in embedding_params),
            "projector": proj, "frozen": frozen, f"lora_r{rank}": lora_params(model, rank),
            "bottleneck": int(bottleneck_params({"hidden": text.hidden_size})), "total": llm + proj + frozen}


def shape_of(config: transformers.PretrainedConfig) -> dict[str, int]:
    """The language model's sizes in scaling_memory's terms."""
    text = config.get_text_config()
    return {"hidden": text.hidden_size, "layers": text.num_hidden_layers, "ffn": text.intermediate_size, "vocab": text.vocab_size}


def estimate(name: str, seq: int) -> dict[str, Any]:
    config = published_config(name)
    model = build_meta(config)
    params = count_params(model)
    shape = shape_of(config)
    states = one_gpu_states_gib(params["llm"], params["embeddings"], params["frozen"], params["projector"] + params["bottleneck"],
                                params[f"lora_r{LORA_RANK}"])
    activations = {batch: activations_gib(shape, batch, seq) for batch in BATCHES}
    total = {f"{setup}, batch {batch}": states[setup] + activations[batch] for setup in SETUPS for batch in BATCHES}
    fits = {gpu: {key: value + MARGIN_GIB <= size for key, value in total.items()} for gpu, size in GPUS_GIB.items()}
    return {"hub": PUBLISHED[name]["hub"], "family": family_of(config).name, "shape": shape,
            "default_layer": default_layer(shape["layers"]), "params": params,
            "states_gib": states, "activations_gib": {f"batch {b}": v for b, v in activations.items()},
            "total_gib": total, "fits": fits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq", type=int, default=2048, help="padded sequence length of a batch")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "family_memory.json")
    args = parser.parse_args(argv)
    result = {"assumptions": {"seq": args.seq, "batches": list(BATCHES), "lora_rank": LORA_RANK, "gradient_checkpointing": True,
                              "bytes_per_trained_param": 16, "bytes_per_frozen_param": 2, "nf4_bytes": 0.53,
                              "margin_gib": MARGIN_GIB, "gpus_gib": GPUS_GIB, "vision_tower": "frozen",
                              "kind": "estimates from parameter counts, not measurements"},
              "models": {name: estimate(name, args.seq) for name in PUBLISHED}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, model in result["models"].items():
        fits = {gpu: [k for k, ok in v.items() if ok] for gpu, v in model["fits"].items()}
        print(f"{name}: {model['params']['total'] / 1e9:.2f}B,", {k: round(v, 1) for k, v in model["total_gib"].items()}, fits)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
