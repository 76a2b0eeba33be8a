"""Keyboard bindings derived from an env's ``action_meanings``.

Each meaning is parsed into a *combo*: a set of the components UP, DOWN, LEFT, RIGHT and FIRE
("UPRIGHTFIRE" -> {UP, RIGHT, FIRE}; "move_left" -> {LEFT}; "NOOP" -> {}). The page binds the
arrow keys and WASD to the four directions and Space to FIRE; while keys are held, the page
plays the action whose combo equals the held components, so holding Up and Right plays
UPRIGHT wherever the env has it (and falls back to the most recently pressed key's action
where it does not: see ``play.js``). Meanings that are not combos (crafter's "place_stone",
latent actions "0".."5") and duplicates of an earlier action's combo get their own key: the
digits, then letters that the page does not use for anything else.

Synonyms cover the real envs: vizdoom's move_forward/turn_left/attack, crafter's "do" (its
interaction button) as FIRE. Atari-style names are run together ("DOWNLEFTFIRE"), so a token is
split into components when it is exactly a concatenation of them.
"""

from __future__ import annotations

import re
from typing import Any

COMPONENTS = ("UP", "DOWN", "LEFT", "RIGHT", "FIRE")
# Whole-token synonyms; None means "no component" (the token only names the no-op or a verb).
_SYNONYMS: dict[str, str | None] = {
    "NOOP": None,
    "MOVE": None,
    "TURN": None,
    "FORWARD": "UP",
    "BACKWARD": "DOWN",
    "BACK": "DOWN",
    "ATTACK": "FIRE",
    "SHOOT": "FIRE",
    "DO": "FIRE",
}
# Keys the page already uses (R reset, P pause) or binds to directions (WASD) are never given
# to an action.
_EXTRA_KEYS = "1234567890" + "".join(c for c in "qeftyuiogjhklzxcvbnm" if c not in "wasdrp")
_LABELS = {"UP": "↑ / W", "DOWN": "↓ / S", "LEFT": "← / A", "RIGHT": "→ / D", "FIRE": "Space"}
_ARROWS = {"UP": "↑", "DOWN": "↓", "LEFT": "←", "RIGHT": "→", "FIRE": "Space"}


def parse_combo(meaning: str) -> frozenset[str] | None:
    """The components named by ``meaning``, or None when it is not made of them only."""
    tokens = [t for t in re.split(r"[^A-Z0-9]+", meaning.upper()) if t]
    if not tokens:
        return None
    combo: set[str] = set()
    for token in tokens:
        if token in _SYNONYMS:
            if _SYNONYMS[token] is not None:
                combo.add(_SYNONYMS[token])
            continue
        parts = _split_concatenated(token)
        if parts is None:
            return None
        combo.update(parts)
    # Opposite directions cancel on a keyboard, so such a combo could never be played by keys.
    if {"UP", "DOWN"} <= combo or {"LEFT", "RIGHT"} <= combo:
        return None
    return frozenset(combo)


def _split_concatenated(token: str) -> list[str] | None:
    """'UPRIGHTFIRE' -> ['UP', 'RIGHT', 'FIRE']; None when the token is not such a run."""
    if not token:
        return []
    for name in COMPONENTS:
        if token.startswith(name):
            rest = _split_concatenated(token[len(name) :])
            if rest is not None:
                return [name, *rest]
    return None


def keymap(action_meanings: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """One row per action: index, name, combo (sorted components, or None) and the key(s) to
    press (``key``: the KeyboardEvent.key for non-combo actions; ``label``: what the page
    shows)."""
    rows: list[dict[str, Any]] = []
    seen: set[frozenset[str]] = set()
    for index, meaning in enumerate(action_meanings):
        combo = parse_combo(str(meaning))
        row: dict[str, Any] = {"index": index, "name": str(meaning), "combo": None, "key": None}
        if combo is not None and combo not in seen:
            seen.add(combo)
            row["combo"] = sorted(combo, key=COMPONENTS.index)
        rows.append(row)
    keyed = [row for row in rows if row["combo"] is None]
    # An action named by a single free key (latent actions "0".."9") gets that very key.
    free = list(_EXTRA_KEYS)
    for row in keyed:
        name = row["name"].lower()
        if name in free:
            row["key"] = name
            free.remove(name)
    pool = iter(free)
    for row in keyed:
        if row["key"] is None:
            row["key"] = next(pool, None)
    for row in rows:
        if row["combo"] is not None:
            row["label"] = _combo_label(row["combo"])
        else:
            row["label"] = row["key"].upper() if row["key"] else "—"
    return rows


def _combo_label(combo: list[str]) -> str:
    if not combo:
        return "(no key)"
    if len(combo) == 1:
        return _LABELS[combo[0]]
    return " + ".join(_ARROWS[c] for c in combo)
