"""The play server: one page, one websocket per player, one env per websocket.

Design
------
- Isolation: every websocket session calls the env *factory* for its own env and owns one
  worker thread; all env calls of a session (create, reset, step, configure, close) run on that
  thread, in order, so a slow step (a world model) never blocks the event loop, other sessions
  or the session's own message handling, and the env is never touched by two threads.
- Server-side ticks, latest action wins: the client sends its current action whenever it
  changes (and re-sends it a few times a second); the session steps the env at ``fps`` with
  whatever action arrived last. Messages never queue behind a slow env.
- Bounded output: the client acknowledges every frame; the session does not step while
  ``max_in_flight`` frames are unacknowledged, so a slow network or a busy browser delays
  frames instead of piling them up (which would add latency without bound).
- Validation: control messages are small JSON texts checked against a strict schema
  (``parse_message``); anything else is answered with an ``error`` message and a log line, and
  the session carries on. Messages over ``PROTOCOL_MAX_BYTES`` are refused by the websocket
  layer itself (the connection closes with 1009) so that nobody can make the server buffer
  megabytes; smaller but oversized ones (> ``max_message_bytes``) are rejected like any other.
- Safety: the server binds to 127.0.0.1 unless told otherwise, and websocket handshakes must
  come from the page itself (Origin equal to Host) and, on a loopback bind, name a loopback Host:
  this stops other web sites (and DNS-rebinding pages) in the player's browser from driving the
  server or writing recordings.

Wire format
-----------
Client -> server (JSON text; no other fields allowed):

    {"type": "action", "action": int, "seq": int?}   # seq: echoed in frames, for latency
    {"type": "configure", "settings": {name: value}}   # "fps" or an env control
    {"type": "reset", "seed": int?}                     # new episode from a real prompt
    {"type": "record", "on": bool}
    {"type": "pause", "on": bool}
    {"type": "ack", "frame": int}                       # after receiving frame n
    {"type": "ping", "t": number}                       # answered with pong, same t

Server -> client: JSON texts ``hello`` (actions with key bindings, controls, limits),
``controls`` (after a change), ``error`` (message, and the request type when known),
``status`` (a line for the page), ``pause``, ``record`` (on/off, path when written), ``pong``;
and binary frames: a little-endian uint32 header length, the UTF-8 JSON header
``{"frame", "episode", "t", "action", "seq", "reward", "return", "step_ms", "h", "w"}``, then
the frame's raw RGB bytes (H * W * 3). Raw pixels cost nothing to encode or decode and a
64x64 frame is 12 KiB; permessage-deflate (on by default) compresses them on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from farsight.errors import UsageError
from farsight.play.keymap import keymap
from farsight.play.protocol import env_controls, validate_setting, validate_settings

log = logging.getLogger("farsight.play")

STATIC_DIR = Path(__file__).parent / "static"
# Hard cap enforced by the websocket layer (close 1009); the soft cap below it is answered with
# an error message so the session goes on.
PROTOCOL_MAX_BYTES = 1 << 20
MESSAGE_TYPES = ("action", "configure", "reset", "record", "pause", "ack", "ping")
SEED_LIMIT = 2**32
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

EnvFactory = Callable[[], Any]


@dataclass
class PlayConfig:
    """Settings of a play server (the CLI fills them from flags)."""

    fps: int = 20
    """Initial ticks per second of each session (the page has a slider, 1..max_fps)."""
    max_fps: int = 60
    record_dir: Path = field(default_factory=lambda: Path("recordings"))
    """Where session recordings (mp4) are written."""
    record_scale: int = 0
    """Integer upscaling of recorded frames (nearest neighbour); 0: enough for 256 px."""
    record_max_frames: int = 20_000
    """Recording stops (and is written) after this many frames, bounding memory."""
    max_sessions: int = 4
    max_in_flight: int = 2
    """Frames sent but not yet acknowledged before the session waits for the client."""
    max_message_bytes: int = 4096
    max_pending_commands: int = 8
    """Resets/configures waiting for the env thread; more are refused as 'busy'."""
    loopback_only: bool = True
    """Refuse websocket handshakes whose Host is not a loopback name (set False when bound to
    another address on purpose)."""
    title: str = "farsight play"
    """Shown on the page (the CLI puts the env id or checkpoint here)."""

    def __post_init__(self) -> None:
        self.record_dir = Path(self.record_dir)
        if not 1 <= self.max_fps <= 240:
            raise ValueError(f"max_fps={self.max_fps} must be in [1, 240]")
        if not 1 <= self.fps <= self.max_fps:
            raise ValueError(f"fps={self.fps} must be in [1, max_fps={self.max_fps}]")
        for name in ("max_sessions", "max_in_flight", "record_max_frames", "max_pending_commands"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.max_message_bytes > PROTOCOL_MAX_BYTES:
            raise ValueError(f"max_message_bytes must be at most {PROTOCOL_MAX_BYTES}")


class MessageError(ValueError):
    """A client message that does not follow the schema; ``kind`` is its type when known."""

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        self.kind = kind


def parse_message(raw: str | bytes | None, num_actions: int, max_bytes: int) -> dict[str, Any]:
    """Check one client message against the schema (module docstring); return it as a dict."""
    if not isinstance(raw, str):
        raise MessageError("binary messages are not accepted: send JSON text")
    size = len(raw.encode("utf-8", errors="replace"))
    if size > max_bytes:
        raise MessageError(f"message of {size} bytes is over the limit of {max_bytes} bytes")
    try:
        msg = json.loads(raw)
    except ValueError as e:
        raise MessageError(f"message is not valid JSON: {e}") from None
    if not isinstance(msg, dict):
        raise MessageError(f"message must be a JSON object, got {type(msg).__name__}")
    kind = msg.get("type")
    if kind not in MESSAGE_TYPES:
        raise MessageError(f"unknown message type {kind!r}; known: {', '.join(MESSAGE_TYPES)}")

    def field_(name: str, check: Callable[[Any], bool], what: str, optional: bool = False) -> Any:
        if name not in msg:
            if optional:
                return None
            raise MessageError(f"{kind}: missing field {name!r} ({what})", kind)
        value = msg[name]
        if not check(value):
            raise MessageError(f"{kind}: field {name!r} must be {what}, got {value!r}", kind)
        return value

    allowed = {
        "action": {"action", "seq"},
        "configure": {"settings"},
        "reset": {"seed"},
        "record": {"on"},
        "pause": {"on"},
        "ack": {"frame"},
        "ping": {"t"},
    }[kind]
    extra = sorted(set(msg) - allowed - {"type"})
    if extra:
        raise MessageError(f"{kind}: unknown field(s) {extra}; allowed: {sorted(allowed)}", kind)

    if kind == "action":
        field_("action", lambda v: _is_int(v) and 0 <= v < num_actions, f"in [0, {num_actions})")
        field_("seq", lambda v: _is_int(v) and v >= 0, "a non-negative int", optional=True)
    elif kind == "configure":
        field_("settings", lambda v: isinstance(v, dict) and 0 < len(v) <= 32, "an object")
    elif kind == "reset":
        field_("seed", lambda v: _is_int(v) and 0 <= v < SEED_LIMIT, "in [0, 2**32)", True)
    elif kind in ("record", "pause"):
        field_("on", lambda v: isinstance(v, bool), "true or false")
    elif kind == "ack":
        field_("frame", lambda v: _is_int(v) and v >= 0, "a non-negative int")
    elif kind == "ping":
        field_("t", lambda v: _is_number(v), "a finite number")
    return msg


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def encode_frame(frame: np.ndarray, header: dict[str, Any]) -> bytes:
    """Binary frame message: uint32 LE header length, JSON header, raw RGB bytes."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + frame.tobytes()


def decode_frame(data: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """Inverse of ``encode_frame`` (for tests and Python clients)."""
    (n,) = struct.unpack_from("<I", data)
    header = json.loads(data[4 : 4 + n])
    pixels = np.frombuffer(data, np.uint8, offset=4 + n)
    return header, pixels.reshape(header["h"], header["w"], 3)


def _check_frame(frame: Any) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise TypeError(
            f"env returned a frame of shape {frame.shape} and dtype {frame.dtype}; "
            "play needs uint8 (H, W, 3)"
        )
    return np.ascontiguousarray(frame)


class Session:
    """One player: a websocket, an env made by the factory, a tick loop and a message reader."""

    def __init__(self, ws: Any, factory: EnvFactory, cfg: PlayConfig, registry: dict) -> None:
        self.ws = ws
        self.factory = factory
        self.cfg = cfg
        self.registry = registry
        self.id = uuid.uuid4().hex[:8]
        self.env: Any = None
        self.num_actions = 0
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"play-{self.id}")
        self.send_lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.commands: deque[dict[str, Any]] = deque()
        self.fps = cfg.fps
        self.action = 0
        self.action_seq = -1
        self.paused = False
        self.frames_sent = 0
        self.frames_acked = 0
        self.episode = 0
        self.t = 0
        self.episode_return = 0.0
        self.recording: list[np.ndarray] | None = None
        self.record_started = ""
        self.writes: set[asyncio.Task] = set()
        self.rejected = 0
        self.closed = False

    # -- plumbing --------------------------------------------------------------------------

    async def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the session's env thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def send_json(self, msg: dict[str, Any]) -> None:
        if self.closed:
            return
        await self._send(self.ws.send_text, json.dumps(msg))

    async def send_bytes(self, data: bytes) -> None:
        await self._send(self.ws.send_bytes, data)

    async def _send(self, send: Callable, data: Any) -> None:
        async with self.send_lock:
            try:
                await send(data)
            except Exception as e:  # the client went away: end the session quietly
                raise _Disconnected from e

    def controls(self) -> dict[str, dict]:
        fps = {
            "type": "int",
            "min": 1,
            "max": self.cfg.max_fps,
            "value": self.fps,
            "label": "target FPS",
            "help": "steps per second; a slow model runs as fast as it can",
        }
        return {"fps": fps, **env_controls(self.env)}

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        self.registry[self.id] = self
        tasks: list[asyncio.Task] = []
        try:
            self.env = await self.call(self.factory)
            meanings = tuple(self.env.action_meanings)
            self.num_actions = len(meanings)
            self.action = _noop_action(meanings)
            await self.send_json(
                {
                    "type": "hello",
                    "session": self.id,
                    "title": self.cfg.title,
                    "actions": keymap(meanings),
                    "noop": self.action,
                    "controls": self.controls(),
                    "max_message_bytes": self.cfg.max_message_bytes,
                    "record_dir": str(self.cfg.record_dir.resolve()),
                }
            )
            await self.reset(seed=None, reason="start")
            tasks = [asyncio.create_task(self.tick_loop()), asyncio.create_task(self.read_loop())]
            # The reader ends on disconnect; the tick loop ends only by an error. Either way
            # the session is over.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        except _Disconnected:
            pass
        except Exception as e:
            log.exception("session %s failed", self.id)
            with contextlib.suppress(Exception):
                await self.send_json({"type": "error", "message": f"session failed: {e}"})
                await self.ws.close(code=1011)
        finally:
            self.closed = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.cleanup()

    async def cleanup(self) -> None:
        """Write an unfinished recording (the player asked for it), close the env, free all."""
        try:
            if self.recording:
                self.stop_recording()
            if self.writes:
                await asyncio.gather(*self.writes, return_exceptions=True)
            if self.env is not None:
                with contextlib.suppress(Exception):
                    await self.call(self.env.close)
        finally:
            self.env = None
            self.executor.shutdown(wait=False)
            self.registry.pop(self.id, None)
            log.info("session %s closed", self.id)

    # -- reading ---------------------------------------------------------------------------

    async def read_loop(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes")
            try:
                msg = parse_message(raw, self.num_actions, self.cfg.max_message_bytes)
                await self.handle(msg)
            except MessageError as e:
                await self.reject(str(e), e.kind)

    async def reject(self, reason: str, kind: str | None) -> None:
        self.rejected += 1
        # Log the first few and then every hundredth: a misbehaving client cannot flood the log.
        if self.rejected <= 10 or self.rejected % 100 == 0:
            log.warning("session %s: rejected message (#%d): %s", self.id, self.rejected, reason)
        await self.send_json({"type": "error", "message": reason, "request": kind})

    async def handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "action":
            self.action = msg["action"]
            self.action_seq = msg.get("seq", self.action_seq)
        elif kind == "ack":
            if msg["frame"] > self.frames_sent:
                raise MessageError(f"ack: frame {msg['frame']} was never sent", kind)
            self.frames_acked = max(self.frames_acked, msg["frame"])
            self.wake.set()
        elif kind == "ping":
            await self.send_json({"type": "pong", "t": msg["t"]})
        elif kind == "pause":
            self.paused = msg["on"]
            self.wake.set()
            await self.send_json({"type": "pause", "on": self.paused})
        elif kind == "record":
            await self.set_recording(msg["on"])
        else:  # reset and configure need the env thread: the tick loop applies them in order
            if len(self.commands) >= self.cfg.max_pending_commands:
                raise MessageError(f"{kind}: busy, too many pending requests; retry later", kind)
            self.commands.append(msg)
            self.wake.set()

    # -- ticking ---------------------------------------------------------------------------

    async def tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_step = loop.time()
        while True:
            self.wake.clear()
            while self.commands:
                await self.apply(self.commands.popleft())
            now = loop.time()
            blocked = self.paused or self.frames_sent - self.frames_acked >= self.cfg.max_in_flight
            if not blocked and now >= next_step:
                # Schedule from the start of this step: a step slower than the tick runs the
                # next one at once, without a burst of catch-up steps afterwards.
                next_step = now + 1.0 / self.fps
                await self.step()
                continue
            timeout = None if blocked else next_step - now
            # asyncio.TimeoutError: distinct from the builtin before Python 3.11.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    async def apply(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        try:
            if kind == "reset":
                await self.reset(seed=msg.get("seed"), reason="reset")
            elif kind == "configure":
                await self.configure(msg["settings"])
        except ValueError as e:
            await self.reject(str(e), kind)

    async def configure(self, settings: dict[str, Any]) -> None:
        settings = dict(settings)
        fps = settings.pop("fps", None)
        if fps is not None:
            fps = validate_setting("fps", self.controls()["fps"], fps)
        if settings:
            # Checked here too, so every env gets the same clear errors, whatever its configure.
            settings = validate_settings(env_controls(self.env), settings)
            await self.call(self.env.configure, **settings)
        if fps is not None:
            self.fps = fps
        await self.send_json({"type": "controls", "controls": self.controls()})

    async def reset(self, seed: int | None, reason: str) -> None:
        frame, _ = await self.call(self.env.reset, seed=seed, options={"prompt": "random"})
        self.episode += 1
        self.t = 0
        self.episode_return = 0.0
        await self.emit(_check_frame(frame), reward=0.0, step_ms=0.0)
        if reason != "start":
            where = "random prompt" if seed is None else f"seed {seed}"
            await self.send_json({"type": "status", "message": f"episode {self.episode}: {where}"})

    async def step(self) -> None:
        action, seq = self.action, self.action_seq
        start = time.perf_counter()
        frame, reward, terminated, truncated, _ = await self.call(self.env.step, action)
        step_ms = (time.perf_counter() - start) * 1000
        self.t += 1
        self.episode_return += float(reward)
        await self.emit(_check_frame(frame), float(reward), step_ms, action=action, seq=seq)
        if terminated or truncated:
            how = "ended" if terminated else "was cut"
            msg = f"episode {self.episode} {how} after {self.t} steps"
            msg += f", return {self.episode_return:g}"
            await self.send_json({"type": "status", "message": msg})
            await self.reset(seed=None, reason="done")

    async def emit(
        self, frame: np.ndarray, reward: float, step_ms: float, action: int = -1, seq: int = -1
    ) -> None:
        self.frames_sent += 1
        header = {
            "frame": self.frames_sent,
            "episode": self.episode,
            "t": self.t,
            "action": action,
            "seq": seq,
            "reward": reward,
            "return": self.episode_return,
            "step_ms": round(step_ms, 2),
            "h": frame.shape[0],
            "w": frame.shape[1],
        }
        if self.recording is not None:
            self.recording.append(frame.copy())
            if len(self.recording) >= self.cfg.record_max_frames:
                self.stop_recording()
                await self.send_json(
                    {"type": "status", "message": "recording stopped: frame limit reached"}
                )
        await self.send_bytes(encode_frame(frame, header))

    # -- recording -------------------------------------------------------------------------

    async def set_recording(self, on: bool) -> None:
        if on and self.recording is None:
            self.recording = []
            self.record_started = datetime.now().strftime("%Y%m%d-%H%M%S")
            await self.send_json({"type": "record", "on": True, "path": None, "frames": 0})
        elif not on and self.recording is not None:
            self.stop_recording()
        else:
            state = "on" if on else "off"
            raise MessageError(f"record: recording is already {state}", "record")

    def stop_recording(self) -> None:
        """Hand the frames to a writer task; the client hears when the file is complete."""
        frames, self.recording = self.recording or [], None
        if frames:
            name = f"play-{self.record_started}-{self.id}.mp4"
            path = (self.cfg.record_dir / name).resolve()
            job = self.write_recording(path, frames, self.fps)
        else:
            job = self.send_json({"type": "record", "on": False, "path": None, "frames": 0})
        # Kept in a set: the loop holds tasks only weakly, and cleanup waits for them.
        task = asyncio.create_task(job)
        self.writes.add(task)
        task.add_done_callback(self.writes.discard)

    async def write_recording(self, path: Path, frames: list[np.ndarray], fps: int) -> None:
        from farsight.video import upscale, write_video

        h, w = frames[0].shape[:2]
        scale = self.cfg.record_scale or max(1, math.ceil(256 / min(h, w)))
        try:
            count = await asyncio.to_thread(
                write_video, path, (upscale(f, scale) for f in frames), fps
            )
        except Exception as e:
            log.exception("session %s: writing %s failed", self.id, path)
            with contextlib.suppress(Exception):
                await self.send_json({"type": "error", "message": f"recording failed: {e}"})
            return
        log.info("session %s: recorded %d frames to %s", self.id, count, path)
        with contextlib.suppress(Exception):
            await self.send_json(
                {"type": "record", "on": False, "path": str(path), "frames": count}
            )


class _Disconnected(Exception):
    pass


def _noop_action(meanings: tuple[str, ...]) -> int:
    """The action played while no key is held: the one whose combo is empty, else action 0."""
    for row in keymap(meanings):
        if row["combo"] == []:
            return row["index"]
    return 0


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
    import importlib.util

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
