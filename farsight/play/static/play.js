// farsight play client: draws binary frames, sends the held keys' action, shows stats.
// Protocol: see farsight/play/server.py. No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const COMPONENTS = ["UP", "DOWN", "LEFT", "RIGHT", "FIRE"];
const OPPOSITE = { UP: "DOWN", DOWN: "UP", LEFT: "RIGHT", RIGHT: "LEFT" };
// event.code (physical key) so WASD sits in the same place on every keyboard layout.
const COMPONENT_KEYS = {
  ArrowUp: "UP", KeyW: "UP", ArrowDown: "DOWN", KeyS: "DOWN",
  ArrowLeft: "LEFT", KeyA: "LEFT", ArrowRight: "RIGHT", KeyD: "RIGHT", Space: "FIRE",
};
const RESEND_MS = 50;   // re-send the current action: keeps latency samples flowing
const PING_MS = 1000;
const STATS_MS = 250;
const PREVIEW_MS = 250;  // one preview frame per tick: a held key's first frames, looped

// Exposed for tests and for poking at from the console.
const state = window.farsight = {
  ws: null, session: null, actions: [], noop: 0, controls: {},
  comboIndex: new Map(),  // "UP,RIGHT" -> action index
  keyIndex: new Map(),    // extra key ("1", "q") -> action index
  held: new Map(),        // component -> press time
  heldExtra: new Map(),   // key -> {index, time}
  action: 0, seq: 0, sentAt: new Map(), lastSeq: -1,
  frames: 0, frameTimes: [], latencies: [], rtt: null, stepMs: null, header: null,
  paused: false, recording: false, writing: false, recStart: 0, errors: 0,
  previews: null,         // {sheet: Image, steps, h, w, t, episode} of the last previews message
  previewTick: 0,
};

const canvas = $("screen");
const ctx = canvas.getContext("2d");
let image = null;
const decoder = new TextDecoder();

function send(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.title = text;
  el.classList.toggle("error", isError);
}

// ---- connection ------------------------------------------------------------------------

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  $("overlay").textContent = "connecting…";
  $("overlay").classList.remove("hidden");
  ws.onopen = () => { $("conn").className = "conn on"; };
  ws.onclose = (ev) => {
    $("conn").className = "conn off";
    $("overlay").innerHTML = "";
    const btn = document.createElement("button");
    btn.textContent = `disconnected (${ev.code}) — reconnect`;
    btn.onclick = () => connect();
    $("overlay").appendChild(btn);
    $("overlay").classList.remove("hidden");
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") onMessage(JSON.parse(ev.data));
    else onFrame(ev.data);
  };
}

function onMessage(msg) {
  switch (msg.type) {
    case "hello": return onHello(msg);
    case "controls": return renderControls(msg.controls);
    case "error":
      state.errors += 1;
      return setStatus(`error: ${msg.message}`, true);
    case "status": return setStatus(msg.message);
    case "pong": state.rtt = performance.now() - msg.t; return;
    case "pause":
      state.paused = msg.on;
      $("pause").classList.toggle("on", msg.on);
      $("pause").innerHTML = msg.on ? "▶ Resume <kbd>P</kbd>" : "❚❚ Pause <kbd>P</kbd>";
      return setStatus(msg.on ? "paused" : "playing");
    case "record": return onRecord(msg);
    case "previews": return onPreviews(msg);
  }
}

function onHello(msg) {
  state.session = msg.session;
  state.actions = msg.actions;
  state.noop = msg.noop;
  state.comboIndex.clear();
  state.keyIndex.clear();
  for (const a of msg.actions) {
    if (a.combo) state.comboIndex.set(a.combo.join(","), a.index);
    else if (a.key) state.keyIndex.set(a.key, a.index);
  }
  $("title").textContent = msg.title;
  document.title = `farsight play — ${msg.title}`;
  $("recinfo").textContent = `recordings go to ${msg.record_dir}`;
  $("preview").hidden = !msg.previews;
  state.previews = null;
  renderKeys();
  renderControls(msg.controls);
  state.action = -1;  // force the first send
  updateAction(true);
}

// ---- frames ----------------------------------------------------------------------------

function onFrame(buf) {
  const now = performance.now();
  const view = new DataView(buf);
  const n = view.getUint32(0, true);
  const h = JSON.parse(decoder.decode(new Uint8Array(buf, 4, n)));
  const px = new Uint8Array(buf, 4 + n);
  if (!image || canvas.width !== h.w || canvas.height !== h.h) {
    canvas.width = h.w;
    canvas.height = h.h;
    image = ctx.createImageData(h.w, h.h);
  }
  const d = image.data;
  for (let i = 0, j = 0; i < px.length; i += 3, j += 4) {
    d[j] = px[i]; d[j + 1] = px[i + 1]; d[j + 2] = px[i + 2]; d[j + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  // Acknowledge at once: the server keeps at most a couple of frames in flight.
  send({ type: "ack", frame: h.frame });

  // Previews show what the keys do from a frame of this episode: drop them after a reset.
  if (state.previews && h.episode !== state.previews.episode) {
    state.previews = null;
    renderKeys();
  }
  state.header = h;
  state.frames += 1;
  state.frameTimes.push(now);
  if (h.seq > state.lastSeq && state.sentAt.has(h.seq)) {
    state.latencies.push(now - state.sentAt.get(h.seq));
    if (state.latencies.length > 30) state.latencies.shift();
    state.lastSeq = h.seq;
  }
  if (h.t > 0) state.stepMs = state.stepMs === null ? h.step_ms : 0.9 * state.stepMs + 0.1 * h.step_ms;
  $("frames").textContent = state.frames;
  $("overlay").classList.add("hidden");
}

function updateStats() {
  const now = performance.now();
  while (state.frameTimes.length && state.frameTimes[0] < now - 1000) state.frameTimes.shift();
  $("fps").textContent = state.frames ? state.frameTimes.length : "–";
  const lat = state.latencies;
  $("latency").textContent = lat.length ? `${Math.round(lat.reduce((a, b) => a + b, 0) / lat.length)} ms` : "–";
  $("rtt").textContent = state.rtt === null ? "–" : `${state.rtt.toFixed(1)} ms`;
  $("step").textContent = state.stepMs === null ? "–" : `${state.stepMs.toFixed(1)} ms`;
  const h = state.header;
  if (h) {
    $("episode").textContent = h.episode;
    $("t").textContent = h.t;
    $("return").textContent = Number(h.return.toFixed(2));
  }
  if (state.recording) {
    const s = Math.floor((now - state.recStart) / 1000);
    $("record").textContent = `■ Stop  ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }
}

// ---- keys ------------------------------------------------------------------------------

function computeAction() {
  // An extra (non-direction) key wins; the most recently pressed one if several are held.
  let best = null;
  for (const v of state.heldExtra.values()) if (!best || v.time > best.time) best = v;
  if (best) return best.index;
  // Held components, most recent first; of two opposite directions the later one wins.
  const recent = [...state.held.entries()].sort((a, b) => b[1] - a[1]).map((e) => e[0]);
  const kept = [];
  for (const c of recent) if (!kept.includes(OPPOSITE[c])) kept.push(c);
  // The largest subset of held components that is an action, preferring recent keys: holding
  // Up+Right plays UPRIGHT where the env has it, else whichever of the two came last.
  const n = kept.length;
  const masks = [];
  for (let m = (1 << n) - 1; m > 0; m--) masks.push(m);
  const bits = (m) => m.toString(2).replace(/0/g, "").length;
  const weight = (m) => { let w = 0; for (let i = 0; i < n; i++) if (m & (1 << i)) w += 1 << (n - 1 - i); return w; };
  masks.sort((a, b) => bits(b) - bits(a) || weight(b) - weight(a));
  for (const m of masks) {
    const combo = kept.filter((_, i) => m & (1 << i));
    combo.sort((a, b) => COMPONENTS.indexOf(a) - COMPONENTS.indexOf(b));
    const idx = state.comboIndex.get(combo.join(","));
    if (idx !== undefined) return idx;
  }
  return state.noop;
}

function updateAction(force = false) {
  const a = computeAction();
  if (a === state.action && !force) return;
  if (a !== state.action) {
    state.action = a;
    for (const row of document.querySelectorAll("#keys tbody tr")) {
      row.classList.toggle("active", Number(row.dataset.index) === a);
    }
  }
  state.seq += 1;
  state.sentAt.set(state.seq, performance.now());
  if (state.sentAt.size > 100) state.sentAt.delete(state.sentAt.keys().next().value);
  send({ type: "action", action: a, seq: state.seq });
}

function extraKey(code) {
  if (code.startsWith("Digit")) return code.slice(5);
  if (code.startsWith("Key")) return code.slice(3).toLowerCase();
  return null;
}

function isTyping(ev) {
  const t = ev.target;
  return t && (t.tagName === "INPUT" && t.type !== "range" || t.tagName === "SELECT" || t.tagName === "TEXTAREA");
}

window.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || isTyping(ev)) return;
  const comp = COMPONENT_KEYS[ev.code];
  const key = extraKey(ev.code);
  if (comp) {
    if (!state.held.has(comp)) state.held.set(comp, performance.now());
  } else if (key !== null && state.keyIndex.has(key)) {
    if (!state.heldExtra.has(key)) state.heldExtra.set(key, { index: state.keyIndex.get(key), time: performance.now() });
  } else if (ev.code === "KeyR" && !ev.repeat) {
    doReset();
  } else if (ev.code === "KeyP" && !ev.repeat) {
    send({ type: "pause", on: !state.paused });
  } else {
    return;
  }
  ev.preventDefault();  // no page scrolling on arrows/space, no slider nudging
  if (document.activeElement && document.activeElement.type === "range") document.activeElement.blur();
  updateAction();
});

window.addEventListener("keyup", (ev) => {
  const comp = COMPONENT_KEYS[ev.code];
  const key = extraKey(ev.code);
  if (comp) state.held.delete(comp);
  else if (key !== null) state.heldExtra.delete(key);
  else return;
  updateAction();
});

// A key released while the window had no focus never sends keyup: drop everything.
window.addEventListener("blur", () => {
  state.held.clear();
  state.heldExtra.clear();
  updateAction();
});

function renderKeys() {
  const body = $("keys").querySelector("tbody");
  body.innerHTML = "";
  const previews = state.previews !== null;
  $("keys").querySelector("thead tr").classList.toggle("with-preview", previews);
  for (const a of state.actions) {
    const tr = document.createElement("tr");
    tr.dataset.index = a.index;
    const k = document.createElement("td");
    k.textContent = a.label;
    const name = document.createElement("td");
    name.textContent = a.name;
    tr.append(k, name);
    if (previews) {
      const cell = document.createElement("td");
      const c = document.createElement("canvas");
      c.className = "preview";
      c.width = state.previews.w;
      c.height = state.previews.h;
      c.dataset.index = a.index;
      c.title = `holding ${a.label}: the model's next ${state.previews.steps} frames from t=${state.previews.t}`;
      cell.appendChild(c);
      tr.appendChild(cell);
    }
    body.appendChild(tr);
  }
  drawPreviews();
}

// ---- previews: what holding each key would do from a frame (world models) ---------------

function onPreviews(msg) {
  const sheet = new Image();
  sheet.onload = () => {
    state.previews = { sheet, steps: msg.steps, h: msg.h, w: msg.w, t: msg.t, episode: msg.episode };
    state.previewTick = 0;
    renderKeys();
    setStatus(`previews: each key held for ${msg.steps} frames from t=${msg.t}`);
  };
  sheet.src = msg.sheet;
}

function drawPreviews() {
  const p = state.previews;
  if (!p) return;
  const col = state.previewTick % p.steps;
  for (const c of document.querySelectorAll("#keys canvas.preview")) {
    const row = Number(c.dataset.index);
    c.getContext("2d").drawImage(p.sheet, col * p.w, row * p.h, p.w, p.h, 0, 0, p.w, p.h);
  }
}

// ---- controls, buttons -----------------------------------------------------------------

function renderControls(controls) {
  state.controls = controls;
  const box = $("controls");
  box.innerHTML = "";
  for (const [name, spec] of Object.entries(controls)) {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("label");
    label.textContent = spec.label || name;
    if (spec.help) label.title = spec.help;
    const val = document.createElement("span");
    val.className = "val";
    let input;
    if (spec.type === "int" || spec.type === "float") {
      input = document.createElement("input");
      input.type = "range";
      input.min = spec.min;
      input.max = spec.max;
      input.step = spec.step || (spec.type === "int" ? 1 : (spec.max - spec.min) / 100);
      input.value = spec.value;
      val.textContent = spec.value;
      input.oninput = () => { val.textContent = input.value; };
    } else if (spec.type === "choice") {
      input = document.createElement("select");
      for (const o of spec.options) input.add(new Option(o, o, false, o === spec.value));
    } else {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = spec.value;
    }
    input.id = `control-${name}`;
    label.htmlFor = input.id;
    input.onchange = () => {
      let v = input.type === "checkbox" ? input.checked : input.value;
      if (spec.type === "int") v = parseInt(v, 10);
      if (spec.type === "float") v = parseFloat(v);
      send({ type: "configure", settings: { [name]: v } });
      input.blur();  // give the keys back to the game
    };
    row.append(label, input, val);
    box.appendChild(row);
  }
}

function doReset() {
  const raw = $("seed").value.trim();
  const msg = { type: "reset" };
  if (raw !== "") {
    const seed = Number(raw);
    if (!Number.isInteger(seed) || seed < 0) return setStatus(`seed ${raw} is not a non-negative integer`, true);
    msg.seed = seed;
  }
  send(msg);
}

function onRecord(msg) {
  state.recording = msg.on;
  $("record").classList.toggle("on", msg.on);
  if (msg.on) {
    state.recStart = performance.now();
    setStatus("recording…");
    return;
  }
  state.writing = false;
  $("record").textContent = "● Record";
  if (msg.path) {
    $("recinfo").textContent = `saved ${msg.path} (${msg.frames} frames)`;
    setStatus(`recording saved: ${msg.path}`);
  } else {
    setStatus("recording stopped (no frames)");
  }
}

$("reset").onclick = (ev) => { doReset(); ev.currentTarget.blur(); };
$("preview").onclick = (ev) => { send({ type: "preview" }); ev.currentTarget.blur(); };
$("pause").onclick = (ev) => { send({ type: "pause", on: !state.paused }); ev.currentTarget.blur(); };
$("record").onclick = (ev) => {
  ev.currentTarget.blur();
  if (state.writing) return;
  if (state.recording) {
    state.writing = true;
    $("record").textContent = "saving…";
    $("record").classList.remove("on");
    state.recording = false;
    send({ type: "record", on: false });
  } else {
    send({ type: "record", on: true });
  }
};
$("seed").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") { doReset(); ev.target.blur(); }
  if (ev.key === "Escape") ev.target.blur();
});

setInterval(() => updateAction(true), RESEND_MS);
setInterval(() => send({ type: "ping", t: performance.now() }), PING_MS);
setInterval(updateStats, STATS_MS);
setInterval(() => { state.previewTick += 1; drawPreviews(); }, PREVIEW_MS);
connect();
