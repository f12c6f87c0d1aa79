"""Command-line options generated from a config dataclass: one option per field, its help the
field's docstring, its default the dataclass's own (the command line never sets a default).

    config = parse(ReportConfig, argv, prog="vittle analyze", description="...")

How a field's type becomes an option:
    bool                    --x / --no-x
    dict[str, str]          a repeatable --model [NAME=]PATH: the field's name without its plural
                            s (the plural is accepted too, with several values, as older command
                            lines wrote it); parsed by `parse_models`
    tuple[T, ...]           comma-separated values (a positional one: any number of arguments)
    a nested dataclass      its own options, flags prefixed by the field's name (or "prefix")
    anything else           text read by `vittle.settings.coerce`: "null" is None for an
                            `int | None`, a Literal or "choices" limits the values

Field metadata (`dataclasses.field(metadata={...})`) says what the type cannot:
    "choices"     allowed values, or a function returning them (read when the parser is built)
    "env"         an environment variable whose value, when set, replaces the default
    "positional"  True: an argument without a flag
    "cli"         False: not on the command line
    "prefix"      for a nested dataclass: the word before its fields' flags
    "metavar"     the value's name in the help
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from vittle.settings import coerce, field_docs

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
USAGE_ERROR = 2
"""Exit status of a usage or settings error: a flag argparse refuses, a value a settings class refuses."""
FAILURE = 1
"""Exit status of a command that started and failed (a missing file, a broken checkpoint, a
missing extra); 0 is success, 130 an interrupt (Ctrl-C)."""


def configure_logging(level: int = logging.INFO, fmt: str = LOG_FORMAT) -> None:
    """Configure the root logger once: a command's level applies only when nothing (`vittle -v`,
    the caller) has configured logging before it."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format=fmt)


class UsageError(ValueError):
    """A settings problem found after parsing (a recipe file's values, say): exit status 2."""


def failed(prog: str, err: BaseException) -> int:
    """Report a command's failure on one line (the traceback too with -v); returns USAGE_ERROR for
    a UsageError, else FAILURE. A closed output pipe is no failure: it is raised again for the
    `vittle` entry point, which ends quietly."""
    if isinstance(err, BrokenPipeError) or (isinstance(err, ModuleNotFoundError) and (err.name or "vittle").split(".")[0] != "vittle"):
        raise err  # a closed pipe ends quietly; a missing package is named with its extra (vittle.cli)
    logging.getLogger("vittle").debug("%s failed", prog, exc_info=err)
    print(f"{prog}: error: {err}", file=sys.stderr)
    return USAGE_ERROR if isinstance(err, UsageError) else FAILURE


def parse_models(items: list[str]) -> dict[str, str]:
    """["base=PATH", "PATH2"] -> {"base": "PATH", "PATH2's folder name": "PATH2"}; names unique."""
    models: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item.rstrip("/")).name or item, item
        if not name or not path:
            raise ValueError(f"{item!r}: expected NAME=PATH or PATH")
        if name in models:
            raise ValueError(f"the name {name!r} is used twice; write NAME=PATH")
        models[name] = path
    return models


def _unwrap(hint: Any) -> Any:
    """`X | None` -> X (the None stays allowed through `coerce`)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def _kind(hint: Any) -> str:
    hint = _unwrap(hint)
    if hint is bool:
        return "bool"
    if dataclasses.is_dataclass(hint):
        return "nested"
    if typing.get_origin(hint) is dict:
        return "mapping"
    if typing.get_origin(hint) is tuple:
        return "tuple"
    return "text"


def _cli_fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("cli", True) and f.init]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "null"
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) or "none"
    return str(value) or '""'


def _converter(key: str, hint: Any) -> Callable[[str], Any]:
    """Text -> value for argparse; an error keeps `coerce`'s message (argparse would replace a
    ValueError's with "invalid value")."""
    def convert(raw: str) -> Any:
        try:
            if _kind(hint) == "tuple":
                item = typing.get_args(_unwrap(hint))[0]
                return tuple(coerce(key, part.strip(), item) for part in raw.split(",") if part.strip())
            return coerce(key, raw, hint)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return convert


def _help(doc: str, field: dataclasses.Field[Any], env: str | None) -> str:
    default = _default(field)
    notes = [] if default is dataclasses.MISSING or isinstance(default, dict) else [f"default: {_shown(default)}"]
    if env:
        notes.append(f"env {env}")
    text = doc + (f" ({'; '.join(notes)})" if notes else "")
    return text.replace("%", "%%")  # argparse formats help with %


def add_options(parser: argparse._ActionsContainer, cls: type, prefix: str = "", dest: str = "") -> None:
    """Add one option per command-line field of dataclass `cls` to `parser`. Nothing is given a
    default here: what the command line leaves out, the dataclass fills in."""
    docs = field_docs(cls)
    for field, hint in _cli_fields(cls):
        kind, name, meta = _kind(hint), dest + field.name, field.metadata
        if kind == "nested":
            word = meta.get("prefix", field.name)
            group = parser.add_argument_group(f"{word} options", docs.get(field.name))
            add_options(group, _unwrap(hint), prefix=f"{prefix}{word}_", dest=f"{name}.")
            continue
        flag, doc = _flag(prefix + field.name), _help(docs.get(field.name, ""), field, meta.get("env"))
        required = _default(field) is dataclasses.MISSING and not meta.get("env")
        common: dict[str, Any] = {"default": argparse.SUPPRESS, "help": doc}
        if kind == "bool":
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, **common)
        elif kind == "mapping":
            single = flag.removesuffix("s")
            # not required=True: argparse would refuse the plural in its place; `values` checks it
            parser.add_argument(single, dest=name, action="append", metavar=meta.get("metavar", "[NAME=]PATH"),
                                **{**common, "help": doc + " Repeat for several."})
            if single != flag:  # the plural, as older command lines wrote it: --models a=P b=Q
                parser.add_argument(flag, dest=name, action="extend", nargs="+", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        else:
            choices = meta.get("choices") or (typing.get_args(_unwrap(hint)) if typing.get_origin(_unwrap(hint)) is Literal else None)
            options = {**common, "type": _converter(prefix + field.name, hint)}
            if choices:
                options["choices"] = tuple(choices() if callable(choices) else choices)
            else:  # the field's name, not the dotted destination of a nested field
                options["metavar"] = meta.get("metavar", field.name.upper())
            if meta.get("positional"):
                nargs = "*" if kind == "tuple" else (None if required else "?")
                if kind == "tuple":
                    options["type"] = _converter(field.name, typing.get_args(_unwrap(hint))[0])
                parser.add_argument(name, nargs=nargs, **options)
            else:
                parser.add_argument(flag, dest=name, required=required, **options)


def _env_value(field: dataclasses.Field[Any], hint: Any) -> Any:
    env = field.metadata.get("env")
    raw = os.environ.get(env) if env else None
    if not raw:
        return dataclasses.MISSING
    try:
        return _converter(field.name, hint)(raw)
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"{err} (from the environment variable {env})") from None


def values(cls: type, namespace: argparse.Namespace, dest: str = "") -> dict[str, Any]:
    """The fields of `cls` given on the command line (or by an environment variable), converted:
    mappings parsed, nested dataclasses built (by their `from_env` when they have one)."""
    given = vars(namespace)
    found: dict[str, Any] = {}
    for field, hint in _cli_fields(cls):
        name, kind = dest + field.name, _kind(hint)
        if kind == "nested":
            nested = _unwrap(hint)
            found[field.name] = getattr(nested, "from_env", nested)(**values(nested, namespace, f"{name}."))
        elif name in given:
            if kind == "mapping":
                try:
                    found[field.name] = parse_models(given[name])
                except ValueError as err:
                    raise ValueError(f"{field.name}: {err}") from None
            else:  # a positional tuple arrives as argparse's list
                found[field.name] = tuple(given[name]) if kind == "tuple" else given[name]
        elif (env := _env_value(field, hint)) is not dataclasses.MISSING:
            found[field.name] = env
        elif kind == "mapping" and _default(field) is dataclasses.MISSING:
            raise ValueError(f"the following arguments are required: {_flag(field.name).removesuffix('s')}")
    return found


def build_parser(cls: type, prog: str, description: str | None = None, epilog: str | None = None,
                 aliases: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The parser of `cls`; `aliases` maps an older flag, accepted but not shown, to its field."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    add_options(parser, cls)
    for old, name in (aliases or {}).items():
        action = next(a for a in parser._actions if a.dest == name)
        kwargs: dict[str, Any] = {"type": action.type} if action.type is not None else {}
        parser.add_argument(old, dest=name, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
    return parser


def parse(cls: type, argv: list[str] | None = None, *, prog: str, description: str | None = None, epilog: str | None = None,
          make: Callable[..., Any] | None = None, aliases: dict[str, str] | None = None) -> Any:
    """`make(**given values)` (default: `cls(...)`) from the command line `argv`. A ValueError
    from the config's validation ends the program like a usage error: "PROG: error: MESSAGE",
    exit status 2."""
    namespace = build_parser(cls, prog, description, epilog, aliases).parse_args(argv)
    try:
        return (make or cls)(**values(cls, namespace))
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None

