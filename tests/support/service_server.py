"""The CDS service run for real (`python -m cds_service serve`) in a subprocess on 127.0.0.1, for integration tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from tests.support.fhir_server import free_port, log_tail, stop_process_group, wait_until_ok

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0


class ServiceServer:
    """One service process on a free loopback port for the duration of a `with` block; its base URL is `.url`."""

    def __init__(self, extra_env: dict[str, str] | None = None, workers: int = 1) -> None:
        self._extra_env = dict(extra_env or {})
        self._workers = workers
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.port = 0
        self.url = ""

    def __enter__(self) -> ServiceServer:
        self._workdir = Path(tempfile.mkdtemp(prefix="spasm-cds-service-"))
        self.log_path = self._workdir / "service.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "cds_service", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(self._workers)]
        # Unbuffered, so the log tail in a start-up failure shows the last words before a crash.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self._extra_env}
        try:
            with open(self.log_path, "wb") as log:
                self._process = subprocess.Popen(
                    command,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            problem = wait_until_ok(f"{self.url}/healthz", self._process, START_TIMEOUT_S)
            if problem:
                raise RuntimeError(f"cds_service {problem}; log tail:\n{log_tail(self.log_path)}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            stop_process_group(self._process)
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def log_text(self) -> str:
        """Return everything the service has written to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")
