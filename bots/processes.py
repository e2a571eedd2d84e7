"""Work run in processes of its own: ``InProcesses`` for the cycles fills wake
(``bots.user_streams``). Nothing here imports a model: a spawned process unpickles what it
is given before Django is set up in it."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from django.conf import settings


class InProcesses:
    """``fn(bot_id)`` run in a pool of processes of its own (spawned, each with Django set up on
    this process's databases, then the function ``setup`` names called with ``setup_args``),
    waited for by the calling thread: a ``Waker``'s ``run`` whose cycles do not share this
    process's interpreter lock. ``fn`` is a module-level function (pickled by name); ``setup``
    is a dotted path, imported once Django is set up."""

    def __init__(
        self,
        fn: Callable[[int], Any],
        processes: int,
        *,
        setup: str = "",
        setup_args: tuple[Any, ...] = (),
    ) -> None:
        self.fn = fn
        self.pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_process_setup,
            initargs=(settings.DATABASES, setup, setup_args),
        )

    def __call__(self, bot_id: int) -> Any:
        return self.pool.submit(self.fn, bot_id).result()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _process_setup(databases: dict[str, Any], setup: str, args: tuple[Any, ...]) -> None:
    """A wake-up process: Django on the parent's databases (a test's too), then ``setup``."""
    import django
    from django.utils.module_loading import import_string

    settings.DATABASES = databases
    django.setup()
    if setup:
        import_string(setup)(*args)
