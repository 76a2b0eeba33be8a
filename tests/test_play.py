"""``farsight play``: the websocket server (real uvicorn on a free loopback port) and the page
in headless Chromium."""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from farsight.envs import EnvConfig, make_env
from farsight.envs.arena import ACTION_MEANINGS
from farsight.envs.controls import check_controls, validate_settings
from farsight.play.keymap import keymap, parse_combo
from farsight.play.server import PlayServer, _origin_allowed, create_app
from farsight.play.session import PlayConfig
from farsight.play.wire import PROTOCOL_MAX_BYTES, decode_frame

NOOP, UP, RIGHT, LEFT = 0, 1, 2, 3
UPRIGHT = ACTION_MEANINGS.index("UPRIGHT")


class TrackedFactory:
    """Makes arena envs and remembers which are still open (to find leaks)."""

    def __init__(self, env_cls=None) -> None:
        self.env_cls = env_cls
        self.live: set[int] = set()
        self.made = 0
        self.lock = threading.Lock()

    def __call__(self):
        env = self.env_cls() if self.env_cls else make_env(EnvConfig())
        close = env.close

        def tracked_close() -> None:
            with self.lock:
                self.live.discard(id(env))
            close()

        env.close = tracked_close
        with self.lock:
            self.live.add(id(env))
            self.made += 1
        return env


class ModelLikeEnv:
    """An env with play controls, as WorldModelEnv will have: the arena plus two settings."""

    def __init__(self) -> None:
        self.env = make_env(EnvConfig())
        self.action_meanings = self.env.action_meanings
        self.controls = {
            "steps": {"type": "int", "min": 1, "max": 16, "value": 4},
            "context": {
                "type": "choice",
                "options": ["clean", "stable", "dynamic"],
                "value": "stable",
            },
        }
        self.configured: list[dict] = []

    def configure(self, **settings) -> None:
        settings = validate_settings(self.controls, settings)
        for name, value in settings.items():
            self.controls[name]["value"] = value
        self.configured.append(settings)

    def reset(self, *, seed=None, options=None):
        assert options == {"prompt": "random"}
        return self.env.reset(seed=seed)

    def step(self, action):
        return self.env.step(action)

    def close(self) -> None:
        self.env.close()


def reference_frames(action: int, steps: int, seed: int = 0) -> list[np.ndarray]:
    """Frames t = 0..steps of the arena from ``seed`` with ``action`` held."""
    env = make_env(EnvConfig())
    frames = [env.reset(seed=seed)[0]]
    frames += [env.step(action)[0] for _ in range(steps)]
    return frames


@pytest.fixture
def factory():
    return TrackedFactory()


@pytest.fixture
def server(factory, tmp_path):
    app = create_app(factory, PlayConfig(fps=60, record_dir=tmp_path / "rec"))
    with PlayServer(app) as srv:
        yield srv


class Client:
    """A websocket player: acknowledges frames (unless ack=False) and sorts what arrives."""

    def __init__(self, server: PlayServer, ack: bool = True, **kwargs) -> None:
        url = server.url.replace("http://", "ws://") + "ws"
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(url, open_timeout=5, **kwargs))
        self.ack = ack
        self.hello = self.message("hello")
        self.session = self.hello["session"]

    def send(self, **msg) -> None:
        self.ws.send(json.dumps(msg))

    def next(self, timeout: float = 5.0):
        data = self.ws.recv(timeout=timeout)
        if isinstance(data, str):
            return json.loads(data)
        header, frame = decode_frame(data)
        if self.ack:
            self.send(type="ack", frame=header["frame"])
        return header, frame

    def message(self, kind: str, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(max(0.01, deadline - time.monotonic()))
            if isinstance(item, dict) and item["type"] == kind:
                return item

    def frame(self, pred=lambda h: True, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(max(0.01, deadline - time.monotonic()))
            if isinstance(item, tuple) and pred(item[0]):
                return item

    def episode_frames(self, action: int, steps: int, seed: int = 0) -> list[np.ndarray]:
        """Hold ``action``, reset to ``seed``, return frames t = 0..steps of the new episode."""
        self.send(type="action", action=action)
        self.send(type="reset", seed=seed)
        start, frame = self.frame(lambda h: h["t"] == 0 and h["action"] == -1 and h["frame"] > 1)
        out = [frame]
        while len(out) <= steps:
            header, frame = self.frame(lambda h, e=start["episode"]: h["episode"] == e)
            assert header["t"] == len(out) and header["action"] == action
            out.append(frame)
        return out

    def close(self) -> None:
        self.stack.close()


def wait_until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


# ---- keys and controls ------------------------------------------------------------------------


def test_keymap_from_action_meanings():
    arena = {row["name"]: row for row in keymap(ACTION_MEANINGS)}
    assert arena["NOOP"]["combo"] == []
    assert arena["UPRIGHT"]["combo"] == ["UP", "RIGHT"]
    assert arena["DOWNLEFT"]["label"] == "↓ + ←"
    assert all(row["key"] is None for row in arena.values())

    atari = keymap(["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHTFIRE", "DOWNLEFTFIRE"])
    assert atari[6]["combo"] == ["UP", "RIGHT", "FIRE"]
    assert atari[1]["label"] == "Space"

    crafter = keymap(["noop", "move_left", "move_up", "do", "sleep", "place_stone"])
    assert [r["combo"] for r in crafter[:4]] == [[], ["LEFT"], ["UP"], ["FIRE"]]
    assert [r["key"] for r in crafter[4:]] == ["1", "2"]

    # Latent actions keep their own digit; duplicates of a combo get a key of their own.
    assert [r["key"] for r in keymap(list("012"))] == ["0", "1", "2"]
    dup = keymap(["move_left", "turn_left"])
    assert dup[0]["combo"] == ["LEFT"] and dup[1]["key"] == "1"
    assert parse_combo("UPDOWN") is None and parse_combo("place_table") is None
    keys = [r["key"] for r in keymap([f"latent{i}" for i in range(40)])]
    assert not {"w", "a", "s", "d", "r", "p"} & set(keys)


def test_controls_validation_names_the_bad_setting():
    controls = ModelLikeEnv().controls
    check_controls(controls)
    assert validate_settings(controls, {"steps": 8.0}) == {"steps": 8}
    for settings, words in [
        ({"steps": 17}, ["steps", "17"]),
        ({"steps": True}, ["steps", "True"]),
        ({"steps": 2.5}, ["steps", "2.5"]),
        ({"context": "noisy"}, ["context", "noisy"]),
        ({"temperature": 1}, ["temperature", "steps, context"]),
    ]:
        with pytest.raises(ValueError) as e:
            validate_settings(controls, settings)
        assert all(w in str(e.value) for w in words), str(e.value)
    with pytest.raises(ValueError, match="reserved"):
        check_controls({"fps": {"type": "int", "min": 1, "max": 2, "value": 1}})
    with pytest.raises(ValueError, match="'value'|takes"):
        check_controls({"steps": {"type": "int", "min": 1, "max": 4, "value": 9}})


def test_origin_and_host_checks():
    ok = {"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}
    assert _origin_allowed(ok, loopback_only=True) is None
    assert _origin_allowed({"host": "localhost:8000"}, loopback_only=True) is None
    assert "Origin" in _origin_allowed({**ok, "origin": "http://evil.example"}, True)
    # A DNS-rebinding page has a matching Origin but a foreign Host.
    rebound = {"host": "evil.example:8000", "origin": "http://evil.example:8000"}
    assert "loopback" in _origin_allowed(rebound, loopback_only=True)
    assert _origin_allowed(rebound, loopback_only=False) is None


# ---- the server -------------------------------------------------------------------------------


def test_frames_follow_actions(server):
    client = Client(server)
    assert [a["name"] for a in client.hello["actions"]] == list(ACTION_MEANINGS)
    header, frame = client.frame()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    right = client.episode_frames(RIGHT, 6)
    left = client.episode_frames(LEFT, 6)
    for got, want in zip(right, reference_frames(RIGHT, 6), strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(left, reference_frames(LEFT, 6), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(right[0], left[0])
    assert not np.array_equal(right[6], left[6])
    client.close()


BAD_MESSAGES = [
    "not json",
    "[1, 2]",
    '{"type": "warp"}',
    '{"action": 1}',
    '{"type": "action", "action": 9}',
    '{"type": "action", "action": -1}',
    '{"type": "action", "action": "1"}',
    '{"type": "action", "action": true}',
    '{"type": "action", "action": 1.5}',
    '{"type": "action"}',
    '{"type": "action", "action": 1, "force": 3}',
    '{"type": "record", "on": "yes"}',
    '{"type": "reset", "seed": -1}',
    '{"type": "reset", "seed": 4294967296}',
    '{"type": "configure", "settings": []}',
    '{"type": "configure", "settings": {"fps": 0}}',
    '{"type": "configure", "settings": {"steps": 4}}',
    '{"type": "ack", "frame": 1000000000}',
    '{"type": "ping", "t": "now"}',
    '{"type": "pause", "on": false, "x": ' + "1" * 20_000 + "}",
    b"\x00\x01 binary",
]


def test_malformed_messages_are_rejected_and_the_session_goes_on(server, caplog):
    client = Client(server)
    for bad in BAD_MESSAGES:
        client.ws.send(bad)
        error = client.message("error")
        assert error["message"], bad
    assert "rejected message" in caplog.text
    # Oversized: named with its size and the limit.
    client.ws.send(json.dumps({"type": "ping", "t": 1, "pad": "x" * 10_000}))
    assert "over the limit" in client.message("error")["message"]
    # Still playing, and exactly as before.
    frames = client.episode_frames(RIGHT, 3)
    np.testing.assert_array_equal(frames[3], reference_frames(RIGHT, 3)[3])
    client.send(type="ping", t=12.5)
    assert client.message("pong")["t"] == 12.5
    client.close()


def test_over_protocol_limit_closes_only_that_connection(server):
    other = Client(server)
    greedy = Client(server)
    greedy.ws.send("x" * (PROTOCOL_MAX_BYTES + 1))
    with pytest.raises(ConnectionClosed):
        for _ in range(1000):
            greedy.next(timeout=2)
    assert other.frame()[1].shape == (64, 64, 3)
    wait_until(lambda: greedy.session not in server.app.state.sessions)
    other.close()


def test_concurrent_sessions_are_isolated(server, factory):
    a, b = Client(server), Client(server)
    assert a.session != b.session and factory.made == 2
    a.send(type="action", action=RIGHT)
    b.send(type="action", action=LEFT)
    a.send(type="reset", seed=0)
    b.send(type="reset", seed=0)
    want = {id(a): reference_frames(RIGHT, 5), id(b): reference_frames(LEFT, 5)}
    got: dict[int, dict[int, np.ndarray]] = {id(a): {}, id(b): {}}
    # Interleave: both sessions run at once.
    while any(len(g) < 6 for g in got.values()):
        for c in (a, b):
            header, frame = c.frame()
            if header["episode"] == 2:
                got[id(c)][header["t"]] = frame
    for c in (a, b):
        for t in range(6):
            np.testing.assert_array_equal(got[id(c)][t], want[id(c)][t])
    # Pausing or configuring one leaves the other alone.
    a.send(type="pause", on=True)
    a.message("pause")
    a.send(type="configure", settings={"fps": 5})
    assert a.message("controls")["controls"]["fps"]["value"] == 5
    before = b.frame()[0]["frame"]
    assert b.frame(lambda h: h["frame"] >= before + 5)[0]["t"] > 0
    a.close()
    b.close()


class SlowEnv(ModelLikeEnv):
    """Steps take 0.15 s, like a large world model."""

    def step(self, action):
        time.sleep(0.15)
        return self.env.step(action)


def test_no_backlog_and_latest_action_wins(tmp_path):
    app = create_app(TrackedFactory(SlowEnv), PlayConfig(fps=60, record_dir=tmp_path))
    with PlayServer(app) as srv:
        client = Client(srv, ack=False)
        # Without acks the server stops after max_in_flight (2) frames: nothing piles up.
        frames = [client.frame(timeout=2)[0] for _ in range(2)]
        with pytest.raises(TimeoutError):
            client.frame(timeout=0.5)
        # Actions sent while the server waits: only the last one is played.
        for action in (UP, RIGHT, LEFT, 4, 5, UPRIGHT):
            client.send(type="action", action=action, seq=action)
        client.ack = True
        client.send(type="ack", frame=frames[-1]["frame"])
        header = client.frame(timeout=3)[0]
        assert header["action"] == UPRIGHT and header["seq"] == UPRIGHT
        assert header["step_ms"] >= 140
        client.close()


def test_model_controls_are_configured(tmp_path):
    factory = TrackedFactory(ModelLikeEnv)
    app = create_app(factory, PlayConfig(record_dir=tmp_path))
    with PlayServer(app) as srv:
        client = Client(srv)
        assert set(client.hello["controls"]) == {"fps", "steps", "context"}
        client.send(type="configure", settings={"steps": 8, "context": "dynamic"})
        controls = client.message("controls")["controls"]
        assert controls["steps"]["value"] == 8 and controls["context"]["value"] == "dynamic"
        client.send(type="configure", settings={"steps": 99})
        assert "steps" in client.message("error")["message"]
        client.send(type="configure", settings={"context": "noisy", "steps": 2})
        assert "noisy" in client.message("error")["message"]
        client.send(type="configure", settings={"fps": 30, "steps": 1})
        controls = client.message("controls")["controls"]
        assert controls["fps"]["value"] == 30 and controls["steps"]["value"] == 1
        assert client.frame()[1].shape == (64, 64, 3)
        client.close()


class PreviewEnv(ModelLikeEnv):
    """A model-like env with latent actions that can preview them: action a's preview is the
    arena's frames with a held, from the current state (seed 0 unless a reset names one)."""

    latent_actions = True

    def reset(self, *, seed=None, options=None):
        assert options == {"prompt": "random"}
        return self.env.reset(seed=seed or 0)

    def preview_actions(self, steps: int) -> np.ndarray:
        rows = []
        for action in range(len(self.action_meanings)):
            fork = copy.deepcopy(self.env)
            rows.append([fork.step(action)[0] for _ in range(steps)])
        return np.stack(rows)


def sheet_rows(msg: dict) -> np.ndarray:
    """A previews message's PNG sheet as (A, S, H, W, 3)."""
    from PIL import Image

    png = base64.b64decode(msg["sheet"].split(",", 1)[1])
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    a, s, h, w = msg["actions"], msg["steps"], msg["h"], msg["w"]
    assert sheet.shape == (a * h, s * w, 3)
    return sheet.reshape(a, h, s, w, 3).transpose(0, 2, 1, 3, 4)


def test_previews_show_what_each_key_would_do(tmp_path):
    app = create_app(TrackedFactory(PreviewEnv), PlayConfig(record_dir=tmp_path, preview_steps=3))
    with PlayServer(app) as srv:
        client = Client(srv)
        assert client.hello["previews"] is True
        # Latent actions: previews come with every reset, from its first frame.
        first = client.message("previews")
        assert (first["actions"], first["steps"], first["t"]) == (9, 3, 0)
        expected = np.stack([reference_frames(a, 3)[1:] for a in range(9)])
        np.testing.assert_array_equal(sheet_rows(first), expected)
        # On request: from the frame the session is at.
        client.send(type="pause", on=True)
        client.message("pause")
        client.send(type="preview")
        later = client.message("previews")
        assert later["t"] >= 1 and later["episode"] == first["episode"]
        client.send(type="preview", extra=1)
        assert "unknown field" in client.message("error")["message"]
        client.close()


def test_envs_without_previews_refuse_them(server):
    client = Client(server)
    assert client.hello["previews"] is False
    client.send(type="preview")
    error = client.message("error")
    assert error["request"] == "preview" and "cannot preview" in error["message"]
    assert client.frame()[1].shape == (64, 64, 3)  # the session goes on
    client.close()


def test_recording_writes_an_mp4(server, tmp_path):
    import imageio.v2 as imageio

    client = Client(server, ack=False)
    client.send(type="record", on=True)
    recorded = 0
    deadline = time.monotonic() + 10
    # Every frame after the record reply is recorded. Ack 12 of them, then stop acking: the
    # server stalls after max_in_flight more, so the count is exact.
    item = None
    while not (isinstance(item, dict) and item["type"] == "record"):
        item = client.next()
        if isinstance(item, tuple):
            client.send(type="ack", frame=item[0]["frame"])
    while time.monotonic() < deadline:
        try:
            item = client.next(timeout=0.4)
        except TimeoutError:
            break
        if isinstance(item, tuple):
            recorded += 1
            if recorded < 12:
                client.send(type="ack", frame=item[0]["frame"])
    assert recorded >= 12
    client.send(type="record", on=False)
    reply = client.message("record", timeout=20)
    assert reply["frames"] == recorded and not reply["on"]
    path = Path(reply["path"])
    assert path.parent == (tmp_path / "rec").resolve() and path.suffix == ".mp4"
    frames = imageio.mimread(path)
    assert len(frames) == recorded
    assert frames[0].shape == (256, 256, 3)
    # Recording twice in a row is refused, the session goes on.
    client.send(type="record", on=False)
    assert "already off" in client.message("error")["message"]
    client.close()


def test_disconnect_cleans_up(server, factory, tmp_path):
    client = Client(server)
    client.send(type="record", on=True)
    client.message("record")
    for _ in range(5):
        client.frame()
    # Drop the TCP connection without a closing handshake.
    client.ws.socket.close()
    wait_until(lambda: not server.app.state.sessions, timeout=15)
    assert factory.made == 1 and not factory.live
    # The half-finished recording is written (the player asked for it), with no temp files.
    rec = tmp_path / "rec"
    wait_until(lambda: any(rec.glob("*.mp4")), timeout=15)
    assert [p.name for p in rec.iterdir() if p.name.startswith(".")] == []
    assert not [t for t in threading.enumerate() if t.name.startswith(f"play-{client.session}")]


def test_session_limit_and_foreign_origin(factory, tmp_path):
    app = create_app(factory, PlayConfig(max_sessions=1, record_dir=tmp_path))
    with PlayServer(app) as srv:
        first = Client(srv)
        with pytest.raises(InvalidStatus):
            Client(srv, origin="http://evil.example")
        with connect(srv.url.replace("http://", "ws://") + "ws", open_timeout=5) as second:
            assert "busy" in json.loads(second.recv(timeout=5))["message"]
            with pytest.raises(ConnectionClosed):
                second.recv(timeout=5)
        assert first.frame()[0]["frame"] >= 1
        first.close()


def test_page_is_served(server):
    from urllib.request import urlopen

    html = urlopen(server.url, timeout=5).read().decode()
    assert "<canvas" in html and "/static/play.js" in html
    js = urlopen(server.url + "static/play.js", timeout=5).read().decode()
    assert "WebSocket" in js


def test_cli_refuses_unknown_env(capsys):
    from farsight.cli import main

    assert main(["play", "--env", "nope", "--port", "0"]) == 2
    assert "nope" in capsys.readouterr().err


# ---- the page in headless Chromium ------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (/usr/bin/chromium): run scripts/install_browser.sh",
)
def test_page_plays_in_headless_chromium(server, tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    assert CHROMEDRIVER.exists(), "chromedriver is missing: apt-get install chromium-driver"
    # Never let selenium-manager look for drivers or browsers online.
    monkeypatch.setenv("SE_OFFLINE", "true")
    driver = chromium_driver(webdriver, tmp_path / "profile")
    try:
        driver.get(server.url)
        js = driver.execute_script
        wait_until(lambda: js("return window.farsight.frames") > 3, timeout=10)
        assert js("return document.getElementById('keys').rows.length") == 1 + len(ACTION_MEANINGS)

        def key(*keys: str, hold: bool = True):
            chain = ActionChains(driver)
            for k in keys:
                chain.key_down(k)
            if not hold:
                for k in reversed(keys):
                    chain.key_up(k)
            chain.perform()

        def release(*keys: str):
            chain = ActionChains(driver)
            for k in keys:
                chain.key_up(k)
            chain.perform()

        # Up + Right together play the diagonal.
        key(Keys.ARROW_UP, Keys.ARROW_RIGHT)
        wait_until(lambda: js("return window.farsight.action") == UPRIGHT)
        release(Keys.ARROW_UP, Keys.ARROW_RIGHT)
        wait_until(lambda: js("return window.farsight.action") == NOOP)

        driver.find_element("id", "seed").send_keys("0", Keys.ESCAPE)

        def play(arrow: str) -> tuple[dict, np.ndarray]:
            """Hold ``arrow``, reset to seed 0 (R), play ten steps, pause (P), read the canvas."""
            episode = js("return window.farsight.header.episode")
            key(arrow)
            key("r", hold=False)
            if js("return window.farsight.paused"):
                key("p", hold=False)
            wait_until(
                lambda: (
                    js("return window.farsight.header").get("episode") > episode
                    and js("return window.farsight.header.t") >= 10
                )
            )
            key("p", hold=False)
            wait_until(lambda: js("return window.farsight.paused"))
            time.sleep(0.2)  # a step already under way still lands
            release(arrow)
            header = js("return window.farsight.header")
            url = js("return document.getElementById('screen').toDataURL('image/png')")
            from PIL import Image

            png = base64.b64decode(url.split(",", 1)[1])
            return header, np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

        right_header, right = play(Keys.ARROW_RIGHT)
        left_header, left = play(Keys.ARROW_LEFT)
        assert right_header["action"] == RIGHT and left_header["action"] == LEFT
        # The canvas shows exactly the env's frames for the keys held.
        np.testing.assert_array_equal(right, reference_frames(RIGHT, right_header["t"])[-1])
        np.testing.assert_array_equal(left, reference_frames(LEFT, left_header["t"])[-1])
        assert not np.array_equal(right, left)
        assert js("return window.farsight.errors") == 0
        assert js("return window.farsight.latencies.length") > 0

        # Record a few frames with the button; the page shows where the mp4 went.
        key("p", hold=False)
        wait_until(lambda: not js("return window.farsight.paused"))
        driver.find_element("id", "record").click()
        wait_until(lambda: js("return window.farsight.recording"))
        start = js("return window.farsight.frames")
        wait_until(lambda: js("return window.farsight.frames") > start + 10)
        driver.find_element("id", "record").click()
        recinfo = driver.find_element("id", "recinfo")
        wait_until(lambda: "saved" in recinfo.text, timeout=15)
        path = Path(recinfo.text.split()[1])
        assert path.parent == (tmp_path / "rec").resolve() and path.exists()
    finally:
        driver.quit()


def chromium_driver(webdriver, profile: Path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER), env=dict(os.environ))
    return webdriver.Chrome(options=options, service=service)


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (/usr/bin/chromium): run scripts/install_browser.sh",
)
def test_page_shows_each_keys_preview_in_headless_chromium(tmp_path, monkeypatch):
    from PIL import Image
    from selenium import webdriver

    monkeypatch.setenv("SE_OFFLINE", "true")
    app = create_app(TrackedFactory(PreviewEnv), PlayConfig(record_dir=tmp_path, preview_steps=3))
    with PlayServer(app) as srv:
        driver = chromium_driver(webdriver, tmp_path / "profile")
        try:
            driver.get(srv.url)
            js = driver.execute_script
            wait_until(lambda: js("return document.querySelectorAll('canvas.preview').length") == 9)
            assert js("return document.getElementById('preview').hidden") is False
            # Latent actions' previews come from the reset's first frame (seed 0).
            expected = np.stack([reference_frames(a, 3)[1:] for a in range(9)])
            for action in (RIGHT, LEFT):
                url = js(
                    "return document.querySelector(`canvas.preview[data-index='${arguments[0]}']`)"
                    ".toDataURL('image/png')",
                    action,
                )
                png = base64.b64decode(url.split(",", 1)[1])
                shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
                # The row animates through its frames: whichever is up is one of them.
                assert any(np.array_equal(shown, frame) for frame in expected[action])
            assert js("return window.farsight.errors") == 0
        finally:
            driver.quit()
