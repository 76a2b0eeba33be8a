"""Play environments and world models live in the browser (``farsight play``).

- ``protocol``: what a playable env provides (gymnasium interface + optional ``controls``).
- ``keymap``: keyboard bindings derived from ``action_meanings``.
- ``server``: the web server (Starlette + uvicorn), one isolated env per websocket session.
"""
