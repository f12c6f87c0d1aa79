import dataclasses
import pathlib

import pytest

import vittle
from vittle.config import BottleneckConfig, DataConfig, ModelConfig, RecipeConfig, TrainConfig, default_layer


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha_max": 1.5}, "alpha_max=1.5 is out of range; allowed: [0.0, 1.0]"),
        ({"alpha_max": -0.1}, "alpha_max=-0.1 is out of range"),
        ({"kl_weight": -1.0}, "kl_weight=-1.0 is out of range; allowed: >= 0.0"),
        ({"prior": "uniform"}, "prior='uniform' is not allowed; choose one of fixed, learnable"),
        ({"schedule": "linear"}, "schedule='linear' is not allowed; choose one of cosine, sigmoid, constant"),
        ({"text_kl_scope": "answer"}, "text_kl_scope='answer' is not allowed"),
        ({"layer": -1}, "layer=-1 must be >= 0"),
        ({"layer": 2.5}, "layer=2.5 must be an integer or None"),
        ({"logvar_clamp": 0.0}, "logvar_clamp=0 would fix the variance"),
        ({"kl_weight": "0.1"}, "kl_weight='0.1' must be a number"),
        ({"kl_weight": float("nan")}, "kl_weight=nan must be a finite number"),
        ({"kl_weight": float("inf")}, "kl_weight=inf must be a finite number"),
        ({"alpha_max": float("nan")}, "alpha_max=nan must be a finite number"),
        ({"logvar_clamp": float("nan")}, "logvar_clamp=nan must be a finite number"),
        ({"kind": "dropout"}, "kind='dropout' is not allowed; choose one of ib, noise"),
        ({"init_std": -0.1}, "init_std=-0.1 is out of range"),
        ({"init_std": 0.0}, "init_std=0 would start both MLPs at exactly 0"),
        ({"kind": "noise", "prior": "learnable"}, "kind='noise' draws from the fixed N.0, I.; prior='learnable' has nothing to learn"),
    ],
)
def test_bottleneck_config_errors_name_field_value_and_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        BottleneckConfig(**kwargs)


def test_defaults_follow_the_paper():
    config = BottleneckConfig()
    assert (config.prior, config.kl_weight, config.alpha_max, config.schedule) == ("fixed", 0.1, 0.5, "cosine")
    assert config.logvar_clamp == pytest.approx(2.3025)
    assert config.text_kl_scope == "prompt"
    assert config.kind == "ib"


@pytest.mark.parametrize(("depth", "layer"), [(32, 24), (40, 30), (8, 5), (6, 3), (4, 1), (3, 0), (2, 0)])
def test_default_layer_keeps_the_papers_fraction_and_two_layers_after(depth, layer):
    assert default_layer(depth) == layer
    assert BottleneckConfig().resolve_layer(depth) == layer
    assert depth - layer - 1 >= min(2, depth - 1)  # layers that read the bottleneck's output


def test_the_last_layer_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"layer=3 is the last of the model's 4 decoder layers: after it nothing reads the image "
                                         r"tokens' bottleneck states.*choose 0..2 \(default for this depth: 1\)"):
        BottleneckConfig(layer=3).resolve_layer(4)
    with pytest.raises(ValueError, match="a one-layer model has no such place"):
        BottleneckConfig().resolve_layer(1)
    assert BottleneckConfig(layer=3).resolve_layer(4, allow_last=True) == 3  # loading an old checkpoint


def _recipe_depth(recipe) -> int:
    """The decoder depth a built-in recipe trains: built tiny models, the tiny-easyvqa base, or LLaVA-1.5 7B / 13B."""
    from vittle.settings import load_recipe

    if recipe.model.init in ("tiny", "tiny-efficientnet"):
        return recipe.model.num_layers or 4
    if recipe.model.init in ("runs/tiny-easyvqa-base", "runs/tiny-stage0-text", "runs/tiny-stage1-align"):
        return _recipe_depth(load_recipe(recipe.model.init.removeprefix("runs/")))  # the recipe that trains that folder
    return {"runs/llava-1.5-7b-align": 32, "runs/llava-1.5-13b-align": 40}[recipe.model.init]


def test_no_builtin_recipe_puts_the_bottleneck_after_the_last_layer():
    from vittle.settings import load_recipe

    checked = 0
    for path in sorted((pathlib.Path(vittle.__file__).parent / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        if "/" in recipe.model.init and not recipe.model.init.startswith("runs/"):
            continue  # a family's hub checkpoint: tests/vittle/test_recipes.py checks its layer against the published depth
        if recipe.train.stage == "instruct":
            depth = _recipe_depth(recipe)
            assert recipe.bottleneck.resolve_layer(depth) < depth - 1, path.name
            checked += 1
    assert checked >= 7


def test_layer_beyond_depth_is_an_error():
    with pytest.raises(ValueError, match="layer=4 is beyond the model's depth: it has 4 decoder layers"):
        BottleneckConfig(layer=4).resolve_layer(4)


def test_config_is_frozen_and_round_trips_through_dict():
    config = BottleneckConfig(layer=2, prior="learnable")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.alpha_max = 0.2
    assert BottleneckConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown bottleneck config keys \\['beta'\\]"):
        BottleneckConfig.from_dict({"beta": 1})


def test_train_and_recipe_validation():
    with pytest.raises(ValueError, match="train.stage='pretrian' is not allowed; choose one of pretrain, align, instruct, baseline"):
        TrainConfig(stage="pretrian")
    with pytest.raises(ValueError, match="train.max_steps=0 must be positive"):
        TrainConfig(max_steps=0)
    with pytest.raises(ValueError, match="train.epochs=0 with train.max_steps=-1 would train nothing"):
        TrainConfig(max_steps=-1, epochs=0)
    assert TrainConfig(max_steps=10, epochs=0).max_steps == 10  # max_steps wins over epochs
    for field in ("weight_decay", "lr", "warmup_ratio", "epochs"):
        with pytest.raises(ValueError, match=f"train.{field}=nan must be a finite number"):
            TrainConfig(**{field: float("nan")})
    with pytest.raises(ValueError, match="model.residual_rms=inf must be a finite number"):
        ModelConfig(residual_rms=float("inf"))
    with pytest.raises(ValueError, match="data.path is required"):
        RecipeConfig()
    with pytest.raises(ValueError, match="data.synthetic='mnist'"):
        DataConfig(path="x.json", synthetic="mnist")
