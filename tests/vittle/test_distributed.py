"""Data-parallel training as users launch it: two processes under torchrun (gloo on CPU), the
alpha schedule counted in optimizer steps, and the DeepSpeed configs against the recipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from vittle.config import BottleneckConfig
from vittle.objective import alpha_at
from vittle.settings import load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "vittle" / "recipes"

SCRIPT = """
import os, sys
import torch.distributed as dist
from safetensors.torch import save_file
from vittle.settings import load_recipe
from vittle.trainer import train

result = train(load_recipe("tiny-shapes", sys.argv[2:]))
rank = int(os.environ["RANK"])
model = result["model"]
state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
save_file(state, os.path.join(sys.argv[1], f"rank{rank}.safetensors"))
alphas = [e["alpha"] for e in result["log_history"] if "alpha" in e]
with open(os.path.join(sys.argv[1], f"rank{rank}.txt"), "w") as f:
    f.write(f"{result['max_steps']} {dist.get_world_size() if dist.is_initialized() else 1} " + " ".join(map(repr, alphas)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("variant", [["bottleneck.prior=learnable"], ["lora.r=4"]], ids=["full-learnable-prior", "lora"])
def test_two_process_training_ends_with_identical_weights_and_a_loadable_model(shapes_data, tmp_path, variant):
    """Data parallel for real (each rank half the batch, gradients all-reduced; the learnable
    prior and the posterior MLPs get their gradient from the KL after the forward)."""
    from vittle.inference import Assistant

    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
               str(script), str(tmp_path),
               f"data.path={shapes_data}", f"train.output_dir={out}", "train.max_steps=4", "train.batch_size=2", "train.grad_accum=2",
               "train.logging_steps=1", "train.save_steps=2", "train.lr=1e-3", *variant]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert first.keys() == second.keys() and len(first) > 10
    assert all((first[k] == second[k]).all() for k in first), "the ranks' weights differ"
    saved = load_file(str(out / "model.safetensors"))
    assert any(k.startswith("vittle_bottleneck.") for k in saved)
    assert (out / "checkpoint-4" / "trainer_state.json").is_file()
    assistant = Assistant.load(out, device="cpu")
    assert assistant.has_bottleneck
    # the schedule runs over optimizer steps: 4 of them, each logged alpha that of the step's start,
    # for both micro-batches of the accumulation and on both ranks
    for rank in (0, 1):
        max_steps, world, *alphas = (tmp_path / f"rank{rank}.txt").read_text().split()
        assert (int(max_steps), int(world)) == (4, 2)
        config = BottleneckConfig()
        assert [float(a) for a in alphas] == pytest.approx([alpha_at(config, step / 4) for step in range(4)])


def test_epochs_become_optimizer_steps_over_batch_accumulation_and_processes(shapes_data, tmp_path):
    """One epoch of the 144 samples at batch 2 x accumulation 3 in one process is 24 optimizer
    steps; alpha reaches alpha_max at the last one, not at the last micro-batch of 72."""
    from vittle.trainer import train

    result = train(load_recipe("tiny-shapes", [f"data.path={shapes_data}", f"train.output_dir={tmp_path / 'out'}", "train.epochs=1",
                                               "train.max_steps=-1", "train.batch_size=2", "train.grad_accum=3", "train.logging_steps=1",
                                               "train.save_steps=1000", "bottleneck.schedule=cosine"]))
    assert result["max_steps"] == 24
    alphas = [e["alpha"] for e in result["log_history"] if "alpha" in e]
    assert len(alphas) == 24
    assert alphas == pytest.approx([alpha_at(BottleneckConfig(), step / 24) for step in range(24)])


def _builtin(name: str) -> dict:
    return json.loads((RECIPES / name).read_text())


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("llava-1.5-*.yaml")))
def test_deepspeed_configs_parse_and_agree_with_the_recipes(recipe):
    """The JSON files parse, and every batch setting is "auto", so Trainer fills them from the
    recipe (a number there that disagreed with train.batch_size would stop DeepSpeed at start)."""
    loaded = load_recipe(RECIPES / recipe)
    if not loaded.train.deepspeed:
        return
    config = _builtin(Path(loaded.train.deepspeed).name)
    for key in ("train_micro_batch_size_per_gpu", "train_batch_size", "gradient_accumulation_steps"):
        assert config[key] == "auto", (recipe, key)
    assert config["bf16"]["enabled"] in ("auto", loaded.train.bf16)
    stage = config["zero_optimization"]["stage"]
    assert stage == (3 if "zero3" in loaded.train.deepspeed else 2)
    if loaded.lora.enabled:
        assert stage == 2, "LoRA's final merge needs whole weights: ZeRO-2, not ZeRO-3"
    # the comment's arithmetic: 8 GPUs x per-device batch x accumulation = the paper's batch
    title, header = (RECIPES / recipe).read_text().splitlines()[:2]
    assert ("13B" if "13b" in recipe else "7B") in title
    if "8 GPUs x" in header:
        per_device, total = int(header.split("x")[1].split()[0]), int(header.split("batch")[1].split(",")[0])
        assert per_device == loaded.train.batch_size and 8 * per_device * loaded.train.grad_accum == total
