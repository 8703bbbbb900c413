"""The CDS service run for real (`python -m cds_service serve`) in a subprocess on 127.0.0.1, for integration tests."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.support.loopback import LoopbackProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServiceServer(LoopbackProcess):
    """One service process on a free loopback port for the duration of a `with` block; its base URL is `.url`."""

    def __init__(self, extra_env: dict[str, str] | None = None, workers: int = 1) -> None:
        self._extra_env = dict(extra_env or {})
        self._workers = workers
        self.port = 0
        self.url = ""

    def __enter__(self) -> ServiceServer:
        self._workdir = Path(tempfile.mkdtemp(prefix="spasm-cds-service-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "cds_service", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(self._workers)]
        # Unbuffered, so the log tail in a start-up failure shows the last words before a crash. A database of its
        # own unless told otherwise, so that no run sees the cards and snoozes of an earlier one.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SPASM_CDS_DATA_DIR": str(self._workdir / "data"),
               **self._extra_env}
        self._start("service", command, REPO_ROOT, env, f"{self.url}/healthz")
        return self
