"""One hook call at a time does CPU work in a worker; calls waiting on FHIR step aside.

A worker runs several request threads (Settings.threads) so that calls waiting on a slow FHIR server cannot hold
every thread. But threads running Python at once contend for the GIL: a thread reading a request body from its socket
takes the GIL back after every read and preempts the thread that computes, which cost about 10 % more CPU per call at
4 threads on the bench's 290-resource request (docs/performance.md, "CPU gate"). The gate is a lock a hook call holds
from the start (its body read included) to the end, and lets go of while it waits on FHIR (`released()`), so the
work of a worker's calls runs one after another, as with a single thread, while their FHIR waits overlap, as with
many. Database round trips keep the turn: they are short (a SQLite write waits at most SPASM_CDS_HOOK_LOCK_WAIT_S
for the lock), every call makes them, and SQLAlchemy's Python around them would contend for the GIL again (letting
go there brought back most of the cost). Off (every call passes at once) with one thread or SPASM_CDS_CPU_GATE=off.

The price: a client that sends its body slowly holds its worker's turn, as it held a single-threaded worker. The
bundled proxy (SPASM_CDS_PROXY=nginx, the Docker image's default) forwards a request only once it has it whole.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CpuGate:
    """The gate of one app (one per worker process). `enabled=False` makes every method a no-op."""

    def __init__(self, enabled: bool) -> None:
        self._lock = threading.Lock() if enabled else None
        self._local = threading.local()

    @property
    def enabled(self) -> bool:
        return self._lock is not None

    def holding(self) -> bool:
        """This thread holds the gate."""
        return self._lock is not None and getattr(self._local, "held", False)

    def enter(self) -> None:
        """Take the gate for this thread's call (waits while another call computes). Taking it twice is a no-op."""
        if self._lock is not None and not getattr(self._local, "held", False):
            self._lock.acquire()
            self._local.held = True

    def leave(self) -> None:
        """Give the gate back if this thread holds it (at the end of the call, whatever happened)."""
        if self._lock is not None and getattr(self._local, "held", False):  # self.holding()
            self._local.held = False
            self._lock.release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let other calls compute while this one waits (on FHIR, on the database); take the gate back after."""
        holding = self.holding()
        if holding:
            self.leave()
        try:
            yield
        finally:
            if holding:
                self.enter()


OPEN = CpuGate(enabled=False)  # for callers without an app (the CLI, tests in process): never waits
