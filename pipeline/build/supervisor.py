"""Run a function over items in child processes that are killed when one item takes too long.

    with Supervisor(function, timeout_s, warm_up=None) as supervisor:
        outcomes = supervisor.map(items)   # function(item), or an ItemFailed, per item

    with SupervisorPool(function, timeout_s, warm_up=None, size=4) as pool:
        outcomes = pool.map(items)         # the same, over `size` children at once

Some work has no time limit of its own (trafilatura can stay busy for minutes on one page),
and only killing the process it runs in stops it, even inside C code. The child is started
with the "spawn" method, safe in the multi-threaded processes of Beam workers (fork is not),
on first use and again after a kill or a crash. `map` sends the whole batch in one message
and receives each item's outcome as the child finishes it: the child works through the batch
without waiting on its parent, each item has its own time limit, and a timeout or a crash
always belongs to the item that caused it. Only the standard library's multiprocessing is
used, so it runs the same on DirectRunner, Dataflow, Flink and Spark.

`function` and `warm_up` must be picklable (module-level functions, or functools.partial of
them): they travel to the child when it starts.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

STARTUP_TIMEOUT_S = 120.0  # a cold child on a busy machine; far above the usual second


class ItemFailed(Exception):
    """An item without a result. `reason` is "timeout", "crash" (the child died or did not
    start), "error" (the function raised something else), or the reason of an ItemFailed
    (or subclass) that the function raised itself."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _serve(conn: Connection, function: Callable[[Any], Any], warm_up: Callable[[], Any] | None):
    """The child's loop: warm up, say it is ready, then for each batch received send the
    outcome of each item, until told to stop."""
    try:
        if warm_up is not None:
            warm_up()  # models and tables load here, never inside an item's time limit
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"[:500]))
        return
    # What is alive now lives as long as the child: frozen, the cyclic GC no longer walks it
    # on each full collection.
    gc.freeze()
    conn.send(("ready", None))  # time limits start counting from here
    while True:
        try:
            items = conn.recv()
        except (EOFError, OSError):
            return
        if items is None:
            return
        for item in items:
            try:
                outcome = function(item)
            except ItemFailed as e:
                outcome = e
            except Exception as e:  # any other error is this item's failure, not the child's
                outcome = ItemFailed("error", f"{type(e).__name__}: {e}"[:500])
            conn.send(outcome)


class Supervisor:
    """`function(item)` for batches of items in a killable child process; see the module."""

    def __init__(
        self,
        function: Callable[[Any], Any],
        timeout_s: float,
        warm_up: Callable[[], Any] | None = None,
    ):
        self.function = function
        self.timeout_s = timeout_s
        self.warm_up = warm_up
        self.restarts = 0
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while one is running."""
        return self._process.pid if self._process is not None else None

    def map(self, items: list[Any]) -> list[Any]:
        """For each item, in order: `function(item)`, or the ItemFailed that says why not.

        Each item has `timeout_s` from the moment the one before it came back. After a kill
        or a crash the items not yet done go to a fresh child.
        """
        outcomes: list[Any] = []
        while len(outcomes) < len(items):
            pending = items[len(outcomes) :]
            try:
                if self._process is None or not self._process.is_alive():
                    if self._process is not None:
                        self._kill()
                    self._start()
                self._conn.send(pending)
                for _ in pending:
                    if not self._conn.poll(self.timeout_s):
                        self._kill()
                        outcomes.append(ItemFailed("timeout", f"over {self.timeout_s:g} s"))
                        break
                    outcomes.append(self._conn.recv())
            except ItemFailed as failure:  # the child did not start
                outcomes.append(failure)
            except (EOFError, OSError) as e:
                self._kill()
                outcomes.append(ItemFailed("crash", f"child process died: {type(e).__name__}"))
        return outcomes

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        args = (child, self.function, self.warm_up)
        process = context.Process(target=_serve, args=args, daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        # Starting Python and warming up must not count against the first item.
        if not parent.poll(STARTUP_TIMEOUT_S):
            self._kill()
            raise ItemFailed("crash", f"child process not ready in {STARTUP_TIMEOUT_S} s")
        status, value = parent.recv()
        if status != "ready":
            self._kill()
            raise ItemFailed("crash", f"child process did not start: {value}")

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(timeout=10)
            self._process.close()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None
        self.restarts += 1

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
        if self._process is not None:
            self._process.join(timeout=2)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process.close()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SupervisorPool:
    """`size` Supervisors side by side: one batch is dealt round-robin to the children, each
    works through its share, and the outcomes come back in the items' order. Each item keeps
    its own time limit and a kill restarts only that item's child. The parent's threads only
    wait on pipes, so `size` children keep `size` cores busy."""

    def __init__(
        self,
        function: Callable[[Any], Any],
        timeout_s: float,
        warm_up: Callable[[], Any] | None = None,
        size: int = 1,
    ):
        if size < 1:
            raise ValueError(f"a pool needs at least one child, not {size}")
        self.children = [Supervisor(function, timeout_s, warm_up) for _ in range(size)]
        self._threads = ThreadPoolExecutor(max_workers=size) if size > 1 else None

    @property
    def restarts(self) -> int:
        return sum(child.restarts for child in self.children)

    def map(self, items: list[Any]) -> list[Any]:
        """As Supervisor.map; which child ran an item never changes its outcome."""
        if self._threads is None:
            return self.children[0].map(items)
        size = len(self.children)
        shares = [items[i::size] for i in range(size)]
        results = list(self._threads.map(lambda c, share: c.map(share), self.children, shares))
        outcomes: list[Any] = [None] * len(items)
        for i, result in enumerate(results):
            outcomes[i::size] = result
        return outcomes

    def close(self) -> None:
        for child in self.children:
            child.close()
        if self._threads is not None:
            self._threads.shutdown()

    def __enter__(self) -> SupervisorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
