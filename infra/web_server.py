"""Serving a WSGI app from a command: listen on waitress (or say why not), run until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import sys
from typing import Any

import click
from waitress import create_server
from waitress.server import BaseWSGIServer, MultiSocketServer

WebServer = BaseWSGIServer | MultiSocketServer


def listening(app: Any, host: str, port: int, **options: Any) -> WebServer:
    """The app bound to host:port with waitress `options`; a port that cannot be bound is a clear CLI error."""
    try:
        return create_server(app, host=host, port=port, **options)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def serve_until_stopped(server: WebServer) -> None:
    """Serve until Ctrl-C or SIGTERM (both stop the same way), then close the listening socket."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()
