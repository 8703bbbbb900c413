"""Memory, start-up and call times of this service beside a bare HealthChain CDS Hooks service (issue 16), measured
the same way (bench/startup.py's measurement).

Usage:
  python3 -m venv /tmp/hc && /tmp/hc/bin/pip install healthchain   # the peer in a virtualenv of its own
  .venv/bin/python bench/peers.py --healthchain-venv /tmp/hc [--runs 3] [--calls 20] [--smoke]

Four servers are started `--runs` times each, alternating, on 127.0.0.1 with free ports:
- this service (this checkout, as it is) under gunicorn with 1 worker and with 2 workers, on a database already at the
  newest migration (a restart), de-duplication off so that every call renders its cards;
- a minimal HealthChain service written here (HealthChainAPI, one CDSHooksService with one patient-view hook whose
  handler returns one fixed card, nothing else), run with uvicorn in one process, and as `healthchain serve` (its
  command, which runs uvicorn as a child process of itself).
Each is called with the same patient-view request (the demo patient with contributors, prefetch complete): ready is
the time from launch until the discovery endpoint answers 200 (this service: /healthz with all workers up), then the
first call, the median of the next `--calls`, and the memory of the process tree once they are done. The peer's
handler does no work on the request beyond HealthChain's own parsing of it: its call times are a floor, not a like-
for-like comparison with a service that evaluates rules. Prints a Markdown table of the medians; nothing is written.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.compare import Variant, checkout  # noqa: E402
from bench.run import BenchError, Server, commit, machine  # noqa: E402
from bench.startup import HEADER, calls_and_memory, demo_body, one_start, row  # noqa: E402
from tests.support.loopback import log_tail, wait_until_ok  # noqa: E402

PEER_HOOK = "bench-peer"
# the smallest HealthChain CDS Hooks service: one patient-view hook answering one fixed card
PEER_APP = f'''
from healthchain.gateway import HealthChainAPI
from healthchain.gateway.cds import CDSHooksService
from healthchain.models.requests.cdsrequest import CDSRequest
from healthchain.models.responses.cdsresponse import CDSResponse

app = HealthChainAPI(title="bench peer")
hooks = CDSHooksService()


@hooks.hook("patient-view", id="{PEER_HOOK}", title="bench peer")
def one_card(request: CDSRequest) -> CDSResponse:
    return CDSResponse(cards=[{{"summary": "One card", "indicator": "info", "source": {{"label": "bench peer"}}}}])


app.register_service(hooks)
'''


def peer_start(name: str, command: list[str], body: dict, workdir: Path, app_dir: Path, calls: int,
               env: dict[str, str]) -> dict[str, float]:
    server = Server(name, command, workdir, env, cwd=app_dir)
    started = time.perf_counter()
    server.start()
    try:
        assert server.process is not None
        problem = wait_until_ok(f"{server.url}/cds/cds-discovery", server.process, 60.0)
        if problem:
            raise BenchError(f"{name} {problem}; log tail:\n{log_tail(server.log_path)}")
        ready_s = time.perf_counter() - started
        return {"ready_s": ready_s, **calls_and_memory(server.process.pid, f"{server.url}/cds/cds-services/{PEER_HOOK}",
                                                       body, calls, name)}
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--healthchain-venv", type=Path, required=True, help="a virtualenv with healthchain installed")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20, help="calls after the first (default %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="one run")
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else args.runs
    python = args.healthchain_venv.resolve() / "bin" / "python"
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('healthchain'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    body = demo_body()
    ours = [Variant("spasm-cds, 1 worker", "HEAD", {"SPASM_CDS_WORKERS": "1"}),
            Variant("spasm-cds, 2 workers", "HEAD", {"SPASM_CDS_WORKERS": "2"})]
    peers = {"HealthChain, uvicorn": [str(python), "-m", "uvicorn", "peer_app:app", "--host", "127.0.0.1",
                                      "--port", "{port}"],
             "HealthChain, healthchain serve": [str(args.healthchain_venv.resolve() / "bin" / "healthchain"), "serve",
                                                "peer_app:app", "--host", "127.0.0.1", "--port", "{port}"]}
    labels = [v.label for v in ours] + list(peers)
    results: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spasm-cds-peers-")))
        app_dir = workdir / "peer"
        app_dir.mkdir()
        (app_dir / "peer_app.py").write_text(PEER_APP)
        peer_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        peer_env["PATH"] = f"{args.healthchain_venv.resolve() / 'bin'}:{peer_env.get('PATH', '')}"
        try:
            for v in ours:
                checkout(v, workdir, stack)
            for run in range(runs):
                for label in (labels if run % 2 == 0 else labels[::-1]):
                    variant = next((v for v in ours if v.label == label), None)
                    if variant is not None:
                        results[label].append(one_start(variant, body, workdir, run, args.calls, migrated=True))
                    else:
                        results[label].append(peer_start(f"peer{labels.index(label)}-{run}",
                                                         peers[label], body, workdir, app_dir, args.calls, peer_env))
                    print(f"peers: {label} run {run + 1}: {results[label][-1]}", file=sys.stderr)
        except BenchError as problem:
            print(f"peers: {problem}", file=sys.stderr)
            return 1
    lines = [f"`bench/peers.py` on {date.today().isoformat()} from {commit()}, {runs} start(s) per server "
             f"(alternating), {args.calls} calls after the first; healthchain {version}. {machine()}.", "", HEADER]
    for v in ours:
        lines.append(row(v.label, v.sha, "database migrated", int(v.env["SPASM_CDS_WORKERS"]), results[v.label]))
    for label, how in zip(peers, ("one process", "the command's process + one uvicorn process"), strict=True):
        lines.append(row(label, f"healthchain {version}", f"one fixed card; {how}", 1, results[label]))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
