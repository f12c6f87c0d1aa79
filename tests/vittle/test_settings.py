from pathlib import Path

import pytest

from vittle.config import RecipeConfig
from vittle.settings import coerce, load_recipe

RECIPES = sorted((Path(__file__).parents[2] / "vittle" / "recipes").glob("*.yaml"))


def test_coerce_parses_text_by_type():
    assert coerce("x", "False", bool) is False
    assert coerce("x", "null", int | None) is None
    assert coerce("x", "3", int | None) == 3
    assert coerce("x", "2", float) == 2.0 and isinstance(coerce("x", "2", float), float)
    assert coerce("x", "007", str) == "007"
    assert coerce("x", "2e-3", float) == 0.002  # YAML 1.1 reads this as a string
    assert coerce("x", '""', str | None) == ""
    assert coerce("x", "", str | None) == ""  # an empty string from a YAML file
    assert coerce("x", "null", str | None) is None
    with pytest.raises(ValueError, match="x: expected int, got 'many'"):
        coerce("x", "many", int)
    with pytest.raises(ValueError, match="x: expected float, got 'true'"):
        coerce("x", "true", float)


def test_overrides_and_errors(tmp_path):
    recipe = load_recipe("tiny-shapes", ["train.max_steps=5", "bottleneck.prior=learnable", "train.bf16=false",
                                         "bottleneck.layer=2", "train.extra={dataloader_drop_last: true}"])
    assert isinstance(recipe, RecipeConfig)
    assert (recipe.train.max_steps, recipe.bottleneck.prior, recipe.train.bf16, recipe.bottleneck.layer) == (5, "learnable", False, 2)
    assert recipe.train.extra == {"dataloader_drop_last": True}
    recipe = load_recipe("tiny-shapes", ["train.extra.max_grad_norm=0.5", "train.extra.dataloader_pin_memory=false"])
    assert recipe.train.extra == {"max_grad_norm": 0.5, "dataloader_pin_memory": False}
    with pytest.raises(ValueError, match="train.warmup_ratio=1.0 is out of range"):
        load_recipe("tiny-shapes", ["train.warmup_ratio=1"])
    with pytest.raises(ValueError, match="unknown key\\(s\\) train.max_step; known:"):
        load_recipe("tiny-shapes", ["train.max_step=5"])
    with pytest.raises(ValueError, match="alpha_max=2.0 is out of range"):
        load_recipe("tiny-shapes", ["bottleneck.alpha_max=2"])
    with pytest.raises(ValueError, match="must look like section.key=value"):
        load_recipe("tiny-shapes", ["train.max_steps"])
    with pytest.raises(ValueError, match="recipe not found: nope.yaml \\(built-in recipes: .*tiny-shapes"):
        load_recipe("nope.yaml")


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.data.path


@pytest.mark.parametrize(("override", "message"), [
    ("train.lr=!!value", r"train.lr: '!!value' is not a valid value \(could not determine a constructor"),
    ("train.extra.foo=\x1f", r"override 'train.extra.foo=\\x1f': the value is not valid YAML \(unacceptable character #x001f"),
])
def test_override_values_that_are_not_yaml_are_value_errors(override, message):
    with pytest.raises(ValueError, match=message):
        load_recipe("tiny-shapes", [override])
    assert load_recipe("tiny-shapes", ["train.output_dir=a: b"]).train.output_dir == "a: b"  # a string field keeps the text


def test_training_arguments_names_are_aliases_of_the_train_fields():
    recipe = load_recipe("tiny-shapes", ["train.learning_rate=3e-4", "train.per_device_train_batch_size=2",
                                         "train.gradient_accumulation_steps=4", "train.lr_scheduler_type=linear"])
    assert (recipe.train.lr, recipe.train.batch_size, recipe.train.grad_accum, recipe.train.lr_scheduler) == (3e-4, 2, 4, "linear")
    assert load_recipe("tiny-shapes", ["train.learning_rate=3e-4", "train.lr=1e-4"]).train.lr == 1e-4  # the last wins
    from vittle.config import RecipeConfig
    from vittle.settings import build

    with pytest.raises(ValueError, match="train.learning_rate and train.lr are the same setting; give one"):
        build(RecipeConfig, {"data": {"path": "x.json"}, "train": {"learning_rate": 3e-4, "lr": 1e-4}})
    with pytest.raises(ValueError, match="train.learning_rate=-1.0 is out of range|train.lr=-1.0 is out of range"):
        load_recipe("tiny-shapes", ["train.learning_rate=-1"])


@pytest.mark.parametrize(("override", "message"), [
    (["lora.r=-1"], r"lora.r=-1 is out of range"),
    (["lora.quantize=4bit"], r"lora.quantize='4bit' is QLoRA and needs adapters: set lora.r"),
    (["lora.quantize=2bit", "lora.r=8"], r"lora.quantize='2bit' is not allowed; choose one of , 4bit, 8bit"),
    (["lora.r=8", "lora.target_modules= , "], r"lora.target_modules is empty"),
    (["lora.r=8", "train.stage=align"], r"train.stage='align' trains the projector alone"),
    (["lora.dropout=nan", "lora.r=8"], r"lora.dropout=nan must be a finite number"),
    (["model.attn_implementation=flash"], r"model.attn_implementation='flash' is not allowed; choose one of auto, eager, sdpa, flash_attention_2"),
])
def test_lora_and_attention_settings_are_checked(override, message):
    with pytest.raises(ValueError, match=message):
        load_recipe("tiny-shapes", override)


def test_big_recipes_checkpoint_within_an_epoch():
    """LLaVA-665K at batch 128 is about 5,200 optimizer steps: a 7B/13B recipe must save well
    within that, or train.resume has nothing to resume from after a crash."""
    for path in RECIPES:
        recipe = load_recipe(path)
        if "llava-1.5" in path.stem:
            assert recipe.train.save_steps <= 1000, path.stem
