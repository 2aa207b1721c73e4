"""A least-recently-used cache that says what it evicts, so the evicted model can be unloaded.

Not thread-safe on purpose: only the inference thread (app/predictions/batcher.py) touches it.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    def __init__(self, capacity: int, on_evict: Callable[[K, V], None] = lambda key, value: None):
        if capacity < 1:
            raise ValueError("an LRU cache holds at least one entry")
        self.capacity = capacity
        self._on_evict = on_evict
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The entry, now the most recently used; None if absent."""
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: K, value: V) -> None:
        """Add (or refresh) an entry; the least recently used ones beyond capacity are evicted."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            old_key, old_value = self._entries.popitem(last=False)
            self._on_evict(old_key, old_value)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[K]:
        """Least recently used first."""
        return list(self._entries)
