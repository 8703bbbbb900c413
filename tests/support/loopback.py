"""Processes on 127.0.0.1 for integration tests: free ports, bounded start-up waits, process-group stops."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.1


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout_s: float = 30.0
) -> tuple[int, bytes]:
    """Send one HTTP request and return (status, body), for any status including errors."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def raw_exchange(port: int, request: bytes, timeout_s: float = 10.0) -> tuple[bytes, bytes]:
    """Send request bytes as they are (for requests an HTTP client would not make) to 127.0.0.1:port and return
    the answer's head and body; reads until the head and at least a short body are in, or the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 50:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    return head, payload


def wait_until_ok(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> str | None:
    """Poll url until it answers 200; return None then, or why it never did."""
    deadline = time.monotonic() + timeout_s
    last_answer = "no connection"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with code {process.returncode} before {url} answered"
        try:
            status = http_request("GET", url, timeout_s=2.0)[0]
            if status == 200:
                return None
            last_answer = f"HTTP {status}"
        except OSError as error:
            last_answer = str(error)
        time.sleep(POLL_INTERVAL_S)
    return f"{url} did not answer 200 within {timeout_s:.0f} s (last: {last_answer})"


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process's group, then SIGKILL it if it has not exited within timeout_s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)
    except ProcessLookupError:
        process.wait(timeout=timeout_s)


def log_tail(path: Path, chars: int = 4000) -> str:
    """Return the last chars of a log file, or a note if there is none."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


class LoopbackProcess:
    """A server subprocess in its own process group and temp dir, stopped and cleaned up on exit."""

    _process: subprocess.Popen[bytes] | None = None
    _workdir: Path | None = None

    def _start(self, name: str, command: list[str], cwd: Path, env: dict[str, str], health_url: str) -> None:
        """Start command with its output in <workdir>/<name>.log; wait until health_url answers 200."""
        assert self._workdir is not None
        self.log_path = self._workdir / f"{name}.log"
        try:
            with open(self.log_path, "wb") as log:
                self._process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)
            problem = wait_until_ok(health_url, self._process, START_TIMEOUT_S)
            if problem:
                raise RuntimeError(f"{name} {problem}; log tail:\n{log_tail(self.log_path)}")
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            stop_process_group(self._process)
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The server's process, from its start to __exit__."""
        assert self._process is not None, "not started"
        return self._process

    def log_text(self) -> str:
        """Everything the process has written to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


class ServedInThread:
    """Base of the in-process test servers (http.server or werkzeug) that serve on a daemon thread while a `with`
    block runs: __enter__ builds the server and hands it to _serve; __exit__ stops it and waits for the thread."""

    def _serve(self, server) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
