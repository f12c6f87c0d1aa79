"""Dataclasses <-> YAML recipes, `key=value` overrides and argparse options.

One mechanism turns text into typed dataclass fields everywhere, so "False" is False, "null"
is None and a wrong type is an error that names the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from vittle.config import RecipeConfig


def _allowed_types(hint: Any) -> tuple[type, ...]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _allowed_types(arg))
    if hint is type(None):
        return (type(None),)
    if hint is Any:
        return (object,)
    return (origin or hint,)


def _yaml_problem(err: yaml.YAMLError) -> str:
    return " ".join(str(getattr(err, "problem", None) or err).split())


def coerce(key: str, raw: Any, hint: Any) -> Any:
    """Parse `raw` (YAML text or an already parsed value) as the type `hint` allows."""
    allowed = _allowed_types(hint)
    try:
        value = yaml.safe_load(raw) if isinstance(raw, str) else raw
    except yaml.YAMLError as err:
        if str not in allowed:
            raise ValueError(f"{key}: {raw!r} is not a valid value ({_yaml_problem(err)})") from None
        value = raw  # a string field takes the text as written
    if value is None and isinstance(raw, str) and raw.strip() not in ("null", "~", "Null", "NULL") and str in allowed:
        value = raw  # an empty string stays a string: only an explicit null means None
    if str in allowed and isinstance(raw, str) and not isinstance(value, tuple(allowed)):
        value = raw  # e.g. a path that YAML would read as a number
    if isinstance(value, str) and float in allowed and str not in allowed:
        try:  # YAML 1.1 reads "2e-3" (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        value = float(value)
    if isinstance(value, bool) and bool not in allowed:
        raise ValueError(f"{key}: expected {' or '.join(t.__name__ for t in allowed)}, got {raw!r}")
    if not isinstance(value, allowed):
        raise ValueError(f"{key}: expected {' or '.join(t.__name__ for t in allowed)}, got {raw!r}")
    return value


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a (nested) mapping, checking names and types."""
    if not isinstance(data, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'recipe'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    data = _resolve_aliases(cls, data, prefix)
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}; known: {', '.join(sorted(fields))}")
    values = {}
    for name, raw in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = build(hint, raw or {}, f"{prefix}{name}.")
        else:
            values[name] = coerce(prefix + name, raw, hint)
    try:
        return cls(**values)
    except ValueError as err:  # name the section, e.g. "bottleneck.alpha_max=..."
        message = str(err)
        raise ValueError(message if message.startswith(prefix) else prefix + message) from err


def _resolve_aliases(cls: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Rename accepted other names (e.g. TrainingArguments' learning_rate -> train.lr)."""
    from vittle.config import FIELD_ALIASES

    aliases = FIELD_ALIASES.get(cls, {})
    if not aliases or not set(data) & set(aliases):
        return data
    renamed = dict(data)
    for alias, name in aliases.items():
        if alias in renamed:
            if name in data:
                raise ValueError(f"{prefix}{alias} and {prefix}{name} are the same setting; give one")
            renamed[name] = renamed.pop(alias)
    return renamed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides (values as YAML) to a nested mapping, in place."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like section.key=value, e.g. train.max_steps=50")
        *path, leaf = key.split(".")
        if path == ["train"]:  # an override by a TrainingArguments name replaces the recipe's value
            from vittle.config import TRAIN_ALIASES

            leaf = TRAIN_ALIASES.get(leaf, leaf)
        node = data
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part} is not a section")
        if "extra" in path or leaf == "extra":  # passed through untyped
            try:
                node[leaf] = yaml.safe_load(value)
            except yaml.YAMLError as err:
                raise ValueError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(err)})") from None
        else:
            node[leaf] = value
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    """Read a YAML recipe, apply overrides, validate. A built-in recipe may be named by its
    file name alone (e.g. "tiny-shapes")."""
    file = Path(path)
    if not file.is_file():
        builtin = Path(__file__).parent / "recipes" / f"{Path(path).stem}.yaml"
        if not builtin.is_file():
            names = sorted(p.stem for p in builtin.parent.glob("*.yaml"))
            raise ValueError(f"recipe not found: {path} (built-in recipes: {', '.join(names)})")
        file = builtin
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{file} is not valid YAML: {err}") from err
    return build(RecipeConfig, apply_overrides(data, overrides or []))


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One --option per field of `cls`; help from the field's docstring in the source."""
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        default = None if required else (field.default if field.default is not dataclasses.MISSING else field.default_factory())
        parser.add_argument(flag, dest=field.name, required=required, default=default,
                            type=lambda raw, n=field.name, h=hints[field.name]: coerce(n, raw, h),
                            help=docs.get(field.name, "") + ("" if required else f" (default: {default})"))


def _field_docs(cls: type) -> dict[str, str]:
    """Field docstrings (the string literal right after each field) from the class source."""
    source = ""
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        try:
            source += inspect.getsource(klass) + "\n"
        except (OSError, TypeError):
            continue
    docs, last = {}, None
    for line in source.splitlines():
        stripped = line.strip()
        if ":" in stripped and not stripped.startswith(('"', "#", "def ", "@", "class ")):
            last = stripped.split(":", 1)[0].strip()
        elif stripped.startswith('"""') and last:
            docs[last] = stripped.strip('"').strip()
            last = None
    return docs
