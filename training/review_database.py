"""FiftyOne's bundled MongoDB, started so that FiftyOne talks to mongod and to nothing else.

FiftyOne (1.x) runs mongod under a small service process and takes as the database port the first
listening socket it finds among that service's child processes. The service opens a socket of its
own (for client registration) before it forks mongod, and until mongod's exec the forked child
still holds that socket. FiftyOne's look first asks whether the service wraps a child with its own
arguments (no child yet), then lists the children: a fork between the two puts the service's
socket in the list, pymongo waits its 30 s on a server that never answers and FiftyOne stops with
"Could not connect to `mongod`". That is how `roadwork review` failed in CI once (stop 55):
mongod's log showed it listening within a second and never a client.

`start_database` starts the same service (or joins one already running, as FiftyOne does), takes
the port of the process named mongod only, and hands it to FiftyOne the way FiftyOne hands it to
its own App server: through FIFTYONE_PRIVATE_DATABASE_PORT. A `database_uri` in the user's FiftyOne
config (their own MongoDB) is left alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PORT_ENV = "FIFTYONE_PRIVATE_DATABASE_PORT"
MONGOD_NAMES = ("mongod", "mongod.exe")

_service: Any = None
"""The service this process started or joined, held for the process's life: the service stops mongod
once its last client exits."""


def mongod_ports(process: Any, names: tuple[str, ...] = MONGOD_NAMES) -> list[int]:
    """The TCP ports that descendants of `process` (a psutil.Process) named mongod listen on."""
    import psutil

    ports = []
    try:
        children = process.children(recursive=True)
    except psutil.Error:  # the service itself is gone: nothing listens under it
        return []
    for child in children:
        try:
            if child.name() not in names:
                continue
            ports += [c.laddr[1] for c in child.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:  # gone or changing under us: look again next time
            continue
    return sorted(set(ports))


def wait_for_mongod(process: Any, log: Path, timeout_s: float = 60.0, every_s: float = 0.25) -> int:
    """The port mongod under `process` listens on, once it does; a clear error if it never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        ports = mongod_ports(process)
        if ports:
            return ports[0]
        if not alive(process):
            raise RuntimeError(f"FiftyOne's database service exited before mongod listened; see mongod's log {log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"mongod did not listen within {timeout_s:.0f} s; see its log {log}")
        time.sleep(every_s)


def alive(process: Any) -> bool:
    """Whether `process` still runs (an exited child not yet waited for is a zombie: not alive)."""
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def start_database(timeout_s: float = 60.0) -> int | None:
    """Start (or join) FiftyOne's mongod, point FiftyOne at its port and connect, so that a database
    that does not answer is named now rather than after the work before the first write. Returns
    the port; None where FiftyOne is told where its database is already (a `database_uri`, or a
    port set by whoever started this process)."""
    global _service
    import fiftyone as fo
    import fiftyone.core.service as fos

    port = None
    if not (fo.config.database_uri or os.environ.get(PORT_ENV)):
        _service = fos.DatabaseService()
        port = wait_for_mongod(_service.child, database_log(), timeout_s)
        os.environ[PORT_ENV] = str(port)
    try:
        fo.list_datasets()
    except ConnectionError as exc:
        raise RuntimeError(f"FiftyOne could not reach its database ({exc}); {database_where()}") from exc
    return port


def database_where() -> str:
    """Where to look when the database does not answer: the host of the configured `database_uri`
    (credentials left out), else mongod's log."""
    import fiftyone as fo

    if fo.config.database_uri:
        at = urlsplit(fo.config.database_uri)
        return f"check the MongoDB at {at.hostname}:{at.port or 27017} (FiftyOne's database_uri)"
    return f"see mongod's log {database_log()}"


def database_log() -> Path:
    """Where FiftyOne's mongod writes its log (under the `database_dir` of FiftyOne's config)."""
    import fiftyone as fo

    return Path(fo.config.database_dir) / "log" / "mongo.log"
