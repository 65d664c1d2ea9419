"""The review's parallel work (reviewers, LLM passes, verification calls) on daemon threads.

A `ThreadPoolExecutor`'s threads are joined when the interpreter exits, so a model call still
running when the review is stopped (Ctrl-C, SIGTERM: a service manager's stop of `run` with the
review gate on) held the process's exit until the call came back: minutes, past the grace
period before SIGKILL. Here a stopped review cancels what has not started, and what is running
dies with the process: what its calls had cost is already billed (budget.py), and the analyzers,
which are processes, are killed by the review (`stop_tools`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class DaemonPool:
    """At most `workers` tasks at once, each on a daemon thread."""

    def __init__(self, workers: int, name: str) -> None:
        self._slots = threading.BoundedSemaphore(max(1, workers))
        self._cancelled = threading.Event()
        self._name = name
        self._count = 0

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            with self._slots:
                if self._cancelled.is_set():
                    future.cancel()
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    future.set_result(fn())
                except BaseException as exc:  # handed to whoever waits on the future
                    future.set_exception(exc)

        self._count += 1
        threading.Thread(target=work, name=f"{self._name}-{self._count}", daemon=True).start()
        return future

    def cancel(self) -> None:
        """Tasks that have not started never will; running ones are left to the process."""
        self._cancelled.set()
