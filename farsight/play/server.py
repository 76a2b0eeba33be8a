"""The play server (``farsight play``): one page, one websocket per player, one env per websocket.

``/`` serves the page, ``/static`` its assets and ``/ws`` the game sessions
(``farsight.play.session``), which speak ``farsight.play.wire``'s format.

Safety: the server binds to 127.0.0.1 unless told otherwise, and websocket handshakes must
come from the page itself (Origin equal to Host) and, on a loopback bind, name a loopback Host:
this stops other web sites (and DNS-rebinding pages) in the player's browser from driving the
server or writing recordings. Messages over ``PROTOCOL_MAX_BYTES`` are refused by the websocket
layer (uvicorn's ``ws_max_size``), and at most ``max_sessions`` players play at once.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from farsight.errors import UsageError
from farsight.play.session import EnvFactory, PlayConfig, Session
from farsight.play.wire import PROTOCOL_MAX_BYTES

log = logging.getLogger("farsight.play")

STATIC_DIR = Path(__file__).parent / "static"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _origin_allowed(headers: Any, loopback_only: bool) -> str | None:
    """None if the handshake may proceed, else the reason to refuse it."""
    host = headers.get("host", "")
    hostname = urlsplit(f"//{host}").hostname or ""
    if loopback_only and not _is_loopback(hostname):
        return f"Host {host!r} is not a loopback address"
    origin = headers.get("origin")
    # Non-browser clients send no Origin; browsers always do, and a page of another site sends
    # its own, which differs from our Host.
    if origin is not None and urlsplit(origin).netloc != host:
        return f"Origin {origin!r} does not match Host {host!r}"
    return None


def _is_loopback(hostname: str) -> bool:
    if hostname in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def create_app(factory: EnvFactory, cfg: PlayConfig | None = None) -> Any:
    """The Starlette app: ``/`` the page, ``/static`` its assets, ``/ws`` the game sessions.
    ``app.state.sessions`` maps session id -> live Session (empty when all have ended)."""
    _require_web_packages()
    # lazy: imported after the check: a missing web package is one line, not a traceback.
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles
    from starlette.websockets import WebSocket

    cfg = cfg or PlayConfig()
    sessions: dict[str, Session] = {}

    async def index(request: Any) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def play(ws: WebSocket) -> None:
        refusal = _origin_allowed(ws.headers, cfg.loopback_only)
        if refusal:
            log.warning("refused websocket from %s: %s", ws.client, refusal)
            await ws.close(code=1008)
            return
        await ws.accept()
        if len(sessions) >= cfg.max_sessions:
            msg = f"server busy: {cfg.max_sessions} sessions already playing"
            log.warning("refused websocket from %s: %s", ws.client, msg)
            await ws.send_text(json.dumps({"type": "error", "message": msg}))
            await ws.close(code=1013)
            return
        session = Session(ws, factory, cfg, sessions)
        log.info("session %s opened from %s", session.id, ws.client)
        await session.run()

    app = Starlette(
        routes=[
            Route("/", index),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
            WebSocketRoute("/ws", play),
        ]
    )
    app.state.sessions = sessions
    app.state.config = cfg
    return app


def _require_web_packages() -> None:
    """Fail with one clear line, not an import traceback, when the web packages are missing."""
    missing = [m for m in ("starlette", "uvicorn", "websockets") if not importlib.util.find_spec(m)]
    if missing:
        raise UsageError(
            f"farsight play needs {', '.join(missing)}: pip install {' '.join(missing)}"
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one. Binding here, not in
    uvicorn, gives a clear error for a busy port and the real port number before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror}); try another --port") from e
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _uvicorn_server(app: Any, log_level: str) -> Any:
    # lazy: imported here as starlette is in create_app, which has checked that it is installed.
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        ws="websockets-sansio",
        ws_max_size=PROTOCOL_MAX_BYTES,
        lifespan="off",
        timeout_graceful_shutdown=3,
    )
    return uvicorn.Server(config)


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


class PlayServer:
    """A play server on a background thread (tests, notebooks, benchmarks)::

    with PlayServer(create_app(factory)) as server:
        print(server.url)
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level="warning"):
        self.app = app
        self.sock = bind_socket(host, port)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.url = url_for(host, self.port)
        self.server = _uvicorn_server(app, log_level)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> PlayServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("play server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> PlayServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(app: Any, host: str, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` on (host, port) until interrupted (Ctrl-C)."""
    sock = bind_socket(host, port)
    url = url_for(host, sock.getsockname()[1])
    if on_ready:
        on_ready(url)
    try:
        _uvicorn_server(app, "warning").run(sockets=[sock])
    finally:
        sock.close()
