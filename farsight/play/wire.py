"""The play page's wire format: what client and server say over the websocket.

Client -> server (JSON text; no other fields allowed):

    {"type": "action", "action": int, "seq": int?}   # seq: echoed in frames, for latency
    {"type": "configure", "settings": {name: value}}   # "fps" or an env control
    {"type": "reset", "seed": int?}                     # new episode from a real prompt
    {"type": "record", "on": bool}
    {"type": "pause", "on": bool}
    {"type": "ack", "frame": int}                       # after receiving frame n
    {"type": "ping", "t": number}                       # answered with pong, same t
    {"type": "preview"}                                 # what each action would do from here

Server -> client: JSON texts ``hello`` (actions with key bindings, controls, limits),
``controls`` (after a change), ``error`` (message, and the request type when known),
``status`` (a line for the page), ``previews`` (for envs that can: a PNG data URL of a sheet,
one row of frames per action, each row what holding that action would do), ``pause``,
``record`` (on/off, path when written), ``pong``;
and binary frames: a little-endian uint32 header length, the UTF-8 JSON header
``{"frame", "episode", "t", "action", "seq", "reward", "return", "step_ms", "h", "w"}``, then
the frame's raw RGB bytes (H * W * 3). Raw pixels cost nothing to encode or decode and a
64x64 frame is 12 KiB; permessage-deflate (on by default) compresses them on the wire.

Control messages are small JSON texts checked against this strict schema (``parse_message``).
Messages over ``PROTOCOL_MAX_BYTES`` are refused by the websocket layer itself (the connection
closes with 1009) so that nobody can make the server buffer megabytes; a session's smaller
limit (``PlayConfig.max_message_bytes``) is checked here, like any other rule.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

# Hard cap enforced by the websocket layer (close 1009); the soft cap below it is answered with
# an error message so the session goes on.
PROTOCOL_MAX_BYTES = 1 << 20
MESSAGE_TYPES = ("action", "configure", "reset", "record", "pause", "ack", "ping", "preview")
SEED_LIMIT = 2**32


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
        "preview": set(),
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


def check_frame(frame: Any) -> np.ndarray:
    """The env's frame as the contiguous uint8 (H, W, 3) array a frame message carries; a
    TypeError naming what the env returned instead (a bug in the env)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise TypeError(
            f"env returned a frame of shape {frame.shape} and dtype {frame.dtype}; "
            "play needs uint8 (H, W, 3)"
        )
    return np.ascontiguousarray(frame)
