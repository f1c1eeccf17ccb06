"""Helpers for tests of model classes and services, ours and the teams'.

``check_model`` runs checkpoint 1 in a test (train or load, then the self-test) and fails with
the report. :class:`RunningService` starts ``modelserve serve`` as a real process on a free
port of 127.0.0.1, waits until it is ready, and stops it with a signal.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

from modelserve.model import Model, test_cases
from modelserve.selftest import SelfTestReport, Tolerance, run_selftest

__all__ = ["RunningService", "check_model", "free_port"]


def check_model(model_cls: type[Model], artifact: Path | str | None = None) -> SelfTestReport:
    """Train (when no artifact is given) and load ``model_cls``, then self-test it.

    Raises ``AssertionError`` with the report's summary when a canary fails.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if artifact is None:
            artifact = Path(tmp) / "artifact"
            artifact.mkdir()
            model_cls().train(artifact)  # type: ignore[attr-defined]
        model = model_cls()
        model.load(Path(artifact))
        report = run_selftest(model, test_cases(model), Tolerance.for_model(model_cls))
    if not report.passed:
        raise AssertionError(report.summary())
    return report


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningService:
    """``modelserve serve`` in ``root`` as a child process, for tests over a real socket."""

    def __init__(
        self,
        root: Path | str,
        *,
        workers: int = 1,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable, "-m", "modelserve", "serve",
            "--port", str(self.port), "--workers", str(workers), *args,
        ]  # fmt: skip
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / f"serve-{self.port}.log"

    def start(self, wait_ready: float | None = 60.0) -> RunningService:
        """Start the process; wait until ``/health/ready`` answers 200 unless told not to."""
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        if wait_ready is not None:
            self.wait_for("/health/ready", 200, wait_ready)
        else:
            self.wait_for("/health/live", 200, 60.0)
        return self

    def status(self, path: str) -> int | None:
        """The HTTP status of ``GET path``, or None when nothing answers."""
        try:
            with urlopen(self.url + path, timeout=2) as response:
                return int(response.status)
        except HTTPError as exc:
            return int(exc.code)
        except (URLError, OSError):
            return None

    def wait_for(self, path: str, status: int, timeout: float) -> None:
        """Poll ``GET path`` until it answers ``status``; fail with the log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"modelserve serve exited early:\n{self.logs()}")
            if self.status(path) == status:
                return
            time.sleep(0.05)
        raise AssertionError(f"GET {path} did not answer {status} in {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        """Everything the service wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self) -> list[dict[str, Any]]:
        """The service's JSON log lines, parsed (lines that are not JSON are skipped)."""
        import json

        lines = []
        for line in self.logs().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"modelserve serve did not exit after {sig}:\n{self.logs()}"
            ) from exc

    def __enter__(self) -> RunningService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
