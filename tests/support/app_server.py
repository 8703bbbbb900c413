"""An app made by create_app (so with clocks a test injects) served over real HTTP on 127.0.0.1 by werkzeug's
threaded server in a background thread, for the duration of a `with` block."""
from __future__ import annotations

import threading

from flask import Flask
from werkzeug.serving import make_server


class AppServer:
    """Serves one app on a free loopback port; its base URL is `.url`."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self.url = ""

    def __enter__(self) -> AppServer:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
