"""Port checks made before anything slow starts, so that a clash names the port and the fix.

Without them a taken axon port showed up as "axon did not start within 15 s" after the models had
loaded, and a taken side port as a bare `[Errno 98] Address already in use`.
"""

from __future__ import annotations

import errno
import socket


class PortInUseError(OSError):
    """A port the miner needs is taken; the message says which and how to change it."""

    def __str__(self) -> str:  # OSError would prefix "[Errno 98]"
        return str(self.strerror)


def ensure_free(host: str, port: int, what: str, fix: str) -> None:
    """Bind `host:port` for a moment; raise PortInUseError naming `what` and `fix` if that fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and http.server bind
        try:
            s.bind((host, port))
        except OSError as exc:
            why = (
                "is already in use by another process"
                if exc.errno == errno.EADDRINUSE
                else f"cannot be bound ({exc.strerror})"
            )
            raise PortInUseError(exc.errno, f"{what} {host}:{port} {why}; {fix}") from exc
