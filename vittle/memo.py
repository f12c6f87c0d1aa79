"""`Memo`: a bounded, thread-safe memo of recent results that its caller owns.

Nothing in vittle keeps results at module level: whoever wants several objects to share work
passes them one `Memo` (the app hands one to its models, so an image preprocessed for the
baseline is not preprocessed again for Vittle, and one to its perturbation step).

    pixels = Memo(128)
    Assistant.load(path, pixel_memo=pixels)
    value = pixels.get(key)          # None when absent; counts a hit or a miss
    pixels.put(key, value)           # the least recently used entry leaves past the size
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class Memo:
    """The most recently used results by key, at most `size` of them, or with `weigh` (a value's
    weight, e.g. its bytes) at most `size` in total weight; safe to share between threads.
    `hits` and `misses` count lookups, `evictions` the entries that left for room (`clear` leaves
    all three)."""

    def __init__(self, size: int, weigh: Callable[[Any], int] | None = None):
        if size < 1:
            raise ValueError(f"a memo needs room for at least one entry, got size={size}")
        self.size = size
        self.weigh = weigh or (lambda value: 1)
        self.total = 0
        """The kept values' total weight (their number without `weigh`)."""
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> bool:
        """Keep `value` (the least recently used leave past the size); False, and nothing kept,
        for a value heavier than the whole memo."""
        weight = self.weigh(value)
        if weight > self.size:
            return False
        with self._lock:
            if key in self._items:
                self.total -= self.weigh(self._items.pop(key))
            self._items[key] = value
            self.total += weight
            while self.total > self.size:
                _, old = self._items.popitem(last=False)
                self.total -= self.weigh(old)
                self.evictions += 1
        return True

    def discard(self, key: Hashable) -> None:
        """Forget `key`'s value, if kept."""
        with self._lock:
            if key in self._items:
                self.total -= self.weigh(self._items.pop(key))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.total = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        """Whether `key` is kept (no lookup counted, no change of order)."""
        return key in self._items
