"""Orders first, bookkeeping after (``bots.orders_first``): threads of one process."""

from __future__ import annotations

import threading

import pytest

from bots import orders_first


@pytest.fixture(autouse=True)
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orders_first, "WAIT_SECONDS", 30.0)  # only the others end a wait here


def run(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_cycle_whose_order_is_out_books_after_the_others_have_sent() -> None:
    log: list[str] = []
    a_began, b_began, b_go = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        orders_first.begin()
        a_began.set()
        b_began.wait(5)
        log.append("a sent")
        orders_first.sent()
        log.append("a books")
        orders_first.end()

    def b() -> None:
        a_began.wait(5)
        orders_first.begin()
        b_began.set()
        b_go.wait(5)
        log.append("b sent")
        orders_first.sent()
        log.append("b books")
        orders_first.end()

    threads = [run(a), run(b)]
    b_began.wait(5)
    while "a sent" not in log:
        threading.Event().wait(0.001)
    b_go.set()
    for t in threads:
        t.join(10)
    assert log.index("a books") > log.index("b sent")
    assert orders_first.sending() == 0


def test_a_cycle_that_fails_before_sending_holds_nobody_back() -> None:
    done = threading.Event()
    began = threading.Event()

    def failing() -> None:
        orders_first.begin()
        began.set()
        try:
            raise RuntimeError("refused")
        except RuntimeError:
            pass
        finally:
            orders_first.end()

    def other() -> None:
        orders_first.begin()
        began.wait(5)
        orders_first.sent()
        done.set()

    threads = [run(other), run(failing)]
    for t in threads:
        t.join(10)
    assert done.is_set()
    assert orders_first.sending() == 0


def test_a_cycle_with_nothing_urgent_never_waits() -> None:
    orders_first.begin()  # this thread has an order to send
    waited = threading.Event()

    def chain_cycle() -> None:
        orders_first.sent()  # never began: it does not wait for this thread
        orders_first.end()
        waited.set()

    run(chain_cycle).join(5)
    assert waited.is_set()
    orders_first.end()
    assert orders_first.sending() == 0
