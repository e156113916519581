"""The per-host politeness gate: which job may start next, and when.

A host may have at most `max_per_host` jobs in flight and `min_host_delay_s` between two
starts. `take` hands the next job whose host is free to any worker, so a slow host never
holds a worker that another host could use; a host that is not free yet waits in a timer
heap, and so does a job delayed for a retry, not a sleeping thread.

Every method but `take` is called with `lock` held: the crawler changes its own state
under the same lock, so a job's outcome and the gate move together.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Job = TypeVar("Job")


@dataclass
class _Host:
    key: str
    queue: deque = field(default_factory=deque)
    active: int = 0
    next_allowed: float = 0.0
    in_ready: bool = False
    timer_at: float | None = None


class HostScheduler(Generic[Job]):
    def __init__(self, max_per_host: int, min_host_delay_s: float):
        self.max_per_host = max_per_host
        self.min_host_delay_s = min_host_delay_s
        self.lock = threading.Condition()
        self._hosts: dict[str, _Host] = {}
        self._ready: deque[str] = deque()  # hosts free to start a job now
        self._timers: list[tuple[float, str]] = []  # (when, host): a host free again then
        self._delayed: list[tuple[float, int, str, Job]] = []  # (when, seq, host, job)
        self._seq = itertools.count()
        self._running = False

    def start(self) -> None:
        self._running = True

    def stop(self) -> None:
        """Wake every waiting `take`, which then returns None."""
        self._running = False
        self.lock.notify_all()

    def add(self, host_key: str, job: Job, first: bool = False) -> None:
        """Queue a job on its host, at the front with `first`."""
        host = self._host(host_key)
        if first:
            host.queue.appendleft(job)
        else:
            host.queue.append(job)
        self._check_host(host)

    def add_later(self, host_key: str, job: Job, until: float) -> None:
        """Queue a job on its host once the clock reaches `until`."""
        heapq.heappush(self._delayed, (until, next(self._seq), host_key, job))
        self.lock.notify()

    def take(self) -> tuple[str, Job] | None:
        """Block until a job may start; returns its host and the job, or None once stopped.

        The host counts the job in flight until `release`.
        """
        with self.lock:
            while True:
                if not self._running:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key, job = heapq.heappop(self._delayed)
                    self.add(key, job)
                while self._timers and self._timers[0][0] <= now:
                    _, key = heapq.heappop(self._timers)
                    host = self._hosts[key]
                    host.timer_at = None
                    self._check_host(host)
                while self._ready:
                    host = self._hosts[self._ready.popleft()]
                    host.in_ready = False
                    if (
                        not host.queue
                        or host.active >= self.max_per_host
                        or host.next_allowed > now
                    ):
                        self._check_host(host)
                        continue
                    job = host.queue.popleft()
                    host.active += 1
                    host.next_allowed = now + self.min_host_delay_s
                    self._check_host(host)
                    return host.key, job
                wake = [t[0] for t in (self._timers[:1] + self._delayed[:1])]
                self.lock.wait(timeout=max(0.0, min(wake) - now) if wake else 0.5)

    def release(self, host_key: str, hold_until: float = 0.0) -> None:
        """A job taken from this host is done with it; the host starts nothing before
        `hold_until` (a Retry-After holds the whole host)."""
        host = self._hosts[host_key]
        host.active -= 1
        host.next_allowed = max(host.next_allowed, hold_until)
        self._check_host(host)

    def _host(self, key: str) -> _Host:
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(key)
        return host

    def _check_host(self, host: _Host) -> None:
        if not host.queue or host.active >= self.max_per_host:
            return
        now = time.monotonic()
        if host.next_allowed <= now:
            if not host.in_ready:
                host.in_ready = True
                self._ready.append(host.key)
                self.lock.notify()
        elif host.timer_at is None or host.timer_at > host.next_allowed:
            host.timer_at = host.next_allowed
            heapq.heappush(self._timers, (host.next_allowed, host.key))
            self.lock.notify()
