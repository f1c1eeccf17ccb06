#!/usr/bin/env python3
# ruff: noqa: RUF001  (the report prints typographic multiplication, dash and minus signs)
"""modelserve load benchmark: one command, results as ratios against baselines run alongside.

    python bench/run.py                       # full run: baseline, bare, modelserve, 3 reps
    python bench/run.py --quick               # ~1/3 of every duration
    python bench/run.py --only baseline,bare  # without modelserve

Servers (all serving the same two models from ``bench/models.py``, one worker, pinned to
CPU 1; the load generators run on CPU 0):

* ``baseline``   Flask + Gunicorn ``-w 1`` sync worker (``ref_flask.py``), LyftLearn's stack;
* ``bare``       uvloop + httptools + orjson, one ``asyncio.Protocol`` (``ref_bare.py``): the
                 practical limit for a Python server;
* ``modelserve`` ``modelserve serve --workers 1`` on a service dir built by
                 :func:`modelserve_prepare` / :func:`modelserve_server` (edit those two).

Per server and repetition (servers interleaved, restarted every repetition): time from
``Popen`` to the first correct ``/infer`` answer; per model, closed-loop throughput with
``wrk`` (1 thread, 8 and 64 connections, warm-up then measure) and the server's CPU time per
request; open-loop latency at fixed rates with ``openloop`` (``openloop.c``; latency from each
request's scheduled send time); PSS of the server's process tree after the load. In-process
floors (``predict`` alone; JSON parse + predict + dump) are measured once, pinned to CPU 1.

The driver itself only needs the standard library; servers and helpers run with
``$BENCH_PYTHON`` or ``<repo>/.venv/bin/python``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BUILD = BENCH / ".build"
RESULTS = BENCH / "results"
SERVER_CPU = "1"
LOADGEN_CPU = "0"
ALL_SERVERS = ("baseline", "bare", "modelserve")
MODEL_IDS = ("sklearn", "light")


def venv_python() -> Path:
    explicit = os.environ.get("BENCH_PYTHON")
    if explicit:
        return Path(explicit)
    candidate = ROOT / ".venv" / "bin" / "python"
    return candidate if candidate.exists() else Path(sys.executable)


PYTHON = venv_python()
VENV_BIN = PYTHON.parent


@dataclass
class ServerSpec:
    """How to start one server: argv (run under ``taskset -c 1``), working dir, environment."""

    cmd: list[str]
    cwd: Path
    env: dict[str, str]


@dataclass
class Context:
    args: argparse.Namespace
    artifacts: Path
    floor: dict[str, Any]
    run_dir: Path  # per-invocation scratch: logs, service dirs
    modelserve_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    noisy: list[str] = field(default_factory=list)  # measurements started on a busy machine
    retried: list[str] = field(default_factory=list)  # measurements repeated (disturbed)
    disturbed: list[str] = field(default_factory=list)  # still disturbed after the retries


def base_env(extra_pythonpath: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONPATH"] = str(extra_pythonpath)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


# ---------------------------------------------------------------------------------------------
# Reference servers
# ---------------------------------------------------------------------------------------------


def baseline_server(ctx: Context, port: int) -> ServerSpec:
    env = base_env(BENCH)
    env["BENCH_ARTIFACTS"] = str(ctx.artifacts)
    cmd = [str(VENV_BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}", "ref_flask:app"]
    return ServerSpec(cmd, BENCH, env)


def bare_server(ctx: Context, port: int) -> ServerSpec:
    env = base_env(BENCH)
    env["BENCH_ARTIFACTS"] = str(ctx.artifacts)
    return ServerSpec([str(PYTHON), str(BENCH / "ref_bare.py"), str(port)], BENCH, env)


# ---------------------------------------------------------------------------------------------
# >>> modelserve: EXPECTED CLI INTERFACE — adjust here when the CLI lands. <<<
#
# modelserve_prepare() runs once per invocation (not timed): it builds a service directory
# (modelserve.toml + a copy of bench/models.py), then trains/publishes and promotes both
# models with the CLI. modelserve_server() returns the command that serves it; it is started
# under `taskset -c 1` for every repetition, and must answer GET /health/ready and
# POST /infer {"model_id", "features"} -> {"model_id", "output"} on 127.0.0.1:<port>.
# ---------------------------------------------------------------------------------------------

MODELSERVE_TOML = """\
service = "bench"

[models.sklearn]
class = "models:SklearnLogReg"

[models.light]
class = "models:LightLogReg"

[server]
port = 8123
workers = 1
access_log = {access_log}
"""


def modelserve_cli() -> str:
    """The ``modelserve`` executable: ``$BENCH_MODELSERVE_CLI`` or the venv's entry point."""
    return os.environ.get("BENCH_MODELSERVE_CLI") or str(VENV_BIN / "modelserve")


def modelserve_prepare_commands() -> list[list[str]]:
    """CLI calls that make version 1 of each model the ``production`` alias."""
    cli = modelserve_cli()
    cmds: list[list[str]] = []
    for model_id in MODEL_IDS:
        cmds.append([cli, "train", model_id])  # Model.train into a temp dir, then publish
        cmds.append([cli, "promote", model_id, "1"])  # alias "production"
    return cmds


def modelserve_env(svc: Path) -> dict[str, str]:
    return base_env(svc)  # `models` importable from the service dir


def modelserve_prepare(ctx: Context) -> Path:
    """Build the service dir under the run dir and publish + promote both models."""
    svc = ctx.run_dir / "modelserve-svc"
    if svc.exists():
        shutil.rmtree(svc)
    svc.mkdir(parents=True)
    access_log = "true" if ctx.args.ms_access_log == "on" else "false"
    (svc / "modelserve.toml").write_text(MODELSERVE_TOML.format(access_log=access_log))
    shutil.copy2(BENCH / "models.py", svc / "models.py")
    env = modelserve_env(svc)
    log = ctx.run_dir / "modelserve-prepare.log"
    with log.open("w") as out:
        for cmd in modelserve_prepare_commands():
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            rc = subprocess.run(
                cmd, cwd=svc, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300
            ).returncode
            if rc != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` exited {rc}; see {log}")
    return svc


def modelserve_server(ctx: Context, port: int) -> ServerSpec:
    assert ctx.modelserve_dir is not None
    cmd = [modelserve_cli(), "serve", "--workers", "1", "--port", str(port)]
    return ServerSpec(cmd, ctx.modelserve_dir, modelserve_env(ctx.modelserve_dir))


# <<< end of the modelserve interface >>>

SERVER_BUILDERS = {
    "baseline": baseline_server,
    "bare": bare_server,
    "modelserve": modelserve_server,
}


# ---------------------------------------------------------------------------------------------
# Process helpers (/proc)
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            tree.append(pid)
            todo.extend(children.get(pid, []))
    return tree


def tree_memory(root: int) -> dict[str, Any]:
    pss = rss = 0
    pids = process_tree(root)
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            pass
    return {"pss_mb": pss / 1024, "rss_mb": rss / 1024, "procs": len(pids)}


def tree_cpu_ticks(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError):
            pass
    return total


def tree_affinity(root: int) -> dict[str, Any]:
    """Every thread of every process in the tree, and the CPUs it may run on."""
    seen: dict[str, int] = {}
    for pid in process_tree(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    cpus = line.split(":", 1)[1].strip()
                    seen[cpus] = seen.get(cpus, 0) + 1
    return {"threads_by_cpus": seen, "ok": set(seen) == {SERVER_CPU}}


def cpu_jiffies() -> dict[str, list[int]]:
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            parts = line.split()
            out[parts[0]] = [int(x) for x in parts[1:]]
    return out


def _busy(delta: list[int]) -> int:
    return delta[0] + delta[1] + delta[2] + delta[5] + delta[6]  # user nice system irq softirq


def foreign_load(
    before: dict[str, list[int]],
    after: dict[str, list[int]],
    server_ticks: int,
    ours_cpu0_ticks: int,
    seconds: float,
) -> dict[str, float]:
    """CPU used by other processes during a measurement, as % of one core.

    CPU 1 (the server's): busy time minus the server tree's. CPU 0 (the load generator's):
    busy time minus the load generator's and this driver's.
    """
    hz = os.sysconf("SC_CLK_TCK")
    if seconds <= 0:
        return {}
    out: dict[str, float] = {"server_cpu_pct": 100.0 * server_ticks / hz / seconds}
    for cpu, ours in ((SERVER_CPU, server_ticks), (LOADGEN_CPU, ours_cpu0_ticks)):
        key = f"cpu{cpu}"
        if key not in before or key not in after:
            continue
        delta = [a - b for a, b in zip(after[key], before[key], strict=False)]
        out[f"cpu{cpu}_busy_pct"] = 100.0 * _busy(delta) / hz / seconds
        out[f"cpu{cpu}_foreign_pct"] = max(0.0, 100.0 * (_busy(delta) - ours) / hz / seconds)
        out[f"cpu{cpu}_steal_pct"] = 100.0 * (delta[7] if len(delta) > 7 else 0) / hz / seconds
    return out


def own_cpu0_ticks() -> int:
    """CPU ticks of this driver plus its finished children (the load generators)."""
    hz = os.sysconf("SC_CLK_TCK")
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return round((me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime) * hz)


def accounted(ctx: Context, pid: int, label: str, measure: Any) -> dict[str, Any]:
    """Run ``measure()`` after waiting for quiet; retry while other processes disturbed it.

    A run is disturbed when other processes took more than --noise-threshold % of either
    core; it is repeated up to --retries times and the least disturbed attempt is kept (with
    every attempt's noise recorded).
    """
    a = ctx.args
    hz = os.sysconf("SC_CLK_TCK")
    history: list[float] = []
    best: dict[str, Any] | None = None
    for attempt in range(1 + a.retries):
        quiet = wait_for_quiet(ctx, label)
        ticks0, jif0, ours0, t0 = tree_cpu_ticks(pid), cpu_jiffies(), own_cpu0_ticks(), time.time()
        res: dict[str, Any] = measure()
        server = tree_cpu_ticks(pid) - ticks0
        res.update(
            foreign_load(jif0, cpu_jiffies(), server, own_cpu0_ticks() - ours0, time.time() - t0)
        )
        res["server_cpu_s"] = server / hz
        res["quiet"] = quiet
        noise = max(
            res.get(f"cpu{SERVER_CPU}_foreign_pct", 0), res.get(f"cpu{LOADGEN_CPU}_foreign_pct", 0)
        )
        history.append(round(noise, 1))
        res["noise_pct"] = noise
        res["attempt"] = attempt
        if best is None or noise < best["noise_pct"]:
            best = res
        if noise <= a.noise_threshold:
            break
        if attempt < a.retries:
            ctx.retried.append(label)
    assert best is not None
    best["noise_history"] = history
    res = best
    if res["noise_pct"] > a.noise_threshold:
        ctx.disturbed.append(f"{label} ({res['noise_pct']:.0f} %)")
    return res


def wait_for_quiet(ctx: Context, label: str) -> dict[str, Any]:
    """Wait (at most --quiet-wait s) until neither CPU is busier than --quiet-threshold %.

    Called while our server is idle, so what it sees is other processes on the machine. A
    shared VM may never be quiet: the wait is bounded, and what it saw is recorded.
    """
    a = ctx.args
    t_start = time.time()
    busy: dict[str, float] = {}
    while True:
        j0 = cpu_jiffies()
        time.sleep(0.3)
        j1 = cpu_jiffies()
        busy = {}
        for cpu in j1:
            d = [x - y for x, y in zip(j1[cpu], j0.get(cpu, j1[cpu]), strict=False)]
            total = sum(d[:8]) or 1
            busy[cpu] = 100.0 * (total - d[3] - d[4]) / total  # minus idle and iowait
        waited = time.time() - t_start
        if max(busy.values(), default=0) <= a.quiet_threshold:
            return {"quiet": True, "waited_s": round(waited, 2), "busy_pct": busy}
        if waited >= a.quiet_wait:
            ctx.noisy.append(label)
            return {"quiet": False, "waited_s": round(waited, 2), "busy_pct": busy}
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------
# Build, requests, load generators
# ---------------------------------------------------------------------------------------------


def build_openloop() -> Path:
    BUILD.mkdir(parents=True, exist_ok=True)
    exe = BUILD / "openloop"
    src = BENCH / "openloop.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src), "-lm"], check=True)
    return exe


def request_body(model_id: str, row: list[float]) -> bytes:
    return json.dumps({"model_id": model_id, "features": row}, separators=(",", ":")).encode()


def write_request_files(row: list[float]) -> dict[str, dict[str, Path]]:
    """Per model: a wrk Lua script and a raw HTTP request file for openloop."""
    files: dict[str, dict[str, Path]] = {}
    for model_id in MODEL_IDS:
        body = request_body(model_id, row)
        lua = BUILD / f"wrk-{model_id}.lua"
        lua.write_text(WRK_LUA.replace("@BODY@", body.decode()))
        raw = BUILD / f"req-{model_id}.http"
        raw.write_bytes(
            b"POST /infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        files[model_id] = {"lua": lua, "raw": raw}
    noop = BUILD / "req-noop.http"
    noop.write_bytes(b"GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    files["noop"] = {"raw": noop, "lua": BUILD / "wrk-noop.lua"}
    (BUILD / "wrk-noop.lua").write_text(WRK_DONE)
    return files


WRK_DONE = """\
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"lat_mean_ms":%.4f,"lat_p50_ms":%.4f,"lat_p99_ms":%.4f,"lat_max_ms":%.4f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean / 1000, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""

WRK_LUA = (
    """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[@BODY@]]
"""
    + WRK_DONE
)


def run_wrk(port: int, path: str, lua: Path, conns: int, seconds: int) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        LOADGEN_CPU,
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{seconds}s",
        "-s",
        str(lua),
        f"http://127.0.0.1:{port}{path}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data = json.loads(line[len("BENCHJSON ") :])
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            data["errors"] = sum(
                data[k]
                for k in (
                    "connect_errors",
                    "read_errors",
                    "write_errors",
                    "status_errors",
                    "timeouts",
                )
            )
            return data
    raise RuntimeError(f"wrk failed (rc {proc.returncode}): {proc.stdout}\n{proc.stderr}")


def run_openloop(
    exe: Path,
    port: int,
    raw: Path,
    rate: float,
    seconds: float,
    warmup: float,
    conns: int = 16,
    drain: float = 5.0,
) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        LOADGEN_CPU,
        str(exe),
        "-p",
        str(port),
        "-r",
        str(rate),
        "-d",
        str(seconds),
        "-w",
        str(warmup),
        "-c",
        str(conns),
        "-D",
        str(drain),
        "-f",
        str(raw),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + warmup + drain + 60
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openloop failed (rc {proc.returncode}): {proc.stderr}")
    return json.loads(proc.stdout)


# ---------------------------------------------------------------------------------------------
# One server run
# ---------------------------------------------------------------------------------------------


def http_call(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 2.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def correct(model_id: str, status: int, payload: bytes, expected: Any) -> bool:
    if status != 200:
        return False
    try:
        data = json.loads(payload)
    except ValueError:
        return False
    if not isinstance(data, dict) or data.get("model_id") != model_id:
        return False
    out = data.get("output")
    if isinstance(expected, int) and not isinstance(expected, bool):
        return out == expected
    try:
        return abs(float(out) - float(expected)) <= 1e-9 + 1e-9 * abs(float(expected))
    except (TypeError, ValueError):
        return False


class Server:
    """A server process started under ``taskset -c 1`` in its own session (process group)."""

    def __init__(self, name: str, spec: ServerSpec, port: int, log: Path) -> None:
        self.name, self.spec, self.port, self.log_path = name, spec, port, log
        self.log = log.open("w")
        self.t_start = time.perf_counter()
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *spec.cmd],
            cwd=spec.cwd,
            env=spec.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(
        self, row: list[float], expected: dict[str, Any], timeout: float
    ) -> dict[str, float]:
        """Poll until /health/ready says 200 and /infer answers correctly for every model."""
        deadline = self.t_start + timeout
        t_health: float | None = None
        bodies = {m: request_body(m, row) for m in MODEL_IDS}
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before "
                    f"ready; see {self.log_path}"
                )
            try:
                if t_health is None:
                    status, _ = http_call(self.port, "GET", "/health/ready", timeout=1.0)
                    if status == 200:
                        t_health = time.perf_counter() - self.t_start
                if all(
                    correct(
                        m,
                        *http_call(self.port, "POST", "/infer", bodies[m], timeout=5.0),
                        expected[m],
                    )
                    for m in MODEL_IDS
                ):
                    t_ready = time.perf_counter() - self.t_start
                    return {
                        "ready_s": t_ready,
                        "health_ready_s": t_health if t_health is not None else t_ready,
                    }
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} not ready within {timeout} s; see {self.log_path}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group this Popen created
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
            except ProcessLookupError:
                pass
        self.log.close()
        return self.proc.returncode


def measure_server(
    ctx: Context, name: str, rep: int, files: dict[str, dict[str, Path]], openloop: Path
) -> dict[str, Any]:
    a = ctx.args
    port = free_port()
    spec = SERVER_BUILDERS[name](ctx, port)
    log = ctx.run_dir / f"{name}-rep{rep}.log"
    result: dict[str, Any] = {
        "server": name,
        "rep": rep,
        "port": port,
        "cmd": spec.cmd,
        "log": str(log),
        "models": {},
    }
    load_before = os.getloadavg()
    result["quiet_before_start"] = wait_for_quiet(ctx, f"{name} rep {rep} start")
    server = Server(name, spec, port, log)
    try:
        result.update(server.wait_ready(ctx.floor["row"], ctx.floor["expected"], a.ready_timeout))
        result["affinity"] = tree_affinity(server.proc.pid)
        if not result["affinity"]["ok"]:
            ctx.notes.append(
                f"{name} rep {rep}: threads not all pinned to CPU {SERVER_CPU}: "
                f"{result['affinity']['threads_by_cpus']}"
            )
        pid = server.proc.pid
        for model_id in MODEL_IDS:
            m: dict[str, Any] = {}
            lua, raw = files[model_id]["lua"], files[model_id]["raw"]
            for conns in a.connections:
                run_wrk(port, "/infer", lua, conns, a.wrk_warmup)  # warm-up
                w = accounted(
                    ctx,
                    pid,
                    f"{name} rep {rep} {model_id} wrk c={conns}",
                    lambda lua=lua, conns=conns: run_wrk(
                        port, "/infer", lua, conns, a.wrk_duration
                    ),
                )
                w["cpu_us_per_req"] = (
                    w["server_cpu_s"] * 1e6 / w["requests"] if w["requests"] else None
                )
                m[f"wrk_c{conns}"] = w
            for rate in a.rates:
                m[f"open_r{rate:g}"] = accounted(
                    ctx,
                    pid,
                    f"{name} rep {rep} {model_id} open {rate:g}/s",
                    lambda raw=raw, rate=rate: run_openloop(
                        openloop,
                        port,
                        raw,
                        rate,
                        a.open_duration,
                        a.open_warmup,
                        a.open_connections,
                    ),
                )
            result["models"][model_id] = m
        result["memory"] = tree_memory(server.proc.pid)
        result["alive_after_load"] = server.proc.poll() is None
    except Exception as exc:  # record and carry on with the other servers
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        result["exit_code"] = server.stop()
        result["loadavg_before"] = load_before
        result["loadavg_after"] = os.getloadavg()
    return result


def crosscheck(ctx: Context, files: dict[str, dict[str, Path]], openloop: Path) -> dict:
    """openloop vs wrk on a trivial case: GET /health/ready on the bare server, 1 connection."""
    a = ctx.args
    port = free_port()
    server = Server("bare-noop", bare_server(ctx, port), port, ctx.run_dir / "crosscheck.log")
    out: dict[str, Any] = {}
    try:
        server.wait_ready(ctx.floor["row"], ctx.floor["expected"], a.ready_timeout)
        run_wrk(port, "/health/ready", files["noop"]["lua"], 1, a.wrk_warmup)
        w = run_wrk(port, "/health/ready", files["noop"]["lua"], 1, a.wrk_duration)
        o = run_openloop(
            openloop,
            port,
            files["noop"]["raw"],
            500_000,
            a.wrk_duration,
            a.wrk_warmup,
            conns=1,
            drain=0,
        )
        out = {
            "wrk_c1_rps": w["rps"],
            "openloop_c1_saturated_rps": o["achieved_rps"],
            "ratio": o["achieved_rps"] / w["rps"] if w["rps"] else None,
        }
        for rate in a.rates:
            f = run_openloop(
                openloop,
                port,
                files["noop"]["raw"],
                rate,
                a.open_duration,
                a.open_warmup,
                a.open_connections,
            )
            out[f"noop_open_r{rate:g}"] = {
                k: f[k] for k in ("p50_ms", "p99_ms", "max_ms", "ok", "scheduled")
            }
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()
    return out


# ---------------------------------------------------------------------------------------------
# Aggregation and report
# ---------------------------------------------------------------------------------------------


def stat(values: list[float]) -> dict[str, Any] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def summarise(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in args.only:
        mine = [r for r in runs if r["server"] == name and "error" not in r]
        s: dict[str, Any] = {
            "ok_reps": len(mine),
            "errors": [r["error"] for r in runs if r["server"] == name and "error" in r],
            "ready_s": stat([r["ready_s"] for r in mine]),
            "health_ready_s": stat([r["health_ready_s"] for r in mine]),
            "pss_mb": stat([r["memory"]["pss_mb"] for r in mine]),
            "rss_mb": stat([r["memory"]["rss_mb"] for r in mine]),
            "procs": stat([r["memory"]["procs"] for r in mine]),
            "affinity_ok": all(r["affinity"]["ok"] for r in mine) if mine else None,
            "models": {},
        }
        for model_id in MODEL_IDS:
            ms: dict[str, Any] = {}
            for c in args.connections:
                key = f"wrk_c{c}"
                ms[f"rps_c{c}"] = stat([r["models"][model_id][key]["rps"] for r in mine])
                ms[f"cpu_us_c{c}"] = stat(
                    [r["models"][model_id][key]["cpu_us_per_req"] for r in mine]
                )
                ms[f"errors_c{c}"] = sum(r["models"][model_id][key]["errors"] for r in mine)
                ms[f"noise_pct_c{c}"] = stat(
                    [r["models"][model_id][key]["noise_pct"] for r in mine]
                )
            for rate in args.rates:
                key = f"open_r{rate:g}"
                for p in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"):
                    ms[f"{p}_r{rate:g}"] = stat([r["models"][model_id][key][p] for r in mine])
                ms[f"noise_pct_r{rate:g}"] = stat(
                    [r["models"][model_id][key]["noise_pct"] for r in mine]
                )
                ms[f"bad_r{rate:g}"] = sum(
                    r["models"][model_id][key]["http_errors"]
                    + r["models"][model_id][key]["socket_errors"]
                    + r["models"][model_id][key]["unfinished"]
                    for r in mine
                )
            s["models"][model_id] = ms
        summary[name] = s
    return summary


def med(summary: dict, server: str, model: str | None, key: str) -> float | None:
    s = summary.get(server)
    if not s or not s["ok_reps"]:
        return None
    node = s["models"][model][key] if model else s[key]
    return node["median"] if node else None


def fmt(v: float | None, spec: str = ".0f") -> str:
    return "–" if v is None else format(v, spec)


def cell(node: dict | None, spec: str) -> str:
    if not node:
        return "–"
    return f"{node['median']:{spec}} [{node['min']:{spec}}–{node['max']:{spec}}]"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(summary: dict, floor: dict, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The brief's targets for the candidate (modelserve, one worker)."""
    cand = args.candidate
    rate = args.rates[0]
    out: list[dict[str, Any]] = []

    def add(
        label: str, value: float | None, limit: float, higher_is_better: bool, unit: str
    ) -> None:
        if value is None:
            verdict = "n/a"
        elif higher_is_better:
            verdict = "PASS" if value >= limit else "FAIL"
        else:
            verdict = "PASS" if value <= limit else "FAIL"
        out.append(
            {"target": label, "value": value, "limit": limit, "unit": unit, "verdict": verdict}
        )

    for model_id, min_x in (("light", 4.0), ("sklearn", 3.0)):
        for c in args.connections:
            add(
                f"{model_id} c={c}: req/s ≥ {min_x:g}× baseline",
                ratio(
                    med(summary, cand, model_id, f"rps_c{c}"),
                    med(summary, "baseline", model_id, f"rps_c{c}"),
                ),
                min_x,
                True,
                "×",
            )
    for model_id in MODEL_IDS:
        for c in args.connections:
            r = ratio(
                med(summary, cand, model_id, f"rps_c{c}"),
                med(summary, "bare", model_id, f"rps_c{c}"),
            )
            add(
                f"{model_id} c={c}: req/s within 25 % of bare",
                None if r is None else 100 * r,
                75.0,
                True,
                "% of bare",
            )
    for model_id in MODEL_IDS:
        for p in ("p50", "p99"):
            add(
                f"{model_id}: {p} @{rate:g} req/s ≤ 1.5× bare",
                ratio(
                    med(summary, cand, model_id, f"{p}_ms_r{rate:g}"),
                    med(summary, "bare", model_id, f"{p}_ms_r{rate:g}"),
                ),
                1.5,
                False,
                "×",
            )
    for model_id in MODEL_IDS:
        p50 = med(summary, cand, model_id, f"p50_ms_r{rate:g}")
        overhead = None if p50 is None else p50 - floor["predict_us"][model_id] / 1000
        add(
            f"{model_id}: overhead = p50 @{rate:g} − bare predict ≤ 0.2 ms",
            overhead,
            0.2,
            False,
            "ms",
        )
    # Alternative readings of "serving overhead" (p50 - predict also counts the VM's own
    # open-loop floor, ~0.1-0.3 ms here, which no server can remove; see the README):
    c0 = args.connections[0]
    for model_id in MODEL_IDS:
        p50 = med(summary, cand, model_id, f"p50_ms_r{rate:g}")
        bare_p50 = med(summary, "bare", model_id, f"p50_ms_r{rate:g}")
        add(
            f"(alt) {model_id}: p50 @{rate:g} − bare's p50 ≤ 0.2 ms",
            None if p50 is None or bare_p50 is None else p50 - bare_p50,
            0.2,
            False,
            "ms",
        )
        cpu = med(summary, cand, model_id, f"cpu_us_c{c0}")
        add(
            f"(alt) {model_id}: server CPU per request (c={c0}) − in-process JSON+predict ≤ 0.2 ms",
            None if cpu is None else (cpu - floor["json_predict_us"][model_id]) / 1000,
            0.2,
            False,
            "ms",
        )
    return out


def report(
    summary: dict,
    floor: dict,
    cross: dict,
    tgt: list[dict],
    args: argparse.Namespace,
    meta: dict,
    ctx: Context,
) -> str:
    rate = args.rates[0]
    notes = ctx.notes  # the notes below are added to the JSON too
    L: list[str] = []
    L.append(f"## modelserve load benchmark — {meta['timestamp']}")
    L.append("")
    L.append(
        f"{meta['cpu_model']}, {meta['nproc']} vCPU, kernel {meta['kernel']}; servers on "
        f"CPU {SERVER_CPU}, load generators on CPU {LOADGEN_CPU}; {args.reps} reps, "
        f"servers interleaved and restarted; cells: median [min–max]."
        f"{' QUICK run (1/3 durations).' if args.quick else ''}"
    )
    L.append(
        f"wrk: 1 thread, {args.wrk_warmup} s warm-up + {args.wrk_duration} s; open loop: "
        f"{args.open_warmup:g} s warm-up + {args.open_duration:g} s, "
        f"{args.open_connections} connections max, latency from scheduled send time."
    )
    L.append("")
    L.append("### In-process floor (CPU 1, timeit best of 7)")
    L.append("")
    L.append("| model | predict µs | orjson parse + predict + dump µs |")
    L.append("|---|---|---|")
    for m in MODEL_IDS:
        L.append(f"| {m} | {floor['predict_us'][m]:.1f} | {floor['json_predict_us'][m]:.1f} |")
    L.append("")
    for m in MODEL_IDS:
        L.append(f"### model `{m}` (1 row)")
        L.append("")
        head = ["server"]
        for c in args.connections:
            head += [f"req/s c={c}", "× baseline", "% of bare"]
        head += [
            f"p50 ms @{rate:g}",
            f"p99 ms @{rate:g}",
            "p50 × bare",
            "p99 × bare",
            f"CPU µs/req (c={args.connections[0]})",
            "CPU µs/req − floor",
            "p50 − predict ms",
        ]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for name in args.only:
            s = summary.get(name)
            if not s or not s["ok_reps"]:
                L.append(f"| {name} | " + " | ".join(["–"] * (len(head) - 1)) + " |")
                continue
            ms = s["models"][m]
            row = [name]
            for c in args.connections:
                v = ms[f"rps_c{c}"]["median"]
                row += [
                    cell(ms[f"rps_c{c}"], ".0f"),
                    fmt(ratio(v, med(summary, "baseline", m, f"rps_c{c}")), ".2f") + "×",
                    fmt(
                        None
                        if (r := ratio(v, med(summary, "bare", m, f"rps_c{c}"))) is None
                        else 100 * r,
                        ".0f",
                    )
                    + " %",
                ]
            p50 = ms[f"p50_ms_r{rate:g}"]
            p99 = ms[f"p99_ms_r{rate:g}"]
            row += [
                cell(p50, ".2f"),
                cell(p99, ".2f"),
                fmt(ratio(p50["median"], med(summary, "bare", m, f"p50_ms_r{rate:g}")), ".2f")
                + "×",
                fmt(ratio(p99["median"], med(summary, "bare", m, f"p99_ms_r{rate:g}")), ".2f")
                + "×",
                cell(ms[f"cpu_us_c{args.connections[0]}"], ".0f"),
                fmt(
                    None
                    if (cpu := med(summary, name, m, f"cpu_us_c{args.connections[0]}")) is None
                    else cpu - floor["json_predict_us"][m],
                    ".0f",
                ),
                fmt(p50["median"] - floor["predict_us"][m] / 1000, ".3f"),
            ]
            L.append("| " + " | ".join(row) + " |")
        extra_rates = args.rates[1:]
        if extra_rates:
            L.append("")
            for r in extra_rates:
                parts = []
                for name in args.only:
                    s = summary.get(name)
                    if s and s["ok_reps"]:
                        ms = s["models"][m]
                        parts.append(
                            f"{name} {cell(ms[f'p50_ms_r{r:g}'], '.2f')} / "
                            f"{cell(ms[f'p99_ms_r{r:g}'], '.2f')}"
                        )
                L.append(f"p50 / p99 ms @{r:g} req/s: " + "; ".join(parts))
        L.append("")
    L.append("### Per server")
    L.append("")
    L.append(
        "| server | ready s (Popen → first correct /infer) | PSS MB after load | RSS MB | "
        "procs | all threads on CPU 1 | errors under load | failed reps |"
    )
    L.append("|---|---|---|---|---|---|---|---|")
    for name in args.only:
        s = summary.get(name)
        if not s:
            continue
        errs = 0
        if s["ok_reps"]:
            for m in MODEL_IDS:
                errs += sum(s["models"][m][f"errors_c{c}"] for c in args.connections)
                errs += sum(s["models"][m][f"bad_r{r:g}"] for r in args.rates)
        L.append(
            f"| {name} | {cell(s['ready_s'], '.2f')} | {cell(s['pss_mb'], '.0f')} | "
            f"{cell(s['rss_mb'], '.0f')} | {cell(s['procs'], '.0f')} | "
            f"{s['affinity_ok']} | {errs} | {len(s['errors'])} |"
        )
    L.append("")
    if cross:
        L.append("### Cross-check (bare server, GET /health/ready, 1 connection)")
        L.append("")
        if "error" in cross:
            L.append(f"failed: {cross['error']}")
        else:
            L.append(
                f"wrk {cross['wrk_c1_rps']:.0f} req/s vs openloop (saturated) "
                f"{cross['openloop_c1_saturated_rps']:.0f} req/s: ratio "
                f"{cross['ratio']:.2f}."
            )
            for r in args.rates:
                n = cross.get(f"noop_open_r{r:g}")
                if n:
                    L.append(
                        f"Open-loop floor of this VM (no-op, {r:g} req/s): p50 "
                        f"{n['p50_ms']:.2f} ms, p99 {n['p99_ms']:.2f} ms."
                    )
        L.append("")
    L.append(f"### Targets (candidate: {args.candidate}, 1 worker)")
    L.append("")
    L.append("| target | value | verdict |")
    L.append("|---|---|---|")
    for t in tgt:
        v = t["value"]
        unit = t["unit"]
        vs = (
            "–"
            if v is None
            else (
                f"{v:.0f} {unit}"
                if unit.startswith("%")
                else f"{v:.3f} {unit}"
                if unit == "ms"
                else f"{v:.2f}{unit}"
            )
        )
        L.append(f"| {t['target']} | {vs} | **{t['verdict']}** |")
    L.append("")
    fails = {n: summary[n]["errors"] for n in summary if summary[n]["errors"]}
    for n, errs in fails.items():
        for e in sorted(set(errs)):
            notes.append(f"{n}: {e}")
    noisy = []
    for n, s in summary.items():
        if not s["ok_reps"]:
            continue
        for m in MODEL_IDS:
            keys = [f"noise_pct_c{c}" for c in args.connections]
            keys += [f"noise_pct_r{r:g}" for r in args.rates]
            worst = max(
                (s["models"][m][k]["max"] for k in keys if s["models"][m].get(k)), default=0.0
            )
            if worst > 10:
                noisy.append(f"{n}/{m} up to {worst:.0f} %")
    if noisy:
        notes.append(
            "other processes took CPU time during measurements (worst single measurement, % of "
            "a core, CPU 0 or 1): " + ", ".join(noisy) + "."
        )
    if ctx.retried:
        notes.append(
            f"{len(ctx.retried)} measurement(s) were repeated because other processes took more "
            f"than {args.noise_threshold:g} % of a core during them."
        )
    if ctx.disturbed:
        notes.append(
            f"still disturbed after {args.retries} retries (kept, compare with care): "
            + ", ".join(ctx.disturbed)
        )
    if ctx.noisy:
        notes.append(
            f"{len(ctx.noisy)} measurement(s) started on a busy machine after waiting "
            f"{args.quiet_wait:g} s for quiet (see `quiet` in the JSON)."
        )
    if max(meta["loadavg_start"]) > 0.5:
        notes.append(f"load average at start {meta['loadavg_start']}: the machine was not idle")
    if notes:
        L.append("### Notes")
        L.append("")
        L.extend(f"- {n}" for n in notes)
        L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only",
        default=",".join(ALL_SERVERS),
        help="comma-separated servers to run (default: %(default)s)",
    )
    p.add_argument(
        "--candidate",
        default="modelserve",
        help="server whose targets are checked (default: %(default)s)",
    )
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="~1/3 of every duration")
    p.add_argument("--wrk-warmup", type=int, default=3, help="seconds (integer, wrk)")
    p.add_argument("--wrk-duration", type=int, default=6, help="seconds (integer, wrk)")
    p.add_argument("--connections", default="8,64", help="wrk concurrencies")
    p.add_argument(
        "--rate",
        dest="rates",
        default="300",
        help="open-loop rates in req/s, comma-separated; the first is the target's",
    )
    p.add_argument("--open-warmup", type=float, default=3.0)
    p.add_argument("--open-duration", type=float, default=10.0)
    p.add_argument("--open-connections", type=int, default=16)
    p.add_argument("--ready-timeout", type=float, default=60.0)
    p.add_argument(
        "--ms-access-log",
        choices=("on", "off"),
        default="on",
        help="modelserve's [server] access_log (default: on, as in the brief)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=5.0,
        help="before each measurement, wait up to this many seconds for the other "
        "processes on the machine to go quiet (0: don't wait)",
    )
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=20.0,
        help="'quiet' = every CPU at most this %% busy over 0.3 s",
    )
    p.add_argument(
        "--noise-threshold",
        type=float,
        default=15.0,
        help="a measurement during which other processes took more than this %% of "
        "either core is repeated (see --retries)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="how often a disturbed measurement is repeated (default %(default)s)",
    )
    p.add_argument("--no-crosscheck", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="JSON result path")
    a = p.parse_args(argv)
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = set(a.only) - set(ALL_SERVERS)
    if unknown:
        p.error(f"unknown server(s): {sorted(unknown)}")
    a.connections = [int(c) for c in a.connections.split(",")]
    a.rates = [float(r) for r in a.rates.split(",")]
    if a.quick:
        a.wrk_warmup = max(1, round(a.wrk_warmup / 3))
        a.wrk_duration = max(1, round(a.wrk_duration / 3))
        a.open_warmup = round(a.open_warmup / 3, 2)
        a.open_duration = round(a.open_duration / 3, 2)
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "taskset", "gcc"):
        if shutil.which(tool) is None:
            sys.exit(
                f"missing `{tool}`: apt-get install -y "
                f"{'util-linux' if tool == 'taskset' else tool}"
            )
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        sys.exit("needs at least 2 CPUs (server on CPU 1, load generator on CPU 0)")
    os.sched_setaffinity(0, {int(LOADGEN_CPU)})  # the driver shares CPU 0 with the generator

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = BUILD / "runs" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    openloop = build_openloop()
    artifacts = BUILD / "artifacts"
    if artifacts.exists():
        shutil.rmtree(artifacts)
    env = base_env(BENCH)
    subprocess.run(
        [str(PYTHON), str(BENCH / "inproc.py"), "train", str(artifacts)], env=env, check=True
    )
    wait_for_quiet(ctx_stub := Context(args, artifacts, {}, run_dir), "in-process floor")
    floor = json.loads(
        subprocess.run(
            [
                "taskset",
                "-c",
                SERVER_CPU,
                str(PYTHON),
                str(BENCH / "inproc.py"),
                "floor",
                str(artifacts),
                "7",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    files = write_request_files(floor["row"])
    ctx = Context(args, artifacts, floor, run_dir, noisy=ctx_stub.noisy)

    meta = {
        "timestamp": stamp,
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        ),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": str(PYTHON),
        "versions": floor["versions"],
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        or subprocess.run(["wrk", "-v"], capture_output=True, text=True).stderr.split("\n")[0],
        "loadavg_start": os.getloadavg(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "run_dir": str(run_dir),
    }

    servers = list(args.only)
    if "modelserve" in servers:
        try:
            ctx.modelserve_dir = modelserve_prepare(ctx)
        except Exception as exc:
            ctx.notes.append(f"modelserve skipped: preparation failed: {exc}")
            servers.remove("modelserve")
            args.only = servers

    cross: dict[str, Any] = {}
    if not args.no_crosscheck:
        print("cross-check: openloop vs wrk on the bare server ...", file=sys.stderr)
        cross = crosscheck(ctx, files, openloop)

    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        order = servers[rep % len(servers) :] + servers[: rep % len(servers)]
        for name in order:
            print(f"rep {rep + 1}/{args.reps}: {name} ...", file=sys.stderr, flush=True)
            r = measure_server(ctx, name, rep, files, openloop)
            if "error" in r:
                print(f"  error: {r['error']}", file=sys.stderr)
            runs.append(r)

    summary = summarise(runs, args)
    tgt = targets(summary, floor, args)
    text = report(summary, floor, cross, tgt, args, meta, ctx)
    meta["loadavg_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "meta": meta,
                "floor": floor,
                "crosscheck": cross,
                "summary": summary,
                "targets": tgt,
                "notes": ctx.notes,
                "noisy_starts": ctx.noisy,
                "retried": ctx.retried,
                "disturbed": ctx.disturbed,
                "runs": runs,
                "report_md": text,
            },
            indent=1,
        )
    )
    print(text)
    print(f"\nJSON: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
