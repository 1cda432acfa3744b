"""The one publish/subscribe mechanism behind Runtime.subscribe and PatchManager.subscribe."""

from __future__ import annotations

import asyncio
import logging
import threading

from shellsvc.pubsub import Subscribers


def test_every_subscriber_gets_each_event_in_order_and_a_failing_one_is_only_logged(caplog):
    hub: Subscribers[int] = Subscribers()
    seen: list[tuple[str, int]] = []

    def broken(event: int) -> None:
        raise RuntimeError("subscriber bug")

    hub.add(lambda e: seen.append(("a", e)))
    hub.add(broken)
    hub.add(lambda e: seen.append(("b", e)))
    with caplog.at_level(logging.ERROR, logger="shellsvc.pubsub"):
        hub.emit(1)
        hub.emit(2)
    assert seen == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert "subscriber bug" in caplog.text


def test_close_call_and_with_all_unsubscribe():
    hub: Subscribers[str] = Subscribers()
    got: list[str] = []
    first = hub.add(got.append)
    second = hub.add(got.append)
    with hub.add(got.append):
        hub.emit("three")
    first.close()
    first.close()  # idempotent
    second()
    hub.emit("none")
    assert got == ["three"] * 3 and len(hub) == 0


def test_subscribing_from_other_threads_while_emitting_loses_nothing():
    hub: Subscribers[int] = Subscribers()
    received = 0
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            with hub.add(lambda e: None):
                pass

    def count(event: int) -> None:
        nonlocal received
        received += 1

    hub.add(count)
    threads = [threading.Thread(target=churn) for _ in range(7)]
    for t in threads:
        t.start()
    for i in range(20_000):
        hub.emit(i)
    stop.set()
    for t in threads:
        t.join()
    assert received == 20_000 and len(hub) == 1


async def test_an_async_subscriber_runs_as_a_task_on_the_loop():
    hub: Subscribers[str] = Subscribers()
    done = asyncio.Event()
    got: list[str] = []

    async def listener(event: str) -> None:
        await asyncio.sleep(0)
        got.append(event)
        done.set()

    hub.add(listener)
    hub.emit("reloaded")
    await asyncio.wait_for(done.wait(), 2)
    assert got == ["reloaded"]
