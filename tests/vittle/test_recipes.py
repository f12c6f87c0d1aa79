"""The shipped recipes: every one loads, and each family's stage-2 recipe starts from a hub
checkpoint of a family the adapter knows, with the paper's Vittle (F) settings, on one GPU.
Nothing is downloaded: a hub id is mapped to its `model_type` here, and the family is asked
of a config built from that family's own config class."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from transformers import AutoConfig

from vittle.config import default_layer
from vittle.families import family_of
from vittle.family_table import FAMILIES
from vittle.hub import _looks_like_hub_id
from vittle.settings import load_recipe

RECIPES = sorted((Path(__file__).parents[2] / "vittle" / "recipes").glob("*.yaml"))

HUB_MODELS = {
    # hub id: (model_type of its config.json, decoder depth of the published config)
    "Qwen/Qwen2.5-VL-7B-Instruct": ("qwen2_5_vl", 28),
    "Qwen/Qwen3-VL-8B-Instruct": ("qwen3_vl", 36),
    "google/gemma-3-4b-it": ("gemma3", 34),
    "llava-hf/llava-v1.6-vicuna-7b-hf": ("llava_next", 32),
    "llava-hf/llava-1.5-7b-hf": ("llava", 32),
}
"""The public checkpoints the family recipes start from."""

BUILT_IN = ("tiny", "tiny-efficientnet", "compose")


def _starts_from_hub(path: Path) -> bool:
    """Whether a recipe starts from a hub checkpoint: not a model built here, nor the output
    folder (runs/...) of an earlier stage's recipe."""
    init = load_recipe(path).model.init
    return init not in BUILT_IN and not init.startswith("runs/") and _looks_like_hub_id(init)


FAMILY_RECIPES = [p for p in RECIPES if _starts_from_hub(p)]


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.data.path and recipe.model.init


def test_each_family_has_a_hub_recipe():
    families = {HUB_MODELS[load_recipe(p).model.init][0] for p in FAMILY_RECIPES}
    assert families >= {"qwen2_5_vl", "qwen3_vl", "gemma3", "llava_next"}
    assert families <= set(FAMILIES)


@pytest.mark.parametrize("path", FAMILY_RECIPES, ids=[p.stem for p in FAMILY_RECIPES])
def test_family_recipe_starts_from_a_known_family(path):
    recipe = load_recipe(path)
    assert recipe.model.init in HUB_MODELS, f"{path.name}: add {recipe.model.init} to HUB_MODELS"
    model_type, depth = HUB_MODELS[recipe.model.init]
    config = AutoConfig.for_model(model_type)  # the family's own config class, no download
    assert family_of(config).model_type == model_type
    # the paper's Vittle (F) at the family's default layer, which the recipe's comment names
    b = recipe.bottleneck
    assert (b.layer, b.prior, b.kl_weight, b.alpha_max, b.schedule, b.kind) == (None, "fixed", 0.1, 0.5, "cosine", "ib")
    said = re.search(r"family default: index (\d+) of (\d+) decoder layers", path.read_text())
    assert said and (int(said[1]), int(said[2])) == (default_layer(depth), depth)
    assert b.resolve_layer(depth) == default_layer(depth)
    # LoRA on one GPU in bf16 with gradient checkpointing, LLaVA-665K
    assert recipe.lora.enabled and not recipe.lora.quantize
    train = recipe.train
    assert (train.stage, train.deepspeed, train.bf16, train.gradient_checkpointing) == ("instruct", "", True, True)
    assert train.batch_size * train.grad_accum == 128
    assert recipe.data.path == "data/llava_v1_5_mix665k.json"
    assert recipe.model.dtype == "bfloat16"
    assert "Launch: torchrun --nproc_per_node 1" in path.read_text()


def test_no_recipe_rescales_a_model_with_tied_embeddings():
    """Gemma 3 ties its input and output embeddings: `model.residual_rms` is refused for it."""
    assert AutoConfig.for_model("gemma3").tie_word_embeddings
    for path in FAMILY_RECIPES:
        recipe = load_recipe(path)
        config = AutoConfig.for_model(HUB_MODELS[recipe.model.init][0])
        if config.tie_word_embeddings:
            assert recipe.model.residual_rms == 0, path.name
