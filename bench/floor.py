"""The floor of bench/run.py: a bare Flask app that parses the JSON body of a hook call and answers {"cards": []}.

It is served by gunicorn with the settings the service uses (cds_service/gunicorn_conf.py: worker class, threads,
keep-alive, timeouts, preloading), so the service's numbers can be read as a multiple of what Flask and gunicorn
cost on their own.

With --orjson the floor parses with the service's JSON provider (orjson, cds_service/api/jsonio.py) instead of
Flask's default (the standard library's json): bench/run.py reports the service against that floor too, so that the
part of the service's advantage that is only a faster parser can be read off.

Usage: python bench/floor.py --port P [--host 127.0.0.1] [--workers 2] [--orjson]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask.typing import ResponseReturnValue

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# gunicorn settings that belong to the service and must not be copied to the floor
_NOT_SHARED = {"bind", "workers"}
# server hooks that are about the process, not the service (pre_fork freezes the preloaded app for the GC); child_exit
# is the service's metrics bookkeeping and stays out
_SHARED_HOOKS = {"pre_fork"}

app = Flask(__name__)


@app.post("/cds-services/<service_id>")
def call_service(service_id: str) -> ResponseReturnValue:
    """Parse the body exactly as the service does (Flask's get_json) and answer no cards."""
    body = request.get_json(silent=True)
    if body is None:
        return {"error": "not JSON"}, 400
    return {"cards": []}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def shared_settings() -> dict[str, Any]:
    """The service's gunicorn settings that are plain values, and its process hooks (not child_exit, which belongs to
    the service's metrics)."""
    from gunicorn.config import Config

    from cds_service import gunicorn_conf

    known = Config().settings
    return {key: value for key, value in vars(gunicorn_conf).items()
            if key in known and key not in _NOT_SHARED and (not callable(value) or key in _SHARED_HOOKS)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--orjson", action="store_true", help="parse with orjson, as the service does")
    args = parser.parse_args(argv)
    if args.orjson:
        from cds_service.api.jsonio import OrjsonProvider
        app.json = OrjsonProvider(app)
    from gunicorn.app.base import BaseApplication

    settings = shared_settings()

    class _Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", args.workers)

        def load(self):
            return app

    _Server().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
