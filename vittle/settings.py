"""Dataclasses <-> YAML recipes and `key=value` overrides; field docstrings.

One mechanism turns text into typed dataclass fields everywhere (recipes, overrides and the
command line of `vittle.options`), so "False" is False, "null" is None and a wrong type is an
error that names the key.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from pathlib import Path, PurePath
from typing import Any, Literal

import yaml

from vittle.config import FIELD_ALIASES, TRAIN_ALIASES, RecipeConfig


def _allowed_types(hint: Any) -> tuple[type, ...]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _allowed_types(arg))
    if hint is type(None):
        return (type(None),)
    if hint is Any:
        return (object,)
    if origin is Literal:
        return tuple({type(arg) for arg in typing.get_args(hint)})
    return (origin or hint,)


def _yaml_problem(err: yaml.YAMLError) -> str:
    return " ".join(str(getattr(err, "problem", None) or err).split())


NULLS = ("null", "~", "Null", "NULL")
"""The texts that mean None (YAML's nulls, less the empty string, which stays a string)."""


def coerce(key: str, raw: Any, hint: Any) -> Any:
    """Parse `raw` (YAML text or an already parsed value) as the type `hint` allows."""
    allowed = _allowed_types(hint)
    if isinstance(raw, str) and any(isinstance(t, type) and issubclass(t, PurePath) for t in allowed):
        if type(None) in allowed and raw.strip() in NULLS:
            return None
        return Path(raw)  # a path is never YAML: "2024" or "on" are folder names
    try:
        value = yaml.safe_load(raw) if isinstance(raw, str) else raw
    except yaml.YAMLError as err:
        if str not in allowed:
            raise ValueError(f"{key}: {raw!r} is not a valid value ({_yaml_problem(err)})") from None
        value = raw  # a string field takes the text as written
    if value is None and isinstance(raw, str) and raw.strip() not in NULLS and str in allowed:
        value = raw  # an empty string stays a string: only an explicit null means None
    if str in allowed and isinstance(raw, str) and not isinstance(value, tuple(allowed)):
        value = raw  # e.g. a path that YAML would read as a number
    if isinstance(value, str) and isinstance(raw, str) and not raw.lstrip().startswith(("'", '"')):
        value = raw  # unquoted text as written: YAML would fold its newlines and drop a " #" comment
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
    if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
        raise ValueError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(str, typing.get_args(hint)))}")
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
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
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
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ValueError(f"{file} is not UTF-8 text (byte {err.start}: {err.reason}); save the recipe as UTF-8") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{file} is not valid YAML: {err}") from err
    return build(RecipeConfig, apply_overrides(data, overrides or []))


def field_docs(cls: type) -> dict[str, str]:
    """Field docstrings (the string literal right after each field) from the source of `cls`
    and the dataclasses it derives from; a subclass's docstring wins."""
    docs: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs
