"""The development SMART launcher's state: launches, authorization codes and access tokens, each a small JSON file
under <data_dir>/smart-launcher/<kind>/ with an expiry. Files, not process memory, so that every gunicorn worker of
one host sees a launch another registered; a code is taken once (an atomic rename decides who wins)."""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ID = re.compile(r"[A-Za-z0-9_-]{32,64}")
KINDS = ("launch", "code", "token")


class LaunchStore:
    """put() a payload for ttl_s seconds under a new random id; get() reads it while it lasts; take() reads and
    removes it, so that only one caller ever gets it."""

    def __init__(self, folder: Path, clock: Callable[[], float] = time.time):
        self.folder = folder
        self._clock = clock

    def put(self, kind: str, payload: dict[str, Any], ttl_s: float) -> str:
        """Store the payload; returns its id (URL-safe, 43 characters)."""
        where = self._dir(kind)
        self._prune(where)
        item_id = secrets.token_urlsafe(32)
        temporary = where / f".{item_id}.tmp"
        temporary.write_text(json.dumps({"expires_at": self._clock() + ttl_s, "payload": payload}), encoding="utf-8")
        os.replace(temporary, where / f"{item_id}.json")
        return item_id

    def get(self, kind: str, item_id: str) -> dict[str, Any] | None:
        """The payload while it lasts, else None (also for an id that is not one of ours)."""
        path = self._path(kind, item_id)
        return self._read(path) if path is not None else None

    def take(self, kind: str, item_id: str) -> dict[str, Any] | None:
        """The payload, removed from the store: a second take of the same id gets None."""
        path = self._path(kind, item_id)
        if path is None:
            return None
        claimed = path.with_name(f".{item_id}.{secrets.token_hex(8)}.taken")
        try:
            os.rename(path, claimed)  # atomic: of two concurrent takes, one finds the file gone
        except FileNotFoundError:
            return None
        try:
            return self._read(claimed)
        finally:
            claimed.unlink(missing_ok=True)

    def _dir(self, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        where = self.folder / kind
        where.mkdir(parents=True, exist_ok=True)
        return where

    def _path(self, kind: str, item_id: str) -> Path | None:
        if not isinstance(item_id, str) or not _ID.fullmatch(item_id):
            return None
        return self._dir(kind) / f"{item_id}.json"

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if record.get("expires_at", 0) < self._clock():
            path.unlink(missing_ok=True)
            return None
        return record.get("payload")

    def _prune(self, where: Path) -> None:
        """Remove lapsed entries of this kind (a development tool holds a handful)."""
        now = self._clock()
        for path in where.glob("*.json"):
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("expires_at", 0) < now:
                    path.unlink(missing_ok=True)
            except (OSError, ValueError):
                continue
