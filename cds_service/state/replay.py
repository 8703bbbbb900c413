"""JWT replay protection: remember each accepted (issuer, jti) in the database until the token expires. While the
database cannot take the insert (down, or SQLite's write lock held past hook_lock_wait_s), each worker remembers the
ids it accepts in process and writes them through once the database answers again (docs/hardening.md)."""
from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError

from ..telemetry import JTI_IN_PROCESS
from . import Database, Every, is_busy
from .tables import JtiSeen

log = logging.getLogger(__name__)

_PRUNE_EVERY_S = 60.0
_RETRY_S = 1.0  # while the database is unavailable, try it again at most this often (not on every call)
_FLUSH_BATCH = 1000


class ReplayMemoryFull(Exception):
    """The database is unavailable and the worker's in-process replay memory is full: no token can be accepted
    without risking a replay, so the call must be retried later."""


class JtiStore:
    """Insert-or-fail on (issuer, jti); shared by every worker and replica that uses the same database, with an
    in-process fallback of at most max_kept ids per worker while the database is unavailable."""

    def __init__(self, database: Database, clock=time.time, max_kept: int = 100_000):
        self._database = database
        self._clock = clock
        self._max_kept = max_kept
        self._prune_schedule = Every(_PRUNE_EVERY_S)
        self._insert = database.insert(JtiSeen).on_conflict_do_nothing().returning(JtiSeen.jti)
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str], int] = {}  # accepted while the database could not take them -> expires_at
        self._retry_at = 0.0
        self._degraded = False

    def first_use(self, issuer: str, jti: str, expires_at: int) -> bool:
        """True if this jti was not seen from this issuer within its lifetime (and remember it); False on replay.
        Raises ReplayMemoryFull when neither the database nor the in-process memory can remember it."""
        now = self._clock()
        with self._lock:
            seen = self._kept.get((issuer, jti))
        if seen is not None and seen >= now:
            return False
        if now >= self._retry_at:
            try:
                if self._kept:
                    self._write_through(int(now))
                return self._first_use_in_database(issuer, jti, expires_at, int(now))
            except SQLAlchemyError as exc:
                self._retry_at = now + _RETRY_S
                if not self._degraded:
                    self._degraded = True
                    log.warning("replay store: the database cannot take JWT ids (%s); this worker remembers the "
                                "ids it accepts in process until the database is back",
                                "write lock busy" if is_busy(exc) else type(exc).__name__)
        return self._keep(issuer, jti, expires_at, now)

    def kept(self) -> int:
        """How many ids this worker holds in process, waiting to be written through."""
        with self._lock:
            return len(self._kept)

    def _first_use_in_database(self, issuer: str, jti: str, expires_at: int, now: int) -> bool:
        with self._database.brief_transaction() as conn:
            if self._prune_schedule.due(now):
                conn.execute(delete(JtiSeen).where(JtiSeen.expires_at < now))
            else:
                # a lapsed record of the same id must not block a new token that reuses it
                conn.execute(delete(JtiSeen).where(JtiSeen.issuer == issuer, JtiSeen.jti == jti,
                                                   JtiSeen.expires_at < now))
            inserted = conn.execute(self._insert, {"issuer": issuer, "jti": jti, "expires_at": expires_at}).first()
        if self._degraded:
            self._degraded = False
            log.warning("replay store: the database takes JWT ids again")
        return inserted is not None

    def _keep(self, issuer: str, jti: str, expires_at: int, now: float) -> bool:
        with self._lock:
            seen = self._kept.get((issuer, jti))
            if seen is not None and seen >= now:
                return False
            if len(self._kept) >= self._max_kept:
                self._kept = {k: v for k, v in self._kept.items() if v >= now}
                if len(self._kept) >= self._max_kept:
                    raise ReplayMemoryFull(f"{len(self._kept)} JWT ids held in process")
            self._kept[(issuer, jti)] = expires_at
        JTI_IN_PROCESS.labels(event="kept").inc()
        return True

    def _write_through(self, now: int) -> None:
        """Store the ids accepted while the database was unavailable; those already there were also accepted by
        another worker or replica meanwhile (the residual risk, logged)."""
        with self._lock:
            pending = [(k, v) for k, v in self._kept.items() if v >= now]
        written = conflicts = 0
        for start in range(0, len(pending), _FLUSH_BATCH):
            batch = pending[start:start + _FLUSH_BATCH]
            rows = [{"issuer": i, "jti": j, "expires_at": e} for (i, j), e in batch]
            with self._database.brief_transaction() as conn:
                inserted = len(conn.execute(self._insert.values(rows)).all())
            written += inserted
            conflicts += len(batch) - inserted
            with self._lock:
                for key, _ in batch:
                    self._kept.pop(key, None)
        with self._lock:
            for key in [k for k, v in self._kept.items() if v < now]:
                del self._kept[key]
        JTI_IN_PROCESS.labels(event="written_through").inc(written)
        if conflicts:
            JTI_IN_PROCESS.labels(event="conflict").inc(conflicts)
        log.log(logging.WARNING if conflicts else logging.INFO,
                "replay store: %d JWT id(s) accepted while the database was unavailable written through; %d were "
                "already stored (accepted by another worker or replica meanwhile: possible replay)", written, conflicts)
