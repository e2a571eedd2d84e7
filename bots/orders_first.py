"""Orders first, bookkeeping after: where live cycles run side by side (the wake-up processes
of ``bots.user_streams``, several cycles in each), a cycle whose counter-order is out waits to
write its bookkeeping (the order marked open, its event, the equity mark, the push, the lease
given back) while another cycle of the process still has a counter-order to send, at most
``WAIT_SECONDS``. In a burst of fills the interpreter goes to the orders on their way to the
exchange first: the bookkeeping of the first cycles no longer delays the last one's order.

A cycle with a streamed fill ``begin``s once it has read it, ``sent`` is called when its
first order is on the wire (it stops counting and may wait, once), and ``end`` when it ends
whatever happened (an order refused, an error: nobody waits for it any longer).
"""

from __future__ import annotations

import threading

WAIT_SECONDS = 0.05

_turns = threading.Condition()
_sending = 0
_mine = threading.local()


def begin() -> None:
    """This thread's cycle has a counter-order to send."""
    global _sending
    if getattr(_mine, "counted", False):
        return
    _mine.counted = True
    with _turns:
        _sending += 1


def end() -> None:
    """This thread's cycle has nothing (more) to send first."""
    global _sending
    if not getattr(_mine, "counted", False):
        return
    _mine.counted = False
    with _turns:
        _sending -= 1
        if not _sending:
            _turns.notify_all()


def sent() -> None:
    """This thread's first order is out: the others' go before its bookkeeping (once per
    ``begin``; a thread that did not begin never waits)."""
    if not getattr(_mine, "counted", False):
        return
    end()
    with _turns:
        _turns.wait_for(lambda: not _sending, timeout=WAIT_SECONDS)  # read now: tests set it


def sending() -> int:
    """How many cycles of this process have an order to send first (for tests)."""
    return _sending
