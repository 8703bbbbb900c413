"""`spasm-cds serve` with SPASM_CDS_PROXY=nginx: Debian's nginx in front of gunicorn, so that slow clients cannot
starve the service.

gunicorn's gthread worker reads a request on a worker thread: a client that trickles its request head one byte at a
time holds that thread for as long as it likes, and a handful of such sockets stop the service (docs/hardening.md
has the measurements). nginx reads and buffers each request (head and body, with timeouts) before it hands it over,
so gunicorn only ever sees complete requests, over a private unix socket.

This process supervises both: it starts gunicorn (`serve` again, bound to the socket, proxy off) and nginx, passes
SIGTERM, SIGINT and SIGHUP on to both, and exits as soon as either exits, so that a container's restart policy sees
it."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .settings import PREFIX, Settings

log = logging.getLogger(__name__)
_NGINX_PLACES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def find_nginx() -> str | None:
    """The nginx executable: on PATH, or where Debian and the nginx sources install it."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in _NGINX_PLACES if os.access(p, os.X_OK)), None)


def nginx_config(settings: Settings, upstream: Path, runtime: Path) -> str:
    """The nginx configuration: listen where the service would, buffer whole requests within the client timeout
    and the body limit, pass them to gunicorn's unix socket, and keep nothing on disk but temp files in `runtime`."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    timeout = f"{max(1, round(settings.proxy_client_timeout_s))}s"
    temp = "\n".join(f"    {kind}_temp_path {runtime / kind};" for kind in _TEMP_KINDS)
    errors = "\n".join(_error_location(status, code, text) for status, code, text in _NGINX_ERRORS)
    return f"""# written by spasm-cds serve (SPASM_CDS_PROXY=nginx); do not edit
worker_processes 1;
pid {runtime / 'nginx.pid'};
error_log stderr warn;
events {{ worker_connections {settings.proxy_max_connections}; }}
http {{
    access_log off;
    server_tokens off;
{temp}
    # a request must arrive whole within these; it is buffered in memory, then handed over
    client_header_timeout {timeout};
    client_body_timeout {timeout};
    send_timeout {timeout};
    keepalive_timeout 5s;
    client_max_body_size {settings.max_body_bytes};
    client_body_buffer_size {settings.max_body_bytes};
    large_client_header_buffers 4 16k;
    upstream spasm_cds {{
        server unix:{upstream};
        keepalive 16;
    }}
    server {{
        listen {host}:{settings.port} backlog=1024;
        # nginx's own refusals in the service's one error shape
{errors}
        location / {{
            proxy_pass http://spasm_cds;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_request_buffering on;
            proxy_buffering on;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


# what nginx itself may answer (status, FHIR issue code, diagnostics); 494 is nginx's "request header too large"
_NGINX_ERRORS = (
    (400, "invalid", "the request could not be read"),
    (413, "too-long", "the request body is larger than the service accepts"),
    (414, "too-long", "the request URL is too long"),
    (494, "too-long", "the request headers are too large"),
    (502, "transient", "the service is not answering; try again shortly"),
    (503, "transient", "the service is not answering; try again shortly"),
    (504, "transient", "the service took too long to answer; try again"),
)


def _error_location(status: int, code: str, text: str) -> str:
    shown = 400 if status == 494 else 503 if status == 502 else status
    body = ('{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"%s","diagnostics":"%s"}]}'  # noqa: UP031 - a JSON template: an f-string would double every brace
            % (code, text))
    return (f"        error_page {status} /.spasm-cds-error/{status};\n"
            f"        location = /.spasm-cds-error/{status} {{ internal; default_type application/fhir+json; "
            f"return {shown} '{body}'; }}")


def supervise(settings: Settings, nginx: str) -> int:
    """Run gunicorn on a private unix socket and nginx in front of it until either exits or a signal arrives."""
    runtime = Path(tempfile.mkdtemp(prefix="spasm-cds-proxy-"))
    # nginx started as root runs its workers as nobody: they must reach the socket (the folder stays unlistable)
    runtime.chmod(0o711)
    for kind in _TEMP_KINDS:
        (runtime / kind).mkdir()
    upstream = runtime / "gunicorn.sock"
    config = runtime / "nginx.conf"
    config.write_text(nginx_config(settings, upstream, runtime), encoding="utf-8")
    test = subprocess.run([nginx, "-t", "-q", "-e", "stderr", "-p", str(runtime), "-c", str(config)],
                          capture_output=True, text=True, check=False)
    if test.returncode != 0:
        print(f"spasm-cds: nginx refused its configuration: {test.stderr.strip()}", file=sys.stderr)
        shutil.rmtree(runtime, ignore_errors=True)
        return 2
    env = {**os.environ, f"{PREFIX}PROXY": "none"}
    app = subprocess.Popen([sys.executable, "-m", "cds_service", "serve", "--unix-socket", str(upstream)], env=env)
    if not _wait_for_socket(upstream, app, 120.0):
        code = app.wait()
        shutil.rmtree(runtime, ignore_errors=True)
        return code or 2
    # its own process group: if its master dies, its workers (which keep the port) are stopped with the group
    proxy = subprocess.Popen([nginx, "-e", "stderr", "-p", str(runtime), "-c", str(config), "-g", "daemon off;"],
                             start_new_session=True)
    children = {app.pid: "gunicorn", proxy.pid: "nginx"}
    stopping: list[int] = []

    def forward(signum, _frame) -> None:
        stopping.append(signum)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT if pid == proxy.pid and signum == signal.SIGTERM else signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    status = 0
    try:
        pid, raw = _wait_any(tuple(children))
        status = os.waitstatus_to_exitcode(raw)
        if not stopping:
            print(f"spasm-cds: {children[pid]} exited ({status}); stopping", file=sys.stderr)
            status = status or 1
        for other in children:
            if other != pid:
                _stop(other, proxy.pid)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proxy.pid, signal.SIGKILL)  # any nginx worker its master left behind
        shutil.rmtree(runtime, ignore_errors=True)
    return 0 if stopping else status


def _wait_for_socket(path: Path, app: subprocess.Popen, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if app.poll() is not None:
            return False
        time.sleep(0.05)
    app.terminate()
    return False


def _wait_any(pids: tuple[int, ...]) -> tuple[int, int]:
    """Wait until one of the children exits (signals interrupt and resume the wait)."""
    while True:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            return pids[0], 0
        if pid in pids:
            return pid, raw


def _stop(pid: int, nginx_pid: int) -> None:
    try:
        os.kill(pid, signal.SIGQUIT if pid == nginx_pid else signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
