"""benchmarks/family_memory.py: its parameter counts agree with scaling_memory's for LLaVA-1.5 7B,
and its counting code gives a real (tiny) model's exact counts, LoRA and bottleneck included."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def family_memory():
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import each other by name, as when run
    try:
        import family_memory

        yield family_memory
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_llava_7b_counts_agree_with_scaling_estimates(family_memory):
    counts = family_memory.count_params(family_memory.build_meta(family_memory.published_config("LLaVA-1.5-7B")), rank=128)
    reference = json.loads((BENCHMARKS / "results" / "scaling_estimates.json").read_text())["models"]["7B"]["params"]
    pairs = {"llm": "llm", "projector": "projector", "bottleneck": "bottleneck", "frozen": "vision_frozen", "lora_r128": "lora_r128"}
    for ours, theirs in pairs.items():
        assert counts[ours] == pytest.approx(reference[theirs], rel=0.02), ours


def test_published_configs_are_the_recipes_checkpoints(family_memory):
    """The hub ids the family recipes start from have published sizes here, and the family and
    the depth tests/vittle/test_recipes.py assumes for them."""
    spec = importlib.util.spec_from_file_location("test_recipes", Path(__file__).with_name("test_recipes.py"))
    recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipes)
    published = {entry["hub"]: name for name, entry in family_memory.PUBLISHED.items()}
    for hub, (model_type, depth) in recipes.HUB_MODELS.items():
        config = family_memory.published_config(published[hub])
        assert (config.model_type, config.get_text_config().num_hidden_layers) == (model_type, depth)


def test_counting_a_tiny_config_gives_the_real_models_counts(family_memory, family_builder):
    from vittle.config import BottleneckConfig, LoraConfig
    from vittle.lora import apply_lora
    from vittle.model import attach_bottleneck, get_bottleneck

    model, _ = family_builder()
    counts = family_memory.count_params(family_memory.build_meta(model.config), rank=4)
    assert counts["total"] == sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    assert counts["llm"] + counts["projector"] + counts["frozen"] == counts["total"]
    attach_bottleneck(model, BottleneckConfig())
    assert counts["bottleneck"] == sum(p.numel() for p in get_bottleneck(model).parameters())
    before = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        wrapped = apply_lora(model, LoraConfig(r=4))
    assert counts["lora_r4"] == sum(p.numel() for p in wrapped.parameters()) - before
