import dataclasses

import pytest

from vittle.config import BottleneckConfig, DataConfig, RecipeConfig, TrainConfig


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
    assert config.resolve_layer(32) == 24  # LLaVA-1.5 7B: the top quarter
    assert config.resolve_layer(4) == 3


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
    with pytest.raises(ValueError, match="train.stage='pretrain' is not allowed; choose one of align, instruct, baseline"):
        TrainConfig(stage="pretrain")
    with pytest.raises(ValueError, match="train.max_steps=0 must be positive"):
        TrainConfig(max_steps=0)
    with pytest.raises(ValueError, match="data.path is required"):
        RecipeConfig()
    with pytest.raises(ValueError, match="data.synthetic='mnist'"):
        DataConfig(path="x.json", synthetic="mnist")
