"""Pre-fork master process: forks N workers on one inherited listening socket and keeps them alive.

This is a small, transport-agnostic arbiter in the spirit of Gunicorn's. The caller creates and
binds the listening socket (see :func:`bind_socket`), builds a :class:`Supervisor` and calls
:meth:`Supervisor.run` from the main thread. Each worker is an ``os.fork()`` child that runs
``worker_main(sock, ctx)`` and exits with its return value. Linux/POSIX only.

Signals sent to the master
--------------------------
``SIGTERM`` / ``SIGINT``
    Graceful shutdown: stop respawning, close the master's copy of the listening socket, forward
    ``SIGTERM`` to every worker and wait up to ``graceful_timeout`` seconds; workers still alive
    then get ``SIGKILL``. :meth:`Supervisor.run` returns 0 when every worker exited with code 0
    (or :data:`RECYCLE_EXIT_CODE`) within the grace period, else 1.
A second ``SIGTERM`` / ``SIGINT`` during shutdown
    Immediate ``SIGKILL`` of all workers; ``run()`` returns 1.
``SIGHUP``
    Rolling restart: a fresh worker is forked for every slot; the old worker of a slot gets
    ``SIGTERM`` once its replacement has stayed up for ``CrashPolicy.boot_window`` seconds (if
    the replacement dies at boot, the old worker keeps serving). Workers are forked from the
    master, so code loaded in the master is *not* reloaded.

Contract for workers
--------------------
* Before ``worker_main`` runs, the child drops the master's handlers: ``SIGHUP`` and
  ``SIGCHLD`` go back to ``SIG_DFL``, ``SIGINT`` is ignored (a terminal Ctrl-C reaches the whole
  process group; the master turns it into a graceful ``SIGTERM`` for the workers) and
  ``SIGTERM`` calls :meth:`WorkerContext.request_stop`, so a ``SIGTERM`` that arrives while the
  worker is still booting (loading a model) is not lost: check ``ctx.stopping`` once booted,
  and exit 0 if it is set. A worker that neither installs its own handler nor polls
  ``ctx.stopping`` is SIGKILLed after ``graceful_timeout``. On Linux the child
  also asks the kernel for ``SIGTERM`` when the master dies (``PR_SET_PDEATHSIG``), so workers
  drain and exit instead of lingering as orphans holding the port.
* ``SIGTERM`` means *drain*: stop accepting, finish in-flight requests, return 0. The worker
  installs its own handler, e.g. :meth:`WorkerContext.install_signal_handlers` (blocking
  servers; then poll :attr:`WorkerContext.stopping` or register :meth:`WorkerContext.on_stop`)
  or ``loop.add_signal_handler(signal.SIGTERM, ctx.request_stop)`` (asyncio).
* Recycling: when a worker has served ``ctx.max_requests`` requests (0 = unlimited) it stops
  accepting, finishes in-flight work and returns :data:`RECYCLE_EXIT_CODE`; the master forks a
  replacement at once. The limit is ``spec.max_requests + randint(0, spec.max_requests_jitter)``
  per worker, so recycles are staggered.
* Returning :data:`WORKER_BOOT_ERROR` (e.g. the model cannot load) makes the master give up:
  it shuts the other workers down and ``run()`` returns :data:`EXIT_BOOT_FAILURE`.
* Any other exit while the master is not shutting down (another code, an uncaught exception,
  which exits 1, or a signal) is unexpected: it is logged as ``worker_exited`` and the slot is
  respawned.

Crash loops
-----------
An unexpected exit within ``boot_window`` seconds of the fork is a *boot failure* and
increments the slot's counter (an exit after a longer life resets it to 0). The first
``free_retries`` boot failures in a row are respawned immediately; after that the respawn is
delayed ``backoff_base * 2**k`` seconds (capped at ``backoff_max``). When every slot has
``give_up_after`` boot failures in a row and no worker is alive, the master logs
``crash_loop_give_up`` and ``run()`` returns :data:`EXIT_BOOT_FAILURE`. A single bad slot next
to healthy ones keeps being retried at ``backoff_max`` intervals.

Events
------
Every event is a dict passed to ``log`` (default: one JSON line on stdout) with at least
``event`` and ``level``: ``master_started``, ``worker_spawned``, ``worker_recycled``,
``worker_exited``, ``worker_stopped``, ``worker_respawn_backoff``, ``worker_boot_error``,
``worker_killed``, ``reload_started``, ``shutdown_started``, ``shutdown_forced``,
``crash_loop_give_up``, ``on_worker_exit_failed``, ``master_stopped``.

Not implemented (compared with Gunicorn): worker heartbeat timeouts, ``SIGTTIN``/``SIGTTOU``,
``SIGUSR1``/``SIGUSR2``, binary upgrade.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn

__all__ = [
    "EXIT_BOOT_FAILURE",
    "RECYCLE_EXIT_CODE",
    "WORKER_BOOT_ERROR",
    "CrashPolicy",
    "Supervisor",
    "WorkerContext",
    "WorkerSpec",
    "bind_socket",
]

RECYCLE_EXIT_CODE = 75
"""Worker exit code meaning "I reached max_requests, replace me" (``EX_TEMPFAIL``)."""

WORKER_BOOT_ERROR = 3
"""Worker exit code meaning "I can never boot" (as in Gunicorn): the master gives up."""

EXIT_BOOT_FAILURE = 3
"""Master exit code after a worker boot error or a crash loop."""

_EXIT_OK = 0
_EXIT_UNCLEAN = 1
_WORKER_EXCEPTION_EXIT_CODE = 1
_TICK = 1.0
_PR_SET_PDEATHSIG = 1
_HANDLED_SIGNALS: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@dataclass(frozen=True)
class WorkerSpec:
    """How many workers to run and how they stop and recycle."""

    workers: int
    graceful_timeout: float
    max_requests: int = 0
    max_requests_jitter: int = 0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.graceful_timeout < 0:
            raise ValueError("graceful_timeout must be >= 0")
        if self.max_requests < 0 or self.max_requests_jitter < 0:
            raise ValueError("max_requests and max_requests_jitter must be >= 0")

    def worker_max_requests(self, rng: random.Random | None = None) -> int:
        """One worker's own limit: ``max_requests + randint(0, jitter)``; 0 means unlimited."""
        if self.max_requests == 0:
            return 0
        jitter = (rng or random).randint(0, self.max_requests_jitter)
        return self.max_requests + jitter


@dataclass(frozen=True)
class CrashPolicy:
    """Respawn backoff for workers that die at boot (see the module docstring)."""

    boot_window: float = 1.0
    free_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    give_up_after: int = 10

    def __post_init__(self) -> None:
        if self.boot_window < 0 or self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("boot_window, backoff_base and backoff_max must be >= 0")
        if self.free_retries < 0 or self.give_up_after < 1:
            raise ValueError("free_retries must be >= 0 and give_up_after >= 1")

    def delay(self, failures: int) -> float:
        """Seconds to wait before respawning a slot with ``failures`` boot failures in a row."""
        if failures <= self.free_retries:
            return 0.0
        exponent = min(failures - self.free_retries - 1, 32)
        return float(min(self.backoff_base * (2**exponent), self.backoff_max))


@dataclass
class WorkerContext:
    """What a worker knows about itself. Created in the child, passed to ``worker_main``.

    ``stopping`` turns True once :meth:`request_stop` is called, typically from the worker's
    own SIGTERM handler (:meth:`install_signal_handlers`, or
    ``loop.add_signal_handler(signal.SIGTERM, ctx.request_stop)`` under asyncio).
    """

    index: int
    max_requests: int
    master_pid: int = 0
    stopping: bool = False
    #: False for the first workers of the master; True for every worker forked later
    #: (respawn, recycle, SIGHUP), while other workers are (usually) serving.
    replacement: bool = False
    _callbacks: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def request_stop(self) -> None:
        """Mark the worker as draining and run the :meth:`on_stop` callbacks (once)."""
        if self.stopping:
            return
        self.stopping = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the worker must drain (at once if it already must)."""
        if self.stopping:
            callback()
        else:
            self._callbacks.append(callback)

    def install_signal_handlers(self) -> None:
        """Install a ``SIGTERM`` handler that calls :meth:`request_stop` (main thread only)."""

        def _handler(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, _handler)

    def master_alive(self) -> bool:
        """False once the master has died (the worker has been re-parented)."""
        return self.master_pid == 0 or os.getppid() == self.master_pid


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """Create a listening TCP socket with ``SO_REUSEADDR`` (IPv6 literals allowed).

    The socket is left blocking; workers may switch it to non-blocking. Note that
    ``O_NONBLOCK`` is shared by every process holding the socket, and that asyncio's
    ``create_server(sock=...)``/``start_server(sock=...)`` call ``sock.listen(backlog)`` again
    (default 100): pass the same ``backlog`` there or the kernel queue shrinks for every worker.
    """
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class _Worker:
    pid: int
    slot: int
    started: float
    retiring: bool = False  # replaced by a SIGHUP reload: never respawned
    replaced_by: int | None = None  # pid of the replacement that must survive boot_window
    kill_at: float | None = None  # SIGKILL deadline once SIGTERM has been sent
    killed: bool = False


@dataclass
class _Slot:
    failures: int = 0
    respawn_at: float | None = None


def _default_log(event: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()


def _set_pdeathsig(signum: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    except Exception:  # best effort: without it orphans are only detected by master_alive()
        return


class Supervisor:
    """The pre-fork master. Construct in the main thread, then call :meth:`run`."""

    def __init__(
        self,
        sock: socket.socket,
        spec: WorkerSpec,
        worker_main: Callable[[socket.socket, WorkerContext], int],
        *,
        on_worker_exit: Callable[[int], None] | None = None,
        log: Callable[[dict[str, Any]], None] | None = None,
        crash_policy: CrashPolicy | None = None,
    ) -> None:
        self._sock = sock
        self._spec = spec
        self._worker_main = worker_main
        self._on_worker_exit = on_worker_exit
        self._log_fn = log or _default_log
        self._policy = crash_policy or CrashPolicy()
        self._rng = random.Random()
        self._workers: dict[int, _Worker] = {}
        self._slots = [_Slot() for _ in range(spec.workers)]
        self._pending: list[int] = []
        self._stopping = False
        self._stop_deadline = 0.0
        self._forced = False
        self._unclean = False
        self._exit_code: int | None = None
        self._wake_r = -1
        self._wake_w = -1
        self._master_pid = 0
        self._initial_spawned = False

    # -- public ---------------------------------------------------------------------------

    def run(self) -> int:
        """Fork the workers and supervise them until shutdown; return the exit code."""
        self._master_pid = os.getpid()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        old_handlers: dict[int, Handler] = {}
        try:
            for signum in _HANDLED_SIGNALS:
                old_handlers[signum] = signal.signal(signum, self._on_signal)
            self._log(
                "info",
                "master_started",
                pid=self._master_pid,
                workers=self._spec.workers,
                graceful_timeout=self._spec.graceful_timeout,
            )
            return self._loop()
        finally:
            # Never let a stray exception leave workers behind.
            for worker in list(self._workers.values()):
                self._kill(worker, signal.SIGKILL)
            for pid in list(self._workers):
                self._waitpid_blocking(pid)
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in old_handlers.items():
                if handler is not None:
                    signal.signal(signum, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- master loop ----------------------------------------------------------------------

    def _loop(self) -> int:
        for slot in range(self._spec.workers):
            self._spawn(slot)
        self._initial_spawned = True
        while True:
            self._handle_signals()
            self._reap()
            now = time.monotonic()
            if self._stopping:
                if not self._workers:
                    break
                if now >= self._stop_deadline:
                    for worker in list(self._workers.values()):
                        if not worker.killed:
                            self._kill(worker, signal.SIGKILL, reason="graceful_timeout")
            else:
                self._retire_replaced(now)
                self._check_give_up()
                if not self._stopping:
                    self._spawn_due(now)
            self._enforce_kill_deadlines(now)
            self._wait(self._next_timeout(now))
        code = self._exit_code
        if code is None:
            code = _EXIT_UNCLEAN if (self._unclean or self._forced) else _EXIT_OK
        self._log("info" if code == 0 else "error", "master_stopped", exit_code=code)
        return code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._pending.append(signum)

    def _wait(self, timeout: float) -> None:
        with contextlib.suppress(InterruptedError):  # PEP 475 retries select anyway
            select.select([self._wake_r], [], [], timeout)
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _next_timeout(self, now: float) -> float:
        deadlines = [now + _TICK]
        if self._stopping and self._stop_deadline > now:
            deadlines.append(self._stop_deadline)
        deadlines.extend(s.respawn_at for s in self._slots if s.respawn_at is not None)
        deadlines.extend(w.kill_at for w in self._workers.values() if w.kill_at is not None)
        return max(0.0, min(deadlines) - now)

    def _handle_signals(self) -> None:
        while self._pending:
            signum = self._pending.pop(0)
            if signum == signal.SIGCHLD:
                continue  # reaping happens on every iteration
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self._stopping:
                    self._force_stop(signum)
                else:
                    self._begin_shutdown(reason=signal.Signals(signum).name)
            elif signum == signal.SIGHUP and not self._stopping:
                self._reload()

    # -- spawning -------------------------------------------------------------------------

    def _spawn(self, slot: int) -> int:
        self._slots[slot].respawn_at = None
        max_requests = self._spec.worker_max_requests(self._rng)
        _flush_std_streams()  # or buffered output would be written twice
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (covered by the subprocess tests)
            self._run_child(slot, max_requests)
        self._workers[pid] = _Worker(pid=pid, slot=slot, started=time.monotonic())
        self._log("info", "worker_spawned", pid=pid, slot=slot, max_requests=max_requests)
        return pid

    def _run_child(self, slot: int, max_requests: int) -> NoReturn:  # pragma: no cover
        code = _WORKER_EXCEPTION_EXIT_CODE
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGHUP, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            ctx = WorkerContext(
                index=slot,
                max_requests=max_requests,
                master_pid=self._master_pid,
                replacement=self._initial_spawned,
            )
            ctx.install_signal_handlers()
            os.close(self._wake_r)
            os.close(self._wake_w)
            _set_pdeathsig(signal.SIGTERM)
            if os.getppid() != self._master_pid:  # the master died before prctl
                os._exit(_EXIT_UNCLEAN)
            if signal.SIGTERM in self._pending:  # arrived between fork() and the handler
                ctx.request_stop()
            self._workers.clear()
            self._pending.clear()
            result = self._worker_main(self._sock, ctx)
            code = result if isinstance(result, int) else 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = _WORKER_EXCEPTION_EXIT_CODE
        finally:
            _flush_std_streams()
            os._exit(code & 0xFF)

    def _slot_has_active_worker(self, slot: int) -> bool:
        return any(w.slot == slot and not w.retiring for w in self._workers.values())

    def _spawn_due(self, now: float) -> None:
        for index, slot in enumerate(self._slots):
            if slot.respawn_at is not None and now >= slot.respawn_at:
                if self._slot_has_active_worker(index):
                    slot.respawn_at = None
                else:
                    self._spawn(index)

    def _check_give_up(self) -> None:
        limit = self._policy.give_up_after
        if any(not w.retiring for w in self._workers.values()):
            return
        if all(slot.failures >= limit for slot in self._slots):
            self._log(
                "critical",
                "crash_loop_give_up",
                message=(
                    f"every worker died within {self._policy.boot_window}s of starting "
                    f"{limit} times in a row; giving up"
                ),
                failures=limit,
            )
            self._exit_code = EXIT_BOOT_FAILURE
            self._begin_shutdown(reason="crash_loop")

    # -- reaping --------------------------------------------------------------------------

    def _reap(self) -> None:
        for pid in list(self._workers):
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                wpid, status = pid, 0
            if wpid == 0:
                continue
            self._handle_exit(self._workers.pop(pid), status)

    def _waitpid_blocking(self, pid: int) -> None:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = 0
        worker = self._workers.pop(pid, None)
        if worker is not None:
            self._handle_exit(worker, status)

    def _handle_exit(self, worker: _Worker, status: int) -> None:
        now = time.monotonic()
        code = os.waitstatus_to_exitcode(status)
        exit_code = code if code >= 0 else None
        sig = signal.Signals(-code).name if code < 0 else None
        lifetime = round(now - worker.started, 3)
        fields: dict[str, Any] = {
            "pid": worker.pid,
            "slot": worker.slot,
            "code": exit_code,
            "signal": sig,
            "lifetime": lifetime,
        }
        self._notify_exit(worker.pid)
        clean = exit_code in (0, RECYCLE_EXIT_CODE) and not worker.killed
        if self._stopping or worker.retiring:
            if self._stopping and not clean:
                self._unclean = True
            self._log("info" if clean else "warning", "worker_stopped", **fields)
            return
        slot = self._slots[worker.slot]
        if exit_code == RECYCLE_EXIT_CODE:
            slot.failures = 0
            self._log("info", "worker_recycled", **fields)
            self._spawn(worker.slot)
            return
        if exit_code == WORKER_BOOT_ERROR:
            self._log(
                "critical",
                "worker_boot_error",
                message="worker reported a boot error; shutting down",
                **fields,
            )
            self._exit_code = EXIT_BOOT_FAILURE
            self._begin_shutdown(reason="worker_boot_error")
            return
        self._log("error", "worker_exited", **fields)
        for other in self._workers.values():  # a failed reload replacement: keep the old one
            if other.replaced_by == worker.pid and other.kill_at is None and not other.killed:
                other.replaced_by = None
                other.retiring = False
        if self._slot_has_active_worker(worker.slot):
            return
        if lifetime < self._policy.boot_window:
            slot.failures += 1
        else:
            slot.failures = 0
        delay = self._policy.delay(slot.failures)
        if delay > 0:
            self._log(
                "warning",
                "worker_respawn_backoff",
                slot=worker.slot,
                failures=slot.failures,
                delay=delay,
            )
        slot.respawn_at = now + delay

    def _notify_exit(self, pid: int) -> None:
        if self._on_worker_exit is None:
            return
        try:
            self._on_worker_exit(pid)
        except Exception as exc:
            self._log("error", "on_worker_exit_failed", pid=pid, error=repr(exc))

    # -- stopping -------------------------------------------------------------------------

    def _kill(self, worker: _Worker, signum: int, reason: str | None = None) -> None:
        try:
            os.kill(worker.pid, signum)
        except ProcessLookupError:
            return
        if signum == signal.SIGKILL:
            worker.killed = True
            worker.kill_at = None
            if reason is not None:
                self._log("warning", "worker_killed", pid=worker.pid, reason=reason)

    def _terminate(self, worker: _Worker) -> None:
        if worker.kill_at is None and not worker.killed:
            worker.kill_at = time.monotonic() + self._spec.graceful_timeout
            self._kill(worker, signal.SIGTERM)

    def _enforce_kill_deadlines(self, now: float) -> None:
        for worker in list(self._workers.values()):
            if worker.kill_at is not None and now >= worker.kill_at:
                self._kill(worker, signal.SIGKILL, reason="graceful_timeout")

    def _begin_shutdown(self, reason: str) -> None:
        self._stopping = True
        self._stop_deadline = time.monotonic() + self._spec.graceful_timeout
        for slot in self._slots:
            slot.respawn_at = None
        # Once the workers close theirs, new connections are refused instead of queued forever.
        self._sock.close()
        self._log(
            "info",
            "shutdown_started",
            reason=reason,
            workers=len(self._workers),
            graceful_timeout=self._spec.graceful_timeout,
        )
        for worker in list(self._workers.values()):
            self._terminate(worker)

    def _force_stop(self, signum: int) -> None:
        self._forced = True
        self._log(
            "warning",
            "shutdown_forced",
            signal=signal.Signals(signum).name,
            workers=len(self._workers),
        )
        for worker in list(self._workers.values()):
            self._kill(worker, signal.SIGKILL, reason="forced")

    # -- reload ---------------------------------------------------------------------------

    def _reload(self) -> None:
        self._log("info", "reload_started", workers=len(self._workers))
        old = [w for w in self._workers.values() if not w.retiring]
        for worker in old:
            worker.retiring = True
        for index in range(self._spec.workers):
            new_pid = self._spawn(index)
            for worker in old:
                if worker.slot == index:
                    worker.replaced_by = new_pid

    def _retire_replaced(self, now: float) -> None:
        window = self._policy.boot_window
        for worker in list(self._workers.values()):
            if not worker.retiring or worker.kill_at is not None or worker.killed:
                continue
            new = self._workers.get(worker.replaced_by) if worker.replaced_by else None
            if new is None or now - new.started >= window:
                worker.replaced_by = None
                self._terminate(worker)

    # -- logging --------------------------------------------------------------------------

    def _log(self, level: str, event: str, **fields: Any) -> None:
        record: dict[str, Any] = {"event": event, "level": level, "master_pid": self._master_pid}
        record.update(fields)
        with contextlib.suppress(Exception):  # a broken logger must not kill the master
            self._log_fn(record)
