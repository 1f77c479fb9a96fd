"""raptor web's hub against a real Redis fed by a real supervisord's listener: the window it
keeps in memory, what happens to a page behind it, and batches shared between pages."""

from __future__ import annotations

import asyncio
import time
from typing import Callable, List

import pytest

from harness import RedisServer, Supervisords, settled, wait_for
from raptor.keys import FLEET_HISTORY
from raptor.web.hub import Batch, Hub, catch_up

pytestmark = pytest.mark.integration


async def until(hub: Hub, condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {seconds} s waiting for {what}")
        await hub.changed(0.2)


def test_a_page_behind_the_window_is_caught_up_from_redis_and_pages_share_batches(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    sup = start_supervisord(["a", "b", "c", "d"], redis_server.url, hostname="h")
    client = settled(sup, redis_server)

    async def scenario() -> None:
        hub = Hub(client, keep=4)
        hub.start()
        try:
            await until(hub, lambda: hub.floor is not None, 10, "the hub's reader to start")
            start = hub.floor
            assert start is not None
            # 12 transitions: 3 restarts of 4 each, three times what the hub keeps.
            await asyncio.to_thread(sup.ctl, "restart", "a", "b", "c")

            def published() -> List[str]:
                ids = [i.decode() for i, _ in client.xrange(FLEET_HISTORY, "(" + start, "+")]
                return ids if len(ids) >= 12 else []

            stream = await asyncio.to_thread(wait_for, published, 10, "the listener to publish the 12 transitions")
            assert len(stream) == 12
            await until(hub, lambda: hub.last == stream[-1], 10, "the hub to read the restarts")

            # The oldest entries were evicted (in chunks: 4 or 5 are left)...
            assert not hub.covers(start) and hub.covers(stream[-5])
            assert hub.floor in (stream[-6], stream[-5])
            # ...so the server catches it up from Redis, in order, none missing.
            update = catch_up(client, FLEET_HISTORY, start)
            assert isinstance(update, Batch)
            assert [item.split('"entry_id":"')[1].split('"')[0] for item in update.items] == stream
            assert update.last_id == stream[-1]

            # Two pages at the same position are handed the same batch (encoded once).
            first, second = hub.after(stream[-5]), hub.after(stream[-5])
            assert first is not None and first is second and first.last_id == stream[-1]
            assert len(first.items) == 4
            assert hub.after(stream[-1]) is None  # nothing after the last entry yet
        finally:
            hub.stop()

    asyncio.run(scenario())
