"""The review's MongoDB port: mongod's own, never the socket FiftyOne's service holds in a forked child."""

import json
import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from tests.training.review_fixtures import make_data, make_run
from tests.training.test_review import free_port, review_env, run_review  # noqa: F401 (review_env is a fixture)
from training.review_database import mongod_ports, wait_for_mongod

# A stand-in for FiftyOne's database service at the moment that broke CI: it listens on a socket of
# its own, has forked a child that still holds that socket (mongod's fork before its exec), and runs
# a process named mongod (a link to this Python) that listens on another port.
SERVICE = textwrap.dedent(
    """
    import os, socket, subprocess, sys, time
    ipc = socket.socket(); ipc.bind(("127.0.0.1", 0)); ipc.listen()
    if os.fork() == 0:
        time.sleep(60); os._exit(0)
    mongod = subprocess.Popen([sys.argv[1], "-c", sys.argv[2]], stdout=subprocess.PIPE, text=True)
    print(ipc.getsockname()[1], mongod.stdout.readline().strip(), flush=True)
    time.sleep(60)
    """
)
MONGOD = 'import socket, time; s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)'


def listening(process):
    return [c.laddr[1] for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]


def test_the_port_is_mongods_not_the_service_socket_a_forked_child_still_holds(tmp_path):
    mongod = tmp_path / "mongod"
    mongod.symlink_to(sys.executable)
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(mongod), MONGOD], stdout=subprocess.PIPE, text=True)
    try:
        ipc_port, mongod_port = map(int, service.stdout.readline().split())
        tree = psutil.Process(service.pid)
        # the trap is there: a child that is not mongod listens on the service's own port
        forked = [c for c in tree.children() if c.name() != "mongod"]
        assert forked and ipc_port in listening(forked[0])
        # and only mongod's port is taken
        assert mongod_ports(tree) == [mongod_port]
        assert wait_for_mongod(tree, tmp_path / "mongo.log", timeout_s=5) == mongod_port
    finally:
        for child in psutil.Process(service.pid).children(recursive=True):
            child.kill()
        service.kill()
        service.wait()


def test_a_service_without_mongod_is_refused_naming_mongods_log(tmp_path):
    service = psutil.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(TimeoutError, match=r"mongod did not listen within 1 s; see its log .*mongo\.log"):
            wait_for_mongod(service, tmp_path / "mongo.log", timeout_s=1, every_s=0.1)
    finally:
        service.kill()
    # a service that died (not yet waited for) is refused at once, not after the whole wait
    with pytest.raises(RuntimeError, match=r"exited before mongod listened; see mongod's log .*mongo\.log"):
        wait_for_mongod(service, tmp_path / "mongo.log", timeout_s=30, every_s=0.1)
    service.wait()


START = """
import json, os, psutil
from training.review_database import PORT_ENV, start_database
port = start_database()
owners = {psutil.Process(c.pid).name() for c in psutil.net_connections("tcp") if c.laddr and c.laddr[1] == port and c.pid}
import fiftyone as fo
fo.Dataset("probe")
print(json.dumps({"port": port, "env": os.environ[PORT_ENV], "owners": sorted(owners), "datasets": fo.list_datasets()}))
"""


@pytest.mark.slow
def test_fiftyone_is_pointed_at_the_mongod_it_started(tmp_path, review_env):  # noqa: F811
    python, env = review_env
    env = {k: v for k, v in env.items() if k != "FIFTYONE_PRIVATE_DATABASE_PORT"}
    done = subprocess.run(
        [str(python), "-c", START], env=env, cwd=os.getcwd(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["env"] == str(got["port"]) and got["owners"] == ["mongod"] and got["datasets"] == ["probe"]


@pytest.mark.slow
def test_a_database_that_does_not_answer_is_named_at_once_not_after_a_traceback(tmp_path, review_env):  # noqa: F811
    python, env = review_env
    run = make_run(tmp_path / "run", make_data(tmp_path / "data"))
    port = free_port()  # nothing listens there
    env = {**env, "FIFTYONE_DATABASE_URI": f"mongodb://someone:secret@127.0.0.1:{port}/?serverSelectionTimeoutMS=300"}
    done = run_review(python, env, run, "--name", "t", "--top", "3", "--export", tmp_path / "relabel", timeout=120)
    assert done.returncode == 2  # a clean error (roadwork.terminal.fail), not a crash
    assert "FiftyOne could not reach its database" in done.stderr
    assert f"check the MongoDB at 127.0.0.1:{port} (FiftyOne's database_uri)" in done.stderr
    assert "secret" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "relabel").exists()
