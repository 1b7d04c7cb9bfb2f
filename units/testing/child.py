"""The other process of ``check_determinism``: it builds each unit it is sent anew, from
its class and configuration, and sends back its output (or the error), over stdin and
stdout, one length-prefixed pickle each way.

    python -m skyledger.units.testing.child
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from skyledger.units.testing.determinism import output_of, receive, send

__all__ = ["serve"]


def serve() -> None:
    """The other process: build each unit anew and return its output (or the error)."""
    while True:
        try:
            module, qualname, config, inputs = receive(sys.stdin.buffer)
        except EOFError:
            return
        try:
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            reply: tuple[bool, Any] = (True, output_of(cls(config), inputs))
        except Exception as exc:  # the parent reports it
            reply = (False, f"{type(exc).__name__}: {exc}")
        send(sys.stdout.buffer, reply)


if __name__ == "__main__":
    serve()
