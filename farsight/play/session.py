"""One player of ``farsight play``: a websocket, its own env, a tick loop and a message reader.

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
- Previews: an env with ``preview_actions(steps)`` (a world model) shows on the page what
  holding each key would do from the current frame, on request and, for latent actions (whose
  names say nothing), after every reset.
- Validation: every message goes through ``farsight.play.wire.parse_message``; anything else
  is answered with an ``error`` message and a log line, and the session carries on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from einops import rearrange
from PIL import Image

from farsight.envs.controls import env_controls, validate_setting, validate_settings
from farsight.play.keymap import keymap
from farsight.play.wire import (
    PROTOCOL_MAX_BYTES,
    MessageError,
    check_frame,
    encode_frame,
    parse_message,
)
from farsight.video import upscale, write_video

log = logging.getLogger("farsight.play")

EnvFactory = Callable[[], Any]
"""Makes one playable env (``farsight.envs.controls.PlayableEnv``) per session."""


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
    preview_steps: int = 4
    """Frames of each action's preview (``preview_actions``): what holding its key would do."""

    def __post_init__(self) -> None:
        self.record_dir = Path(self.record_dir)
        if not 1 <= self.max_fps <= 240:
            raise ValueError(f"max_fps={self.max_fps} must be in [1, 240]")
        if not 1 <= self.fps <= self.max_fps:
            raise ValueError(f"fps={self.fps} must be in [1, max_fps={self.max_fps}]")
        counts = (
            "max_sessions",
            "max_in_flight",
            "record_max_frames",
            "max_pending_commands",
            "preview_steps",
        )
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.max_message_bytes > PROTOCOL_MAX_BYTES:
            raise ValueError(f"max_message_bytes must be at most {PROTOCOL_MAX_BYTES}")


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

    @property
    def can_preview(self) -> bool:
        return callable(getattr(self.env, "preview_actions", None))

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
                    "previews": self.can_preview,
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
        else:  # reset, configure, preview need the env thread: the tick loop applies them in order
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
            elif kind == "preview":
                await self.preview()
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
        await self.emit(check_frame(frame), reward=0.0, step_ms=0.0)
        if self.can_preview and getattr(self.env, "latent_actions", False):
            await self.preview()
        if reason != "start":
            where = "random prompt" if seed is None else f"seed {seed}"
            await self.send_json({"type": "status", "message": f"episode {self.episode}: {where}"})

    async def preview(self) -> None:
        """Send what holding each action would do from the current frame: one PNG sheet, a row
        of ``preview_steps`` frames per action (the page animates each row beside its key)."""
        if not self.can_preview:
            raise ValueError("preview: this env cannot preview its actions")
        frames = await self.call(self.env.preview_actions, self.cfg.preview_steps)
        sheet = await asyncio.to_thread(_png_sheet, frames)
        actions, steps, h, w = frames.shape[:4]
        await self.send_json(
            {
                "type": "previews",
                "episode": self.episode,
                "t": self.t,
                "actions": actions,
                "steps": steps,
                "h": h,
                "w": w,
                "sheet": sheet,
            }
        )

    async def step(self) -> None:
        action, seq = self.action, self.action_seq
        start = time.perf_counter()
        frame, reward, terminated, truncated, _ = await self.call(self.env.step, action)
        step_ms = (time.perf_counter() - start) * 1000
        self.t += 1
        self.episode_return += float(reward)
        await self.emit(check_frame(frame), float(reward), step_ms, action=action, seq=seq)
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


def _png_sheet(frames: np.ndarray) -> str:
    """(A, S, H, W, 3) uint8 -> a PNG data URL of an (A H, S W) sheet: row a, column s."""
    sheet = rearrange(frames, "a s h w c -> (a h) (s w) c")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(sheet)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class _Disconnected(Exception):
    pass


def _noop_action(meanings: tuple[str, ...]) -> int:
    """The action played while no key is held: the one whose combo is empty, else action 0."""
    for row in keymap(meanings):
        if row["combo"] == []:
            return row["index"]
    return 0
