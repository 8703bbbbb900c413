"""JWT replay protection: remember each accepted (issuer, jti) in the database until the token expires."""
from __future__ import annotations

import time

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from . import Database, Every
from .tables import JtiSeen

_PRUNE_EVERY_S = 60.0


class JtiStore:
    """Insert-or-fail on (issuer, jti); shared by every worker and replica that uses the same database."""

    def __init__(self, database: Database, clock=time.time):
        self._engine = database.engine
        self._clock = clock
        self._prune_schedule = Every(_PRUNE_EVERY_S)

    def first_use(self, issuer: str, jti: str, expires_at: int) -> bool:
        """True if this jti was not seen from this issuer within its lifetime (and remember it); False on replay."""
        now = int(self._clock())
        try:
            with self._engine.begin() as conn:
                if self._prune_schedule.due(now):
                    conn.execute(delete(JtiSeen).where(JtiSeen.expires_at < now))
                else:
                    # a lapsed record of the same id must not block a new token that reuses it
                    conn.execute(delete(JtiSeen).where(JtiSeen.issuer == issuer, JtiSeen.jti == jti,
                                                       JtiSeen.expires_at < now))
                conn.execute(insert(JtiSeen).values(issuer=issuer, jti=jti, expires_at=expires_at))
        except IntegrityError:
            return False
        return True
