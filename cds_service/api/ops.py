"""Operations endpoints: /healthz (the process is alive and knowledge is loaded)."""
from __future__ import annotations

from flask import Blueprint

from . import state

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> dict:
    """Alive, with the number of rules loaded."""
    return {"status": "ok", "rules": len(state().knowledge.rules)}
