"""An app made by create_app (so with clocks a test injects) served over real HTTP on 127.0.0.1 by werkzeug's
threaded server in a background thread, for the duration of a `with` block."""
from __future__ import annotations

from flask import Flask
from werkzeug.serving import make_server

from tests.support.loopback import ServedInThread


class AppServer(ServedInThread):
    """Serves one app on a free loopback port; its base URL is `.url`."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self.url = ""

    def __enter__(self) -> AppServer:
        self._serve(make_server("127.0.0.1", 0, self._app, threaded=True))
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        return self
