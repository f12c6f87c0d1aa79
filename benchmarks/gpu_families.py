"""GPU check of two families at full size: LoRA and full fine-tuning through `vittle.trainer.train`,
an answer from `vittle.inference.Assistant`, the bottleneck's step-time cost and peak memory.

    python benchmarks/gpu_families.py                 # on an NVIDIA H100 / H200: about 5 minutes
    python benchmarks/gpu_families.py --tiny          # tiny configs on the CPU, 3 steps: a few minutes

For Qwen2.5-VL-7B and LLaVA-1.5-7B shapes (the published sizes of benchmarks/family_memory.py's
`PUBLISHED`: language model and vision tower), each built from its family's config class in
bf16 with random weights (no internet is needed: the tokenizer and the processor are built
locally, as in the tests, with the image sizes of the real processors: 336 px for LLaVA, 576
image tokens; 448 px for Qwen, 256 image tokens), the script

1. writes a synthetic coloured-shapes dataset and the model to a temporary folder, and trains
   20 optimizer steps with LoRA (r 64) and 20 with full fine-tuning, each through
   `train(load_recipe("tiny-shapes", overrides))` with `model.init` the saved folder, bf16,
   gradient checkpointing, batch 4. Full fine-tuning at 7B: AdamW's 16 B per trained parameter
   for every weight (over 100 GB) does not fit one GPU, so it trains the decoder's top quarter
   (`FULL_TRAINED`) with the projector, LM head and bottleneck; LoRA adapts every layer;
2. answers a batch of 4 questions with `Assistant` loaded from each trained output folder;
3. times training steps of one model with the bottleneck attached and detached, on the same
   batch, interleaved (median of repeats), for the LoRA and the full set-up, and reports the
   ratio (with / without) and `torch.cuda.max_memory_allocated` of each run.

The JSON goes to benchmarks/results/gpu_families_<device>.json, with the device named. Time on
an H100, estimated (not measured yet): 6-8 minutes, most of it writing and reading the 16 GB
checkpoints (each family's start model, one output at a time: at most about 35 GB of disk);
`--families llava` or `--steps 10` shortens it. `--tiny` runs the same code at tiny sizes for
3 steps (tests/vittle/test_gpu_families.py).

Long file: the two families' builders, the two training set-ups, the paired timing and the
report belong to one device session's script, which must run alone on a machine without the
repository's tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from family_memory import PUBLISHED  # benchmarks/ is on sys.path as a script
from overhead import time_call

from vittle.config import BottleneckConfig
from vittle.data import ConversationCollator, ConversationDataset
from vittle.families import family_of
from vittle.inference import Assistant
from vittle.model import attach_bottleneck, detach_bottleneck, get_bottleneck
from vittle.objective import vittle_loss
from vittle.settings import load_recipe
from vittle.toy.shapes import make_shapes_dataset
from vittle.trainer import train

FAMILIES = {"qwen2_5_vl": "Qwen2.5-VL-7B", "llava": "LLaVA-1.5-7B"}
"""The families checked and the published sizes each is built at."""
TINY_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2}
TINY_VISION = {"qwen2_5_vl": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "fullatt_block_indexes": [1]},
               "llava": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "projection_dim": 32}}
IMAGE_PX = {"qwen2_5_vl": 448, "llava": 336}
TINY_PX = 112
"""--tiny: smaller images (64 LLaVA image tokens, 16 Qwen ones) and the tokenizer's own vocabulary."""
FULL_TRAINED = 0.25
"""Full fine-tuning at 7B trains the decoder's top quarter (and the projector, LM head and
bottleneck): AdamW's 16 B per parameter for all of a 7B model is over 100 GB."""


def _processor(family: str, px: int) -> Any:
    """A local processor at the real image sizes: the tests' tokenizer, the family's image processor."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor, Qwen2VLImageProcessorPil

    if family == "llava":
        from vittle.toy.tiny import build_tiny_tokenizer

        return LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": px}, crop_size={"height": px, "width": px}),
                              tokenizer=build_tiny_tokenizer(), patch_size=14, vision_feature_select_strategy="default",
                              image_token="<image>", num_additional_image_tokens=1)
    from vittle.family_inputs import Qwen2_5_VLImageProcessor
    from vittle.toy.byte_bpe import chatml_tokenizer  # offline, trained here

    image = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2,
                                     size={"shortest_edge": 56 * 56, "longest_edge": px * px})
    return Qwen2_5_VLImageProcessor(image, chatml_tokenizer())


def build(family: str, tiny: bool, device: str, dtype: torch.dtype) -> tuple[torch.nn.Module, Any]:
    """The family's model at published (or tiny) sizes with random weights, and its processor."""
    import transformers

    processor = _processor(family, TINY_PX if tiny else IMAGE_PX[family])
    tokenizer = processor.tokenizer
    published = PUBLISHED[FAMILIES[family]]["config"]
    text = dict(published["text_config"], **(TINY_TEXT if tiny else {}))
    text.update(vocab_size=len(tokenizer) if tiny else max(len(tokenizer), text["vocab_size"]), eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, max_position_embeddings=4096)
    vision = dict(published["vision_config"], **(TINY_VISION[family] if tiny else {}))
    ids = tokenizer.convert_tokens_to_ids
    if family == "llava":
        text.update(bos_token_id=tokenizer.bos_token_id)
        vision.update(image_size=TINY_PX if tiny else IMAGE_PX[family], patch_size=14)
        config = transformers.LlavaConfig(text_config=text, vision_config=vision, image_token_id=ids("<image>"),
                                          vision_feature_select_strategy="default", vision_feature_layer=-2)
    else:
        head_dim = text["hidden_size"] // text["num_attention_heads"]
        section = [head_dim // 4, (head_dim // 2 - head_dim // 4) // 2, head_dim // 2 - head_dim // 4 - (head_dim // 2 - head_dim // 4) // 2]
        text.update(bos_token_id=None, rope_parameters={"rope_type": "default", "mrope_section": section, "rope_theta": 1e6})
        vision.update(out_hidden_size=text["hidden_size"], patch_size=14)
        config = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                                               video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                                               vision_end_token_id=ids("<|vision_end|>"))
    torch.manual_seed(0)
    with torch.device(device):
        model = getattr(transformers, family_of(config).model_class)._from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = text.get("bos_token_id")
    return model, processor


def _peak(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 1024 ** 3 if device.startswith("cuda") else None


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def train_run(start: Path, data: Path, out: Path, steps: int, lora: bool, tiny: bool, device: str) -> dict[str, Any]:
    """`steps` optimizer steps of the tiny-shapes recipe from the saved model; peak memory, answers."""
    overrides = [f"model.init={start}", f"data.path={data}", f"train.output_dir={out}", "data.synthetic=", "data.max_length=1024",
                 f"train.max_steps={steps}", "train.batch_size=4", "train.save_steps=100000", "train.logging_steps=1",
                 "train.lr=1e-5", "train.warmup_ratio=0", "train.save_total_limit=1",
                 f"train.bf16={not tiny}", f"train.gradient_checkpointing={not tiny}", f"model.dtype={'float32' if tiny else 'bfloat16'}"]
    if lora:
        overrides.append("lora.r=64")
    _reset_peak(device)
    began = time.perf_counter()
    result = train(load_recipe("tiny-shapes", overrides))
    seconds = time.perf_counter() - began
    losses = [e for e in result["log_history"] if "loss" in e]
    peak = _peak(device)
    del result
    assistant = Assistant.load(out, device=device)
    samples = json.loads(data.read_text())[:4]
    images = [str(data.parent / s["image"]) for s in samples]
    answers = assistant.answer_batch(images, ["What colour is the shape?"] * 4, max_new_tokens=8)
    del assistant
    shutil.rmtree(out, ignore_errors=True)  # a 7B output is 16 GB: keep one on disk at a time
    return {"steps": len(losses), "seconds": seconds, "loss_first": losses[0]["loss"], "loss_last": losses[-1]["loss"],
            "kl_v_last": losses[-1].get("kl_v"), "alpha_last": losses[-1].get("alpha"), "peak_memory_gib": peak,
            "answers": answers}


def step_ratio(model: torch.nn.Module, processor: Any, data: Path, lora: bool, repeats: int, device: str) -> dict[str, Any]:
    """Training-step time of one model with the bottleneck attached and detached, same batch."""
    dataset = ConversationDataset(data, processor, max_length=1024)
    batch = ConversationCollator(processor.tokenizer.pad_token_id)([dataset[i] for i in range(4)])
    dtype = next(model.parameters()).dtype
    batch = {k: v.to(device, dtype=dtype if v.is_floating_point() else None) for k, v in batch.items()}
    attach_bottleneck(model, BottleneckConfig())
    get_bottleneck(model).train_alpha = 0.25  # mid-training: the sampling path runs
    if lora:
        from vittle.config import LoraConfig
        from vittle.lora import apply_lora

        model = apply_lora(model, LoraConfig(r=64))
    else:
        _train_top_layers(model)
    if device.startswith("cuda"):
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model.train()
    optimizer = torch.optim.AdamW([p for n, p in model.named_parameters() if p.requires_grad and "vittle_bottleneck" not in n], lr=1e-6)
    base = model.get_base_model() if lora else model
    _bottleneck_group(optimizer, base)

    def step() -> None:
        loss, _ = vittle_loss(base, model(**batch), batch.get("labels"), batch.get("attention_mask"))  # CE alone without a bottleneck
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    bottleneck = get_bottleneck(base)
    timings: dict[str, list[float]] = {"with": [], "without": []}
    _reset_peak(device)
    for index in range(repeats + 1):
        for name in ("with", "without"):
            if name == "without":
                detach_bottleneck(base)
            elif get_bottleneck(base) is None:
                _reattach(base, bottleneck)
                _bottleneck_group(optimizer, base)  # the optimizer steps the attached module, as in training
            seconds = time_call(step, device)
            if index:  # the first round warms up
                timings[name].append(seconds)
    _reattach(base, bottleneck)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    return {"sequence_length": int(batch["input_ids"].shape[1]), "batch_size": 4, "repeats": repeats,
            "median_s": medians, "ratio": medians["with"] / medians["without"], "peak_memory_gib": _peak(device)}


def _bottleneck_group(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> None:
    """The attached bottleneck's parameters as the optimizer's own group, replacing (and freeing
    the state of) a detached one's."""
    for group in [g for g in optimizer.param_groups if g.get("bottleneck")]:
        for param in group["params"]:
            optimizer.state.pop(param, None)
        optimizer.param_groups.remove(group)
    module = get_bottleneck(model)
    if module is not None:
        optimizer.add_param_group({"params": [p for p in module.parameters() if p.requires_grad], "bottleneck": True})


def _reattach(model: torch.nn.Module, bottleneck: torch.nn.Module) -> None:
    """Attach `bottleneck` (the same trained module) again after `detach_bottleneck`."""
    attach_bottleneck(model, bottleneck.config)
    get_bottleneck(model).load_state_dict(bottleneck.state_dict())
    get_bottleneck(model).train_alpha = bottleneck.train_alpha
    get_bottleneck(model).requires_grad_(True)


def _train_top_layers(model: torch.nn.Module) -> None:
    from vittle.families import decoder_layers, lm_head, train_projector

    model.requires_grad_(False)
    layers = decoder_layers(model)
    for layer in list(layers)[int(len(layers) * (1 - FULL_TRAINED)):]:
        layer.requires_grad_(True)
    train_projector(model)
    for module in (lm_head(model), get_bottleneck(model)):
        module.requires_grad_(True)


def run_family(family: str, tiny: bool, steps: int, repeats: int, device: str, work: Path) -> dict[str, Any]:
    dtype = torch.float32 if tiny else torch.bfloat16
    model, processor = build(family, tiny, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    data = make_shapes_dataset(work / f"{family}-data" / "train.json", 16, seed=0, size=TINY_PX if tiny else IMAGE_PX[family])
    start = work / f"{family}-start"
    model.save_pretrained(start)
    processor.save_pretrained(start)
    if not tiny:  # full fine-tuning of every weight does not fit: train the top layers (FULL_TRAINED)
        full_layers = int(model.config.get_text_config().num_hidden_layers * FULL_TRAINED)
    else:
        full_layers = model.config.get_text_config().num_hidden_layers
    del model
    result: dict[str, Any] = {"family": family_of(processor).name,
                              "shape": FAMILIES[family] + ("" if not tiny else " (tiny)"), "params": params}
    result["lora"] = train_run(start, data, work / f"{family}-lora", steps, True, tiny, device)
    if tiny:
        result["full"] = train_run(start, data, work / f"{family}-full", steps, False, tiny, device)
    else:
        result["full"] = _full_top_layers(start, data, work / f"{family}-full", steps, device, full_layers)
    for setup in ("lora", "full"):
        model, _ = build(family, tiny, device, dtype)
        result[f"step_time_{setup}"] = step_ratio(model, processor, data, setup == "lora", repeats, device)
        del model
    shutil.rmtree(start, ignore_errors=True)
    return result


def _full_top_layers(start: Path, data: Path, out: Path, steps: int, device: str, layers: int) -> dict[str, Any]:
    """Full fine-tuning at 7B on one GPU: the recipe's instruct stage with all but the decoder's
    top `layers` frozen through a `configure_stage` wrapper (AdamW over all 7B does not fit)."""
    import vittle.trainer as trainer_module

    original = trainer_module.configure_stage

    def top_layers(model: torch.nn.Module, stage: str) -> list[str]:
        original(model, stage)
        from vittle.families import decoder_layers

        all_layers = decoder_layers(model)
        for layer in list(all_layers)[: len(all_layers) - layers]:
            layer.requires_grad_(False)
        return [name for name, param in model.named_parameters() if param.requires_grad]

    trainer_module.configure_stage = top_layers
    try:
        result = train_run(start, data, out, steps, False, False, device)
    finally:
        trainer_module.configure_stage = original
    result["trained_decoder_layers"] = layers
    return result


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"CPU ({torch.get_num_threads()} threads, {platform.machine()})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU, 3 steps (the test suite's run)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 20; --tiny: 3)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per variant (default 4; --tiny: 2)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/gpu_families_<device>.json)")
    args = parser.parse_args(argv)
    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    steps = args.steps or (3 if args.tiny else 20)
    repeats = args.repeats or (2 if args.tiny else 4)
    name = _device_name(device)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        results = {family: run_family(family, args.tiny, steps, repeats, device, Path(folder)) for family in args.families}
    report = {"benchmark": "gpu_families", "device": name, "tiny": args.tiny, "steps": steps, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d"), "seconds": time.perf_counter() - began, "families": results}
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    out = args.out or Path(__file__).parent / "results" / f"gpu_families_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    for family, result in results.items():
        print(f"{family}: step time with/without the bottleneck: LoRA {result['step_time_lora']['ratio']:.3f}, "
              f"full {result['step_time_full']['ratio']:.3f}; answers {result['lora']['answers'][:2]}", file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
