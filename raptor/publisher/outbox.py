"""The hand-off between the event path and the Redis sink thread.

``put`` never blocks and never does I/O. Memory is bounded however long Redis is
away: past *limit* items, the queue is coalesced to the latest item per process
(and per group), and a resync is requested so the lost transitions are replaced
by supervisord's real state.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple, Union

from .events import GroupChange, ProcessStateChange

Item = Union[ProcessStateChange, GroupChange]
DEFAULT_LIMIT = 4096


def _key(item: Item) -> Tuple[str, str]:
    if isinstance(item, ProcessStateChange):
        return ("process", item.name)
    return ("group", item.group)


class Outbox:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._cond = threading.Condition()
        self._items: Deque[Item] = deque()
        self._limit = limit
        self._threshold = limit
        # A resync asked for from the event path; the sink's schedule owns the pending one.
        self._resync_request: Optional[str] = None
        self._closed = False
        self.coalesced = 0  # items dropped by coalescing since start

    def put(self, item: Item) -> None:
        with self._cond:
            self._items.append(item)
            if len(self._items) > self._threshold:
                self._coalesce()
            self._cond.notify()

    def request_resync(self, reason: str) -> None:
        with self._cond:
            if self._resync_request is None:
                self._resync_request = reason
            self._cond.notify()

    def take(self, max_items: int, timeout: float) -> List[Item]:
        """Up to *max_items* items; waits up to *timeout* s for work if there is none."""
        with self._cond:
            if not self._items and self._resync_request is None and not self._closed:
                self._cond.wait(timeout)
            count = min(max_items, len(self._items))
            return [self._items.popleft() for _ in range(count)]

    def take_resync_request(self) -> Optional[str]:
        with self._cond:
            reason, self._resync_request = self._resync_request, None
            return reason

    def pending(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _coalesce(self) -> None:
        last: Dict[Tuple[str, str], int] = {}
        for index, item in enumerate(self._items):
            last[_key(item)] = index
        keep = sorted(last.values())
        before = len(self._items)
        items = list(self._items)
        self._items = deque(items[index] for index in keep)
        self.coalesced += before - len(self._items)
        if self._resync_request is None:
            self._resync_request = "outbox coalesced"
        # More distinct processes than the limit: grow, so put() stays O(1) amortized.
        self._threshold = max(self._limit, 2 * len(self._items))
