"""raptor alert's delivery through Apprise to a real HTTP receiver on loopback: delivered,
retried with backoff while the receiver is down, never dropped, no URL in the log."""

from __future__ import annotations

import logging
from typing import Iterator, List

import pytest

from harness.receivers import HttpReceiver
from raptor.alert.config import Target
from raptor.alert.deliver import Deliverer, apprise_send
from raptor.alert.notices import Notice

SECRET = "hook-pa55word"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as found:
        yield found


def notice(title: str) -> Notice:
    return Notice(title, "body of " + title, ("hook",), (("fatal", "web1", "api"),), "opened")


def test_a_notice_reaches_the_receiver(receiver: HttpReceiver) -> None:
    target = Target("hook", f"json://user:{SECRET}@127.0.0.1:{receiver.port}/hook")
    deliverer = Deliverer({"hook": target}, apprise_send)
    deliverer.submit(notice("[raptor] fatal: web1 api"), 0.0)
    [outcome] = deliverer.run_due(0.0)
    assert outcome.delivered and outcome.attempts == 1
    assert [(b["title"], b["message"]) for b in receiver.bodies] == [
        ("[raptor] fatal: web1 api", "body of [raptor] fatal: web1 api")
    ]
    assert deliverer.pending() == 0


def test_a_receiver_that_is_down_gets_it_when_it_is_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = HttpReceiver()  # not started: nothing listens there yet
    target = Target("hook", f"json://user:{SECRET}@127.0.0.1:{receiver.port}/hook")
    deliverer = Deliverer({"hook": target}, apprise_send)
    deliverer.submit(notice("first"), 0.0)
    assert [(o.delivered, o.retry_in) for o in deliverer.run_due(0.0)] == [(False, 5.0)]
    assert [(o.delivered, o.retry_in) for o in deliverer.run_due(5.0)] == [(False, 10.0)]  # backoff doubles
    assert deliverer.run_due(14.9) == [] and deliverer.next_due() == 15.0
    receiver.start()
    try:
        [outcome] = deliverer.run_due(15.0)
        assert outcome.delivered and outcome.attempts == 3
        assert [b["title"] for b in receiver.bodies] == ["first"]
    finally:
        receiver.stop()
    assert "could not deliver 'first' to hook (attempt 1); retrying in 5 s" in caplog.text
    assert SECRET not in caplog.text and "json://" not in caplog.text


def test_a_sender_that_raises_loses_nothing() -> None:
    calls: List[str] = []

    def flaky(target: Target, title: str, body: str) -> bool:
        calls.append(title)
        if len(calls) == 1:
            raise ConnectionError("boom")
        return True

    deliverer = Deliverer({"hook": Target("hook", "json://x")}, flaky)
    deliverer.submit(notice("n"), 0.0)
    assert [o.delivered for o in deliverer.run_due(0.0)] == [False]
    assert [o.delivered for o in deliverer.run_due(5.0)] == [True]
    assert calls == ["n", "n"]
