"""AppState: what every request of a running app reads. Its own module, so that the HTTP edge (api/) can name it
without importing the package root that builds the app (no import cycle between the two)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from .cpu_gate import OPEN, CpuGate
from .knowledge.model import Knowledge
from .settings import Settings

if TYPE_CHECKING:  # imported on first create_app, so tools that never serve skip JWT and SQL libraries
    from .auth import Verifier
    from .state import Database
    from .state.feedback import FeedbackStore
    from .state.suppression import CardMemory


@dataclass(frozen=True)
class AppState:
    """What every request reads: settings, knowledge, the slots of calls fetching from FHIR, the clocks, the
    database with the card memory and feedback store on it, and the JWT verifier (None when SPASM_CDS_AUTH=off)."""

    settings: Settings
    knowledge: Knowledge
    fhir_calls: threading.Semaphore
    today: Callable[[], date]
    database: Database
    memory: CardMemory
    feedback: FeedbackStore
    verifier: Verifier | None = None
    readiness_checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    now: Callable[[], float] = time.time  # epoch seconds: snoozes, repeat windows, feedback receipt
    cpu_gate: CpuGate = OPEN  # hook calls of this worker take turns computing (cpu_gate.py)

