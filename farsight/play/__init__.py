"""Play environments and world models live in the browser (``farsight play``).

- ``controls``: what a playable env provides (gymnasium interface + optional ``controls``).
- ``keymap``: keyboard bindings derived from ``action_meanings``.
- ``wire``: the websocket messages between page and server, and their checks.
- ``session``: one player: its own env on its own thread, ticks, acknowledgements, recording.
- ``server``: the web app (Starlette + uvicorn), its origin checks, sockets and serving.
"""
