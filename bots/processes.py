"""Work run in processes of its own: ``InProcesses`` for the cycles fills wake
(``bots.user_streams``). Nothing here imports a model: a spawned process unpickles what it
is given before Django is set up in it."""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings

# How long the collector waits for an answer before it looks whether its processes still live.
LOOK_SECONDS = 0.5
# Cycles one process runs side by side, by default: a woken cycle waits on the database, the
# cache and the exchange, and those waits overlap under one interpreter lock; but its work is
# mostly CPU, so more threads share one core more ways. Three in each of two processes: the
# five fills one price move often brings start at once, spread over both cores (with four, one
# process could take four of them onto one core; with two, the fifth waited for a thread).
THREADS = 3


class InProcesses:
    """``fn(bot_id)`` run in processes of its own (spawned, each with Django set up on this
    process's databases, then the function ``setup`` names called with ``setup_args``), in
    ``threads`` threads in each, waited for by the calling thread: a ``Waker``'s ``run`` whose
    cycles do not share this process's interpreter lock. A woken cycle mostly waits (the
    database, the cache, the exchange), so the threads of a process overlap their waits: the
    fills of one price move are booked and countered side by side, not in a queue. A process
    takes a bot only when one of its threads is free, so no bot waits behind a busy process
    while another is idle. ``fn`` is a module-level function (pickled by name); ``setup`` is
    a dotted path, imported once Django is set up. A process that dies fails every cycle
    waited for and every later one (``RuntimeError``), as a broken process pool does."""

    def __init__(
        self,
        fn: Callable[[int], Any],
        processes: int,
        *,
        threads: int = THREADS,
        setup: str = "",
        setup_args: tuple[Any, ...] = (),
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.threads = threads
        self._jobs: Any = ctx.Queue()
        self._answers: Any = ctx.Queue()
        self._waiting: dict[int, Future[Any]] = {}
        self._ids = itertools.count()
        self._guard = threading.Lock()
        self._broken = ""
        self._stopping = False
        self._up = 0
        self._all_up = threading.Event()
        self.processes = [
            ctx.Process(
                target=_serve,
                # The function pickled apart: unpickled once Django is set up in the process.
                args=(
                    pickle.dumps(fn),
                    threads,
                    settings.DATABASES,
                    setup,
                    setup_args,
                    self._jobs,
                    self._answers,
                ),
                daemon=True,
                name=f"wake-{i}",
            )  # fmt: skip
            for i in range(processes)
        ]
        for process in self.processes:
            process.start()
        self._collector = threading.Thread(target=self._collect, name="wake-answers", daemon=True)
        self._collector.start()

    @property
    def capacity(self) -> int:
        """How many calls run at once: its processes' threads."""
        return len(self.processes) * self.threads

    def __call__(self, bot_id: int) -> Any:
        return self.submit(bot_id).result()

    def submit(self, bot_id: int) -> Future[Any]:
        future: Future[Any] = Future()
        with self._guard:
            if self._broken:
                raise RuntimeError(self._broken)
            job = next(self._ids)
            self._waiting[job] = future
        self._jobs.put((job, bot_id))
        return future

    def ready(self, timeout: float = 60.0) -> bool:
        """Whether every process is up (Django set up in it) within ``timeout`` seconds."""
        return self._all_up.wait(timeout)

    def shutdown(self) -> None:
        """Let each process finish what it runs, then stop them; nothing waits forever."""
        self._stopping = True
        for _ in self.processes:
            self._jobs.put(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        self._collector.join(timeout=2 * LOOK_SECONDS + 1)
        self._fail_all("the wake-up processes were shut down")

    def _collect(self) -> None:
        """Hand each answer to the cycle waiting for it; a process that died breaks the pool."""
        while True:
            try:
                job, ok, value = self._answers.get(timeout=LOOK_SECONDS)
            except queue.Empty:
                if self._stopping:
                    return
                dead = [p for p in self.processes if not p.is_alive()]
                if dead:
                    self._fail_all(f"a wake-up process died (exit code {dead[0].exitcode})")
                    return
                continue
            if job is None:  # a process is up
                self._up += 1
                if self._up == len(self.processes):
                    self._all_up.set()
                continue
            with self._guard:
                future = self._waiting.pop(job, None)
            if future is None:
                continue
            if ok:
                future.set_result(pickle.loads(value))
            else:
                future.set_exception(RuntimeError(value))

    def _fail_all(self, why: str) -> None:
        with self._guard:
            self._broken = self._broken or why
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(RuntimeError(why))


def _serve(
    pickled_fn: bytes,
    threads: int,
    databases: dict[str, Any],
    setup: str,
    setup_args: tuple[Any, ...],
    jobs: Any,
    answers: Any,
) -> None:
    """A wake-up process: Django set up, then ``fn`` run for each bot it is given, in
    ``threads`` threads (each keeps its database connection between cycles); a bot is taken
    only when a thread is free. Ends on ``None``, once what runs is done."""
    _process_setup(databases, setup, setup_args)
    fn: Callable[[int], Any] = pickle.loads(pickled_fn)  # its module may need Django set up
    free = threading.Semaphore(threads)

    def run(job: int, bot_id: int) -> None:
        try:  # pickled here: a result that cannot be is an error told, not an answer lost
            answers.put((job, True, pickle.dumps(fn(bot_id))))
        except BaseException as e:  # told to the caller, as a process pool would
            answers.put((job, False, f"{type(e).__name__}: {e}"))
        finally:
            free.release()

    answers.put((None, True, None))  # up
    with ThreadPoolExecutor(threads, thread_name_prefix="woken-cycle") as pool:
        while True:
            free.acquire()
            item = jobs.get()
            if item is None:
                break
            pool.submit(run, *item)


def _process_setup(databases: dict[str, Any], setup: str, args: tuple[Any, ...]) -> None:
    """A wake-up process: Django on the parent's databases (a test's too), then ``setup``."""
    import django
    from django.utils.module_loading import import_string

    settings.DATABASES = databases
    django.setup()
    if setup:
        import_string(setup)(*args)
