"""`vittle cache info|clear`: the on-disk cache of layer-l embeddings (the report's and the
app's reference sets), bounded by $VITTLE_CACHE_MAX_MB (default 2048): past it, the files least
recently used are deleted."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vittle.options import USAGE_ERROR, failed, parse

PROG = "vittle cache"


@dataclass
class CacheCommand:
    action: str = field(default="info", metadata={"positional": True, "choices": ("info", "clear", "prune")})
    """info: where the cache is and what it holds; clear: delete it all; prune: delete the least
    recently used files until it is under its limit."""
    cache_dir: Path | None = None
    """The cache folder (default: $VITTLE_CACHE_DIR, else ~/.cache/vittle/representations)."""


def main(argv: list[str] | None = None) -> int:
    command = parse(CacheCommand, argv, prog=PROG, description=__doc__.split("\n\n")[0])
    from vittle.analysis.representations import cache_files, cache_limit_bytes, default_cache_dir, prune_cache  # heavy

    folder = Path(command.cache_dir).expanduser() if command.cache_dir else default_cache_dir()
    try:
        limit = cache_limit_bytes()
    except ValueError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    try:
        if command.action == "clear":
            count = len(cache_files(folder))
            if folder.is_dir():
                shutil.rmtree(folder)
            print(f"removed {folder} ({count} embedding files)")
            return 0
        if command.action == "prune":
            print(f"removed {prune_cache(folder, limit)} files")
        files = cache_files(folder)
        size = sum(p.stat().st_size for p in files)
        shown = f"{limit / 2**20:.0f} MB" if limit else "none"
        print(f"{folder}: {len(files)} embedding files, {size / 2**20:.1f} MB (limit {shown}; $VITTLE_CACHE_MAX_MB)")
    except OSError as err:
        return failed(PROG, err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
