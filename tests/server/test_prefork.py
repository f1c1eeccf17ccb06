"""Pre-fork master tests over a real 127.0.0.1 socket.

Run as a script (``python test_prefork.py``) this file is the master under test: it binds port 0,
prints ``{"event": "listening", "port": N}`` and runs a :class:`Supervisor` whose workers serve a
trivial threaded HTTP/1.1 app, configured through ``PF_*`` environment variables. Every event
(master log, ``on_worker_exit`` and per-request ``request_started``) is a JSON line on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from modelserve.server.prefork import (
    EXIT_BOOT_FAILURE,
    RECYCLE_EXIT_CODE,
    WORKER_BOOT_ERROR,
    CrashPolicy,
    Supervisor,
    WorkerContext,
    WorkerSpec,
    bind_socket,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HERE = Path(__file__).resolve()
HOST = "127.0.0.1"

# ---------------------------------------------------------------------------------------------
# The worker and master used by the subprocess (script mode)
# ---------------------------------------------------------------------------------------------

_print_lock = threading.Lock()


def _emit(event: dict[str, Any]) -> None:
    with _print_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def _handle(conn: socket.socket, ctx: WorkerContext, number: int) -> None:
    with conn:
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        target = data.split(b" ", 2)[1].decode()
        path, _, query = target.partition("?")
        if path == "/slow":
            _emit({"event": "request_started", "pid": os.getpid(), "path": target})
            params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
            time.sleep(float(params.get("ms", "1000")) / 1000)
        body = json.dumps(
            {"pid": os.getpid(), "n": number, "slot": ctx.index, "max": ctx.max_requests}
        ).encode()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        conn.sendall(head.encode() + body)


def worker_main(sock: socket.socket, ctx: WorkerContext) -> int:
    mode = os.environ.get("PF_MODE", "serve")
    if mode == "crash":
        raise RuntimeError("boom at boot")
    if mode == "boot_error":
        return WORKER_BOOT_ERROR
    # The supervisor already routes SIGTERM to ctx.request_stop(); nothing to install.
    if mode == "hang":  # ignores SIGTERM entirely: only SIGKILL stops it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _emit({"event": "worker_ready", "pid": os.getpid(), "slot": ctx.index})
    concurrency = int(os.environ.get("PF_CONCURRENCY", "0"))
    slots = threading.BoundedSemaphore(concurrency) if concurrency else None
    sock.settimeout(0.05)  # O_NONBLOCK is shared by all workers: they all do the same
    threads: list[threading.Thread] = []
    served = 0
    recycle = False

    def run(conn: socket.socket, number: int) -> None:
        try:
            _handle(conn, ctx, number)
        finally:
            if slots is not None:
                slots.release()

    while not ctx.stopping and ctx.master_alive():
        if slots is not None and not slots.acquire(timeout=0.05):
            continue
        try:
            conn, _ = sock.accept()
        except OSError:  # timeout, or another worker won the race
            if slots is not None:
                slots.release()
            continue
        served += 1
        thread = threading.Thread(target=run, args=(conn, served))
        thread.start()
        threads.append(thread)
        if ctx.max_requests and served >= ctx.max_requests:
            recycle = True
            break
    sock.close()
    for thread in threads:
        thread.join(timeout=30)
    return RECYCLE_EXIT_CODE if recycle else 0


def _master_main() -> int:
    env = os.environ
    sock = bind_socket(HOST, 0)
    _emit({"event": "listening", "port": sock.getsockname()[1]})
    spec = WorkerSpec(
        workers=int(env.get("PF_WORKERS", "2")),
        graceful_timeout=float(env.get("PF_GRACE", "5")),
        max_requests=int(env.get("PF_MAX_REQUESTS", "0")),
        max_requests_jitter=int(env.get("PF_JITTER", "0")),
    )
    policy = CrashPolicy(
        boot_window=float(env.get("PF_BOOT_WINDOW", "1.0")),
        free_retries=int(env.get("PF_FREE_RETRIES", "5")),
        backoff_base=float(env.get("PF_BACKOFF_BASE", "0.5")),
        give_up_after=int(env.get("PF_GIVE_UP_AFTER", "10")),
    )
    supervisor = Supervisor(
        sock,
        spec,
        worker_main,
        on_worker_exit=lambda pid: _emit({"event": "on_worker_exit", "pid": pid}),
        log=_emit,
        crash_policy=policy,
    )
    return supervisor.run()


# ---------------------------------------------------------------------------------------------
# Test harness
# ---------------------------------------------------------------------------------------------


class Master:
    """The master under test, in its own session so the whole group can be cleaned up."""

    def __init__(self, **env: object) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        full_env.update({f"PF_{k.upper()}": str(v) for k, v in env.items()})
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE)],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()
        listening = self.wait_for(lambda e: e["event"] == "listening")
        self.port: int = listening["port"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e["event"] == name]

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [e for e in self.events if pred(e)]
                if len(hits) >= count:
                    return hits[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"event not seen within {timeout}s; events: {self.events[-20:]}"
                    )
                self._cond.wait(left)

    def worker_pids(self) -> set[int]:
        return {e["pid"] for e in self.named("worker_spawned")}

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 10.0) -> int:
        code = self.proc.wait(timeout=timeout)
        # The pipes reach EOF once the master and all its workers are gone: all events are in.
        self._reader.join(timeout=5)
        self._err_reader.join(timeout=5)
        return code

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        # Only this session's group: the workers forked by the master above.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._reader.join(timeout=5)
        self._err_reader.join(timeout=5)


@pytest.fixture
def start_master() -> Iterator[Callable[..., Master]]:
    masters: list[Master] = []

    def start(**env: object) -> Master:
        master = Master(**env)
        masters.append(master)
        return master

    yield start
    for master in masters:
        master.cleanup()


def get(port: int, path: str = "/", timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------------------------------
# In-process unit tests
# ---------------------------------------------------------------------------------------------


def test_bind_socket_listens_with_reuseaddr() -> None:
    sock = bind_socket(HOST, 0, backlog=16)
    try:
        host, port = sock.getsockname()
        assert host == HOST and port > 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        with socket.create_connection((HOST, port), timeout=2):
            pass
    finally:
        sock.close()


def test_spec_validation_and_jitter() -> None:
    with pytest.raises(ValueError):
        WorkerSpec(workers=0, graceful_timeout=1)
    with pytest.raises(ValueError):
        WorkerSpec(workers=1, graceful_timeout=-1)
    unlimited = WorkerSpec(workers=1, graceful_timeout=1, max_requests_jitter=5)
    assert unlimited.worker_max_requests() == 0
    spec = WorkerSpec(workers=1, graceful_timeout=1, max_requests=20, max_requests_jitter=5)
    limits = {spec.worker_max_requests() for _ in range(500)}
    assert limits == set(range(20, 26))


def test_crash_policy_delay() -> None:
    policy = CrashPolicy(free_retries=2, backoff_base=0.5, backoff_max=3.0)
    assert [policy.delay(n) for n in range(1, 8)] == [0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(10_000) == 3.0


def test_worker_context_stop_callbacks() -> None:
    ctx = WorkerContext(index=0, max_requests=0)
    calls: list[str] = []
    ctx.on_stop(lambda: calls.append("a"))
    assert not ctx.stopping
    ctx.request_stop()
    ctx.request_stop()
    ctx.on_stop(lambda: calls.append("b"))
    assert ctx.stopping and calls == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# Subprocess tests
# ---------------------------------------------------------------------------------------------


def test_workers_serve_with_distinct_pids(start_master: Callable[..., Master]) -> None:
    master = start_master(workers=3, concurrency=1)
    master.wait_for(lambda e: e["event"] == "worker_ready", count=3)
    # Each worker takes one connection at a time, so 3 concurrent slow requests need all 3.
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: get(master.port, "/slow?ms=300"), range(3)))
    assert [status for status, _ in results] == [200, 200, 200]
    pids = {body["pid"] for _, body in results}
    assert len(pids) == 3 and pids == master.worker_pids()
    assert {body["slot"] for _, body in results} == {0, 1, 2}
    master.signal(signal.SIGTERM)
    assert master.wait() == 0


def test_killed_worker_is_replaced(start_master: Callable[..., Master]) -> None:
    master = start_master(workers=2)
    master.wait_for(lambda e: e["event"] == "worker_ready", count=2)
    victim = master.named("worker_spawned")[0]
    os.kill(victim["pid"], signal.SIGKILL)
    exited = master.wait_for(lambda e: e["event"] == "worker_exited")
    assert exited["pid"] == victim["pid"] and exited["signal"] == "SIGKILL"
    assert exited["code"] is None and exited["slot"] == victim["slot"]
    master.wait_for(lambda e: e["event"] == "on_worker_exit" and e["pid"] == victim["pid"])
    new = master.wait_for(lambda e: e["event"] == "worker_ready", count=3)
    assert new["slot"] == victim["slot"] and new["pid"] != victim["pid"]
    results = [get(master.port) for _ in range(20)]
    assert all(status == 200 for status, _ in results)
    assert victim["pid"] not in {body["pid"] for _, body in results}
    master.signal(signal.SIGTERM)
    assert master.wait() == 0


def test_sigterm_drains_inflight_requests(start_master: Callable[..., Master]) -> None:
    master = start_master(workers=2, grace=5)
    master.wait_for(lambda e: e["event"] == "worker_ready", count=2)
    n = 12
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(get, master.port, "/slow?ms=1000") for _ in range(n)]
        master.wait_for(lambda e: e["event"] == "request_started", count=n)
        started = time.monotonic()
        master.signal(signal.SIGTERM)
        master.wait_for(lambda e: e["event"] == "shutdown_started")
        time.sleep(0.3)
        # Workers and master have closed the listening socket: new connections are refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, master.port), timeout=2).close()
        results = [f.result(timeout=10) for f in futures]
    assert [status for status, _ in results] == [200] * n
    assert master.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    stopped = master.named("worker_stopped")
    assert len(stopped) == 2 and all(e["code"] == 0 for e in stopped)
    assert len(master.named("on_worker_exit")) == 2
    assert not master.named("worker_killed")


def test_ctrl_c_to_the_process_group_drains(start_master: Callable[..., Master]) -> None:
    # A terminal Ctrl-C hits master and workers: workers ignore SIGINT, the master sends SIGTERM.
    master = start_master(workers=2, grace=5)
    master.wait_for(lambda e: e["event"] == "worker_ready", count=2)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(get, master.port, "/slow?ms=800")
        master.wait_for(lambda e: e["event"] == "request_started")
        os.killpg(master.proc.pid, signal.SIGINT)
        assert future.result(timeout=10)[0] == 200
    assert master.wait(timeout=10) == 0
    assert master.wait_for(lambda e: e["event"] == "shutdown_started")["reason"] == "SIGINT"


def test_hung_worker_is_killed_after_grace(start_master: Callable[..., Master]) -> None:
    master = start_master(workers=2, grace=1.0, mode="hang")
    master.wait_for(lambda e: e["event"] == "worker_ready", count=2)
    pids = master.worker_pids()
    assert get(master.port)[0] == 200
    started = time.monotonic()
    master.signal(signal.SIGTERM)
    assert master.wait(timeout=10) == 1
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 4
    killed = master.named("worker_killed")
    assert {e["pid"] for e in killed} == pids
    assert all(e["reason"] == "graceful_timeout" for e in killed)
    assert not any(_alive(pid) for pid in pids)


def test_second_signal_kills_immediately(start_master: Callable[..., Master]) -> None:
    master = start_master(workers=2, grace=30, mode="hang")
    master.wait_for(lambda e: e["event"] == "worker_ready", count=2)
    started = time.monotonic()
    master.signal(signal.SIGTERM)
    master.wait_for(lambda e: e["event"] == "shutdown_started")
    master.signal(signal.SIGINT)
    assert master.wait(timeout=10) == 1
    assert time.monotonic() - started < 5
    assert master.named("shutdown_forced")
    assert not any(_alive(pid) for pid in master.worker_pids())


def test_recycling_after_max_requests(start_master: Callable[..., Master]) -> None:
    master = start_master(workers=3, max_requests=20, jitter=5)
    master.wait_for(lambda e: e["event"] == "worker_ready", count=3)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: get(master.port), range(200)))
    assert all(status == 200 for status, _ in results)
    served: dict[int, int] = {}
    for _, body in results:
        served[body["pid"]] = served.get(body["pid"], 0) + 1
        assert 20 <= body["max"] <= 25 and body["n"] <= body["max"]
    assert len(served) >= 8  # 200 requests / at most 25 per worker
    spawned = master.named("worker_spawned")
    limits = {e["pid"]: e["max_requests"] for e in spawned}
    assert all(count <= limits[pid] for pid, count in served.items())
    assert len(set(limits.values())) > 1  # jitter staggers the recycles
    recycled = master.named("worker_recycled")
    assert len(recycled) >= 5
    assert all(e["code"] == RECYCLE_EXIT_CODE for e in recycled)
    assert not master.named("worker_exited")
    assert {e["pid"] for e in master.named("on_worker_exit")} >= {e["pid"] for e in recycled}
    master.signal(signal.SIGTERM)
    assert master.wait() == 0


def test_crash_loop_at_boot_gives_up(start_master: Callable[..., Master]) -> None:
    master = start_master(
        workers=2, mode="crash", free_retries=2, backoff_base=0.05, give_up_after=6
    )
    assert master.wait(timeout=20) == EXIT_BOOT_FAILURE
    give_up = master.wait_for(lambda e: e["event"] == "crash_loop_give_up")
    assert "giving up" in give_up["message"]
    assert master.named("worker_respawn_backoff")
    exited = master.named("worker_exited")
    assert len(exited) >= 12 and all(e["code"] == 1 for e in exited)
    assert all(e["lifetime"] < 1.0 for e in exited)
    assert b"RuntimeError: boom at boot" in master.stderr


def test_worker_boot_error_stops_master(start_master: Callable[..., Master]) -> None:
    master = start_master(workers=2, mode="boot_error")
    assert master.wait(timeout=10) == EXIT_BOOT_FAILURE
    assert master.named("worker_boot_error")
    assert len(master.named("worker_spawned")) <= 2


def test_sighup_rolling_restart(start_master: Callable[..., Master]) -> None:
    master = start_master(workers=2, boot_window=0.3)
    master.wait_for(lambda e: e["event"] == "worker_ready", count=2)
    old = master.worker_pids()
    stop = threading.Event()
    statuses: list[int] = []

    def hammer() -> None:
        while not stop.is_set() and len(statuses) < 500:
            statuses.append(get(master.port)[0])
            time.sleep(0.005)

    client = threading.Thread(target=hammer)
    client.start()
    try:
        time.sleep(0.2)
        master.signal(signal.SIGHUP)
        master.wait_for(lambda e: e["event"] == "worker_stopped", count=2)
        time.sleep(0.2)
    finally:
        stop.set()
        client.join(timeout=10)
    new = master.worker_pids() - old
    assert len(new) == 2
    assert {e["pid"] for e in master.named("worker_stopped")} == old
    assert all(e["code"] == 0 for e in master.named("worker_stopped"))
    assert statuses and all(s == 200 for s in statuses)
    served = {get(master.port)[1]["pid"] for _ in range(10)}
    assert served <= new
    master.signal(signal.SIGTERM)
    assert master.wait() == 0


def test_workers_exit_when_master_is_killed(start_master: Callable[..., Master]) -> None:
    master = start_master(workers=2)
    master.wait_for(lambda e: e["event"] == "worker_ready", count=2)
    pids = master.worker_pids()
    master.proc.kill()
    master.proc.wait(timeout=5)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


if __name__ == "__main__":
    sys.exit(_master_main())
