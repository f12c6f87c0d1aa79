"""The plugin registry (vittle.plugins): the core reaches the toy models and data (vittle.toy)
only through it, with or without package metadata, and an unknown name is a clear error."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from vittle import plugins

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth ("from vittle import toy" counts as vittle.toy)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "vittle" + (f".{node.module}" if node.module else "") if node.level else node.module or ""
            found += [module, *(f"{module}.{alias.name}" for alias in node.names)]
    return found


def test_the_core_never_imports_the_toy_package():
    files = sorted((ROOT / "vittle").glob("*.py"))
    assert len(files) > 20
    wrong = [f"{path.name}: {name}" for path in files for name in _imports(path) if name == "vittle.toy" or name.startswith("vittle.toy.")]
    assert not wrong, "\n".join(wrong)
    assert "vittle.toy" in _imports(ROOT / "tests" / "vittle" / "test_efficientnet.py")  # the check sees such imports


def test_the_built_in_plugins_are_the_declared_entry_points():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for group, table in plugins.BUILT_IN.items():
        assert declared[group] == table, group
    assert "vittle.toy" in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_a_checkpoint_with_the_efficientnet_tower_loads_in_a_fresh_process_without_metadata():
    """As the Space runs app.py: a copy of the repository, never installed, so no entry points;
    nothing has imported vittle.toy before the checkpoint is read."""
    code = """
import sys
import vittle.plugins
vittle.plugins.entry_points = lambda group: {}  # no package metadata
from vittle.checkpoint import load_pretrained
from vittle.inference import Assistant
assert not [name for name in sys.modules if name.startswith("vittle.toy")], "imported too early"
model = load_pretrained("assets/models/tiny-vittle-f")
print(type(model.model.vision_tower).__module__)
assistant = Assistant.load("assets/models/tiny-vittle-f", device="cpu")
print(type(assistant.model.model.vision_tower).__name__)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["vittle.toy.efficientnet", "EfficientNetLiteVisionModel"]


def test_an_unknown_model_type_is_a_clear_error(tmp_path):
    from vittle.checkpoint import CheckpointError, load_pretrained

    config = {"model_type": "llava", "vision_config": {"model_type": "no_such_tower"}, "text_config": {"model_type": "llama"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert plugins.model_types(config) == ["llava", "no_such_tower", "llama"]
    with pytest.raises(CheckpointError, match="model type .no_such_tower. is not known to transformers .*registered: vittle_efficientnet_lite"):
        load_pretrained(tmp_path)


def test_unknown_names_list_the_registered_ones():
    from vittle.config import DataConfig
    from vittle.settings import load_recipe
    from vittle.trainer import prepare_model

    with pytest.raises(ValueError, match="data.synthetic='easyvqa-typo' is not allowed; choose one of easyvqa, easyvqa-balanced"):
        DataConfig(synthetic="easyvqa-typo")
    with pytest.raises(plugins.PluginError, match="model.init='tiny-effnet' is not a registered name \\(tiny, tiny-efficientnet\\)"):
        prepare_model(load_recipe("tiny-shapes", ["model.init=tiny-effnet"]))
    with pytest.raises(plugins.PluginError, match="data.synthetic 'nope' is not registered; registered: easyvqa,"):
        plugins.load(plugins.DATASETS, "nope")


def test_another_package_registers_a_dataset_and_a_model_init(monkeypatch):
    import json as module

    from vittle.config import DataConfig
    from vittle.settings import load_recipe
    from vittle.trainer import prepare_model

    declared = {
        plugins.DATASETS: {"mine": EntryPoint("mine", "json:dumps", plugins.DATASETS),
                           "shapes": EntryPoint("shapes", "json:loads", plugins.DATASETS)},  # a built-in name: ignored
        plugins.MODEL_INITS: {"my-tiny": EntryPoint("my-tiny", "vittle.toy.tiny:init_tiny", plugins.MODEL_INITS)},
    }
    monkeypatch.setattr(plugins, "entry_points", lambda group: declared.get(group, {}))
    assert "mine" in plugins.names(plugins.DATASETS) and DataConfig(synthetic="mine").synthetic == "mine"
    assert plugins.load(plugins.DATASETS, "mine") is module.dumps
    assert plugins.registered(plugins.DATASETS)["shapes"].value == "vittle.toy.shapes:synthesize"
    model, _ = prepare_model(load_recipe("tiny-shapes", ["model.init=my-tiny", "model.hidden_size=32", "model.num_layers=2"]))
    assert model.config.text_config.hidden_size == 32


def test_the_lazy_export_and_the_recipes_still_build_the_tiny_models():
    import vittle
    from vittle.toy.tiny import build_tiny_llava

    assert vittle.build_tiny_llava is build_tiny_llava
