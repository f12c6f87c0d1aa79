"""The flags every `vittle` command takes anywhere on its command line (`vittle.cli` strips them
before a command parses its own options), and what they do."""

from __future__ import annotations

import dataclasses
import logging
import os

from vittle.options import configure_logging

VERBOSE_FLAGS = ("-v", "--verbose")
QUIET_FLAGS = ("-q", "--quiet")


@dataclasses.dataclass
class GlobalFlags:
    """Flags every `vittle` command takes, anywhere on its command line (before a `--`)."""

    verbose: bool = False
    """-v/--verbose: debug logging."""
    quiet: bool = False
    """-q/--quiet: warnings and errors only, no progress bars."""
    progress: bool | None = None
    """--progress/--no-progress: progress bars on long work (default: on, off with -q)."""
    local_rank: int | None = None
    """--local_rank=N / --local-rank N: what the DeepSpeed launcher (and older torch.distributed
    launchers) append; it sets LOCAL_RANK, which the trainer reads."""


GLOBAL_HELP = ("flags for every command, anywhere on its command line: -v/--verbose (debug logging), -q/--quiet "
               "(warnings only, no progress bars), --progress/--no-progress (progress bars), --local_rank N (set by "
               "the DeepSpeed launcher). Exit status: 0 done, 1 the command failed, 2 a usage or settings error, 130 "
               "interrupted.")


def strip_globals(argv: list[str]) -> tuple[list[str], GlobalFlags]:
    """(argv without the global flags, the flags found), before a `--` that ends the options."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags, kept, items = GlobalFlags(), [], iter(argv[:end])
    for arg in items:
        if arg in VERBOSE_FLAGS:
            flags.verbose = True
        elif arg in QUIET_FLAGS:
            flags.quiet = True
        elif arg in ("--progress", "--no-progress"):
            flags.progress = arg == "--progress"
        elif arg.split("=")[0] in ("--local_rank", "--local-rank"):
            raw = arg.partition("=")[2] if "=" in arg else next(items, "")
            try:
                flags.local_rank = int(raw)
            except ValueError:
                raise ValueError(f"--local_rank expects a whole number, got {raw!r}") from None
        else:
            kept.append(arg)
    return kept + argv[end:], flags


def apply_globals(flags: GlobalFlags) -> None:
    """Logging, progress bars and the local rank as the global flags ask."""
    if flags.verbose:
        configure_logging(logging.DEBUG)
        logging.getLogger().setLevel(logging.DEBUG)  # also when the caller configured logging first
    elif flags.quiet:
        configure_logging(logging.WARNING)
        logging.getLogger().setLevel(logging.WARNING)
    if flags.progress is False or (flags.quiet and flags.progress is None):
        os.environ["TQDM_DISABLE"] = "1"  # every tqdm bar, ours and the libraries' (transformers' trainer included)
    elif flags.progress:
        os.environ.pop("TQDM_DISABLE", None)
    if flags.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(flags.local_rank))
