"""Benchmark `downloader` against curl, wget2, aria2c, parfive and pypdl.

Serves generated data with a private nginx on 127.0.0.1 and times each tool.
See bench/README.md.  Run: python bench/run.py [--quick] [--scenarios S1,S3]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tools import BENCH, REPO, TOOLS, Cmd, Installer, Item, Job, Tool

MiB = 1 << 20
THROTTLE_MIB = 16  # nginx limit_rate per connection on the throttled port
THROTTLE_CEILING = (
    f"throttle {THROTTLE_MIB} MiB/s x 16 connections",
    THROTTLE_MIB * 16,
)
S7_HOSTS = 64  # 127.0.0.2 ... 127.0.0.65, one nginx listening on each
S7_DELAY = 0.05  # seconds nginx waits (echo_sleep) before every S7 answer
S8_KIB = 64  # S8's files
S8C_CONNS = 4  # limit_conn per client address, answered 429
S8C_RATE_KIB = 2048  # limit_rate per S8c request ...
S8C_CHUNK_KIB = 8  # ... in writes this large (the last one goes undelayed)
S8R_RATE, S8R_BURST = 20, 5  # limit_req rate=20r/s burst=5 nodelay, answered 503
S8Q_LIMIT, S8Q_SECONDS = 20, 1.0  # S8q: QuotaWindow(20 requests a second), 429
ECHO_MODULES = (
    "/usr/lib/nginx/modules/ngx_http_echo_module.so",
    "/usr/share/nginx/modules/ngx_http_echo_module.so",
)

# ---------------------------------------------------------------- scenarios


@dataclass
class Dataset:
    items: list[Item]  # what the tools fetch
    expect: dict[str, tuple[int, str]]  # rel path -> (size, sha256), checked
    amount: float  # MiB, files or entries: the numerator of the throughput
    size: str  # fills {size} in the scenario's title: "1 GiB", "2,000"
    manifest: Path | None = None
    ideal: tuple[str, float] | None = None  # S8: the server's limit, as wall s


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str  # with {size}
    unit: str  # "MiB/s", "files/s" or "entries/s"
    setup: Callable[[Path, str, bool], Dataset]  # (data root, base URL, quick)
    space: tuple[int, int]  # bytes of data + output: (full, quick)
    throttled: bool = False
    ceiling: tuple[str, float] | None = None  # computed physical limit
    rounds: int | None = None  # at most this many rounds (long, one-shot scenarios)
    full_rounds: int | None = None  # the same, only at full sizes
    server: str = ""  # "" = plain or throttled; else the nginx server or "s8q"
    pushback: bool = False  # S8: count refusals, show failed runs too


def write_random(path: Path, size: int, seed: int) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng, digest = random.Random(seed), hashlib.sha256()
    with path.open("wb") as f:
        for start in range(0, size, 16 * MiB):
            chunk = rng.randbytes(min(16 * MiB, size - start))
            digest.update(chunk)
            f.write(chunk)
    return size, digest.hexdigest()


def one_file(name: str, full: int, quick: int) -> Callable[[Path, str, bool], Dataset]:
    def setup(data: Path, base: str, is_quick: bool) -> Dataset:
        size = quick if is_quick else full
        rel = f"{name}.bin"
        expect = {rel: write_random(data / name / rel, size, seed=size)}
        label = f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
        return Dataset([Item(f"/{name}/{rel}", rel)], expect, size / MiB, label)

    return setup


def small_files(
    name: str, full: int, quick: int
) -> Callable[[Path, str, bool], Dataset]:
    """``full`` (``quick``) distinct files of 32 KiB, one URL each."""

    def setup(data: Path, base: str, is_quick: bool) -> Dataset:
        items, expect = [], {}
        for i in range(quick if is_quick else full):
            rel = f"f{i:05d}.bin"
            expect[rel] = write_random(data / name / rel, 32 * 1024, seed=i)
            items.append(Item(f"/{name}/{rel}", rel))
        return Dataset(items, expect, len(items), f"{len(items):,}")

    return setup


setup_s2 = small_files("s2", 2000, 200)


def many_entries(data: Path, base: str, n: int, name: str, check: bool) -> Dataset:
    """A JSONL manifest of n entries over 4 small files, distinct paths."""
    small = [write_random(data / name / f"small{k}.bin", 4096, k) for k in range(4)]
    manifest = data / f"{name}-manifest.jsonl"  # removed with the data
    expect: dict[str, tuple[int, str]] = {}
    with manifest.open("w") as f:
        for i in range(n):
            size, sha = small[i % 4]
            rel = f"e/{i // 1000:04d}/{i:07d}.bin"
            url = f"{base}/{name}/small{i % 4}.bin"
            f.write(json.dumps({"url": url, "path": rel, "size": size, "sha256": sha}))
            f.write("\n")
            if check:
                expect[rel] = (size, sha)
    return Dataset([], expect, n, f"{n:,}", manifest)


def setup_s4(data: Path, base: str, quick: bool) -> Dataset:
    # plan writes nothing, so there is nothing to check but the exit status
    return many_entries(data, base, 10_000 if quick else 1_000_000, "s4", False)


def setup_s4g(data: Path, base: str, quick: bool) -> Dataset:
    return many_entries(data, base, 1_000 if quick else 10_000, "s4g", True)


def setup_s5(data: Path, base: str, quick: bool) -> Dataset:
    return many_entries(data, base, 2_000 if quick else 20_000, "s5", True)


def setup_s6(data: Path, base: str, quick: bool) -> Dataset:
    return many_entries(data, base, 80_000 if quick else 10_000_000, "s6", False)


def setup_s7(data: Path, base: str, quick: bool) -> Dataset:
    """16 KiB files, round-robin over S7_HOSTS addresses: 127.0.0.2, .3, ..."""
    port = base.rsplit(":", 1)[1]
    items, expect = [], {}
    for i in range(2_000 if quick else 20_000):
        rel = f"f{i:05d}.bin"
        expect[rel] = write_random(data / "s7" / rel, 16 * 1024, seed=i)
        host = f"127.0.0.{2 + i % S7_HOSTS}"
        items.append(Item(f"http://{host}:{port}/s7/{rel}", rel))
    return Dataset(items, expect, len(items), f"{len(items):,}")


def s8_files(data: Path, name: str, n: int) -> Dataset:
    items, expect = [], {}
    for i in range(n):
        rel = f"f{i:05d}.bin"
        expect[rel] = write_random(data / name / rel, S8_KIB * 1024, seed=i)
        items.append(Item(f"/{name}/{rel}", rel))
    return Dataset(items, expect, len(items), f"{len(items):,}")


def setup_s8c(data: Path, base: str, quick: bool) -> Dataset:
    ds = s8_files(data, "s8c", 200 if quick else 1_000)
    # nginx sends the first S8C_CHUNK_KIB at once and waits chunk/rate after
    # each later write: (size - chunk) / rate per file, S8C_CONNS at a time
    per_file = (S8_KIB - S8C_CHUNK_KIB) / S8C_RATE_KIB
    label = f"{S8C_CONNS} connections x {S8C_RATE_KIB // 1024} MiB/s"
    ds.ideal = (label, len(ds.items) * per_file / S8C_CONNS)
    return ds


def setup_s8r(data: Path, base: str, quick: bool) -> Dataset:
    ds = s8_files(data, "s8r", 200 if quick else 1_000)
    ds.ideal = (f"{S8R_RATE} requests/s", len(ds.items) / S8R_RATE)
    return ds


def setup_s8q(data: Path, base: str, quick: bool) -> Dataset:
    ds = s8_files(data, "s8q", 200 if quick else 1_000)
    rate = S8Q_LIMIT / S8Q_SECONDS
    ds.ideal = (f"quota {rate:g} requests/s", len(ds.items) / rate)
    return ds


SCENARIOS: list[Scenario] = [
    Scenario(
        "S1",
        "one {size} file, plain port",
        "MiB/s",
        one_file("s1", 1 << 30, 64 * MiB),
        (2 << 30, 128 * MiB),
    ),
    Scenario(
        "S2",
        "{size} files x 32 KiB, plain port, 16 at a time",
        "files/s",
        setup_s2,
        (256 * MiB, 32 * MiB),
    ),
    Scenario(
        "S1L",
        "one {size} file, plain port: steady state apart from start-up",
        "MiB/s",
        one_file("s1l", 4 << 30, 256 * MiB),
        (8 << 30, 512 * MiB),
    ),
    Scenario(
        "S2L",
        "{size} files x 32 KiB, plain port, 16 at a time: steady state",
        "files/s",
        small_files("s2l", 20_000, 2_000),
        (2 << 30, 256 * MiB),
    ),
    Scenario(
        "S3",
        f"one {{size}} file, {THROTTLE_MIB} MiB/s per connection, 16 connections",
        "MiB/s",
        one_file("s3", 256 * MiB, 32 * MiB),
        (512 * MiB, 64 * MiB),
        throttled=True,
        ceiling=THROTTLE_CEILING,
    ),
    Scenario(
        "S3L",
        "S3 with a {size} file: start-up spread over four seconds",
        "MiB/s",
        one_file("s3l", 1 << 30, 64 * MiB),
        (2 << 30, 128 * MiB),
        throttled=True,
        ceiling=THROTTLE_CEILING,
    ),
    Scenario(
        "S4",
        "`downloader plan` of a {size}-entry manifest (memory stays flat)",
        "entries/s",
        setup_s4,
        (400 * MiB, 8 * MiB),
    ),
    Scenario(
        "S4g",
        "`get` of a {size}-entry manifest like S4's (4 KiB files)",
        "files/s",
        setup_s4g,
        (200 * MiB, 20 * MiB),
    ),
    Scenario(
        "S5",
        "`get` of {size} files x 4 KiB: one process against `--cluster local:2`",
        "files/s",
        setup_s5,
        (400 * MiB, 40 * MiB),
    ),
    Scenario(
        "S6",
        "`plan --shard K/8` of a {size}-entry manifest: peak RSS of each shard",
        "entries/s",
        setup_s6,
        (3 << 30, 32 * MiB),
        rounds=1,  # eight shards of ten million entries: one round is minutes
    ),
    Scenario(
        "S7",
        f"{{size}} files x 16 KiB over {S7_HOSTS} hosts (127.0.0.2-"
        f"{1 + S7_HOSTS}), every answer {S7_DELAY * 1000:.0f} ms late",
        "files/s",
        setup_s7,
        (700 * MiB, 70 * MiB),
        full_rounds=1,  # ours' defaults need over two minutes for 20,000
        server="s7",
    ),
    Scenario(
        "S8c",
        f"{{size}} files x {S8_KIB} KiB, nginx limit_conn {S8C_CONNS} (429), "
        f"limit_rate {S8C_RATE_KIB // 1024} MiB/s",
        "files/s",
        setup_s8c,
        (140 * MiB, 30 * MiB),
        full_rounds=1,
        server="s8c",
        pushback=True,
    ),
    Scenario(
        "S8r",
        f"{{size}} files x {S8_KIB} KiB, nginx limit_req {S8R_RATE}r/s "
        f"burst={S8R_BURST} nodelay (503)",
        "files/s",
        setup_s8r,
        (140 * MiB, 30 * MiB),
        full_rounds=1,
        server="s8r",
        pushback=True,
    ),
    Scenario(
        "S8q",
        f"{{size}} files x {S8_KIB} KiB, a RateLimit quota of {S8Q_LIMIT} "
        f"requests per {S8Q_SECONDS:g} s (429; downloader.testing.FileServer)",
        "files/s",
        setup_s8q,
        (140 * MiB, 30 * MiB),
        full_rounds=1,
        server="s8q",
        pushback=True,
    ),
]

# ---------------------------------------------------------------- nginx


def wait_listening(
    proc: subprocess.Popen[bytes], port: int, log: Path, name: str, seconds: int
) -> None:
    """Return once ``proc`` accepts on 127.0.0.1:``port``; exit with its log if not."""
    for _ in range(seconds * 10):
        if proc.poll() is not None:
            text = log.read_text(errors="replace")
            sys.exit(f"{name} exited at start: {text[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{name} did not start listening in {seconds} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    def __init__(self, root: Path, work: Path) -> None:
        self.root, self.work = root, work
        self.proc: subprocess.Popen[bytes] | None = None
        self.plain, self.throttled = free_port(), free_port()
        self.s7, self.s8c, self.s8r = free_port(), free_port(), free_port()
        self.echo = next((m for m in ECHO_MODULES if Path(m).exists()), None)

    # limit_rate is per request and nginx never delays a response's last write,
    # so a request smaller than one write goes unthrottled; small writes keep
    # that free part to 256 KiB per request (see README).
    throttle = f"limit_rate {THROTTLE_MIB}m; sendfile_max_chunk 256k; "

    @property
    def timing_log(self) -> Path:
        """The throttled port's requests: when each ended and how long it took."""
        return self.work / "throttled.log"

    def pushback_servers(self) -> str:
        """S7's slow hosts (with the echo module) and S8's refusing ones."""
        log = f"access_log {self.timing_log} timing;"
        out = [
            "  limit_conn_zone $binary_remote_addr zone=s8c:1m;\n",
            f"  limit_req_zone $binary_remote_addr zone=s8r:1m rate={S8R_RATE}r/s;\n",
            "  limit_conn_log_level info;\n  limit_req_log_level info;\n",
            f"  server {{ listen 127.0.0.1:{self.s8c}; root {self.root}; {log}\n"
            f"    limit_conn s8c {S8C_CONNS}; limit_conn_status 429;\n"
            f"    limit_rate {S8C_RATE_KIB}k; "
            f"sendfile_max_chunk {S8C_CHUNK_KIB}k; }}\n",
            f"  server {{ listen 127.0.0.1:{self.s8r}; root {self.root}; {log}\n"
            f"    limit_req zone=s8r burst={S8R_BURST} nodelay; "
            "limit_req_status 503; }\n",
        ]
        if self.echo:
            # echo_sleep is a timer, not a blocked worker; echo_exec then hands
            # the request to a static location (Content-Length, sendfile)
            listen = "".join(
                f"    listen 127.0.0.{2 + k}:{self.s7};\n" for k in range(S7_HOSTS)
            )
            out.append(
                f"  server {{\n{listen}    root {self.root}; {log}\n"
                f"    location /s7/ {{ echo_sleep {S7_DELAY}; "
                "echo_exec /_s7$uri; }\n"
                f"    location /_s7/ {{ internal; alias {self.root}/; }}\n  }}\n"
            )
        return "".join(out)

    def conf(self) -> str:
        w = self.work
        user = "user root;\n" if os.geteuid() == 0 else ""
        if self.echo:
            user = f"load_module {self.echo};\n{user}"
        temps = "".join(
            f"  {k}_temp_path {w}/{k};\n"
            for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        server = "  server {{ listen 127.0.0.1:{}; root {}; {}}}\n"
        return (
            f"{user}worker_processes 1;\ndaemon off;\npid {w}/nginx.pid;\n"
            f"error_log {w}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
            "  gzip off;\n  keepalive_timeout 300;\n  keepalive_requests 100000;\n"
            "  log_format timing '$msec $request_time $status $bytes_sent';\n"
            "  types { }\n  default_type application/octet-stream;\n"
            f"{temps}"
            + server.format(
                self.plain, self.root, f"access_log {self.timing_log} timing; "
            )
            + server.format(
                self.throttled,
                self.root,
                f"{self.throttle}access_log {self.timing_log} timing; ",
            )
            + self.pushback_servers()
            + "}\n"
        )

    def start(self) -> None:
        conf = self.work / "nginx.conf"
        conf.write_text(self.conf())
        argv = ["nginx", "-p", str(self.work), "-c", str(conf)]
        argv += ["-e", str(self.work / "error.log")]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        wait_listening(self.proc, self.throttled, self.work / "error.log", "nginx", 10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: master reaps workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_pids(self) -> list[int]:
        """The master and its workers, whose CPU time S7 and S8 report."""
        if not self.proc:
            return []
        pid = self.proc.pid
        kids = Path(f"/proc/{pid}/task/{pid}/children")
        with contextlib.suppress(OSError, ValueError):
            return [pid, *map(int, kids.read_text().split())]
        return [pid]


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes so far (their own, not their children)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


class QuotaServer:
    """S8q's origin, bench/quota_server.py in a subprocess (stopped by its PID)."""

    def __init__(self, work: Path) -> None:
        self.work, self.port = work, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.timing_log = work / "quota.log"

    @staticmethod
    def missing() -> str | None:
        probe = [sys.executable, "-c", "import downloader.testing"]
        if subprocess.run(probe, capture_output=True).returncode:
            return f"{sys.executable} cannot import downloader.testing"
        return None

    def start(self, root: Path) -> None:
        self.timing_log.write_bytes(b"")
        argv = [sys.executable, str(BENCH / "quota_server.py"), str(root)]
        argv += ["--port", str(self.port), "--log", str(self.timing_log)]
        argv += ["--limit", str(S8Q_LIMIT), "--seconds", str(S8Q_SECONDS)]
        with (self.work / "quota.err").open("wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=err)
        wait_listening(
            self.proc, self.port, self.work / "quota.err", "quota server", 30
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ---------------------------------------------------------------- running


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mib: float
    error: str | None = None
    transfer: float | None = None  # throttled port: first request in to last out
    first_request: float | None = None  # seconds from process start to nginx's 1st
    started: float = 0.0  # epoch seconds when the process was started
    exit_code: int = 0
    files_right: int | None = None  # S8: outputs with the right size and sha256
    statuses: dict[str, int] = field(default_factory=dict)  # S7, S8: server's log
    hosts: dict[str, object] | None = None  # S8: our report's "hosts"
    attempts: int | None = None  # S8: our report's attempts over all files
    in_flight: int | None = None  # S7: our report's files_in_flight (the most)
    server_cpu: float | None = None  # S7, S8: the server's CPU s during the run


def request_spans(log: Path) -> list[tuple[float, float]]:
    """(received, finished) of each request in nginx's timing log, epoch seconds."""
    spans = []
    for line in log.read_text().splitlines():
        end, took, *_ = line.split()
        spans.append((float(end) - float(took), float(end)))
    return spans


def first_request_after(log: Path, started: float) -> float | None:
    """Seconds from the tool's start to the first request nginx received."""
    spans = request_spans(log)
    if not spans:
        return None
    return max(0.0, min(s for s, _ in spans) - started)


def status_counts(log: Path) -> dict[str, int]:
    """How many requests the server answered with each status, from its log."""
    counts: dict[str, int] = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            counts[parts[2]] = counts.get(parts[2], 0) + 1
    return counts


def read_report(run: Run, path: Path) -> None:
    """Our --report's per-host counts and the attempts over all files."""
    with contextlib.suppress(OSError, ValueError):
        report = json.loads(path.read_text())
        run.hosts = report.get("hosts")
        run.in_flight = report.get("files_in_flight")
        run.attempts = sum(r.get("attempts", 0) for r in report.get("results", []))


def transfer_seconds(log: Path) -> float | None:
    """From the first request nginx received to the last response it finished.

    The wall time less this is the tool's own start-up and finish (imports,
    probe set-up, fsync, exit): the transfer phase alone, from nginx's side.
    """
    spans = request_spans(log)
    if not spans:
        return None
    return max(e for _, e in spans) - min(s for s, _ in spans)


@dataclass
class Row:
    tool: Tool
    cmd: Cmd | None = None
    skip: str | None = None
    runs: list[Run] = field(default_factory=list)


class Child:
    """The running tool, so an interrupted harness can stop it by its PID."""

    pid: int | None = None
    lock = threading.Lock()

    @classmethod
    def kill(cls) -> None:
        with cls.lock:
            if cls.pid is not None:
                os.killpg(cls.pid, signal.SIGKILL)  # its own session/group


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def gnu_time(env: Installer) -> str | None:
    """GNU time, to read the tool's peak RSS without the harness's own.

    A child forked from this Python process is charged the harness's RSS until
    it execs, so wait4's ru_maxrss overstates small tools; GNU time is small.
    """
    if env.apt("time", "time"):
        return None
    path = shutil.which("time")
    r = subprocess.run([path or "time", "--version"], capture_output=True)
    return path if b"GNU" in r.stdout + r.stderr else None


def measure(cmd: Cmd, log: Path, timeout: float, timer_bin: str | None) -> Run:
    rss_file = log.with_suffix(".rss")
    argv = cmd.argv
    if timer_bin:
        argv = [timer_bin, "-f", "%M", "-o", str(rss_file), *argv]
    with log.open("wb") as f:
        out = subprocess.DEVNULL if cmd.stdout_null else f
        t0 = time.perf_counter()
        started = time.time()  # nginx logs epoch seconds
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=f,
            env=child_env(),
            start_new_session=True,
        )
        Child.pid = p.pid
        timer = threading.Timer(timeout, Child.kill)
        timer.start()
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        wall = time.perf_counter() - t0
        with Child.lock:
            timer.cancel()
            Child.pid = None
            _, status, ru = os.wait4(p.pid, 0)  # rusage of the whole reaped tree
        p.returncode = os.waitstatus_to_exitcode(status)
    rss_kib = ru.ru_maxrss
    if timer_bin:
        with contextlib.suppress(OSError, ValueError, IndexError):
            rss_kib = int(rss_file.read_text().split()[-1])
    run = Run(wall, ru.ru_utime + ru.ru_stime, rss_kib / 1024, started=started)
    run.exit_code = p.returncode
    if p.returncode:
        why = "timed out" if wall >= timeout else f"exit {p.returncode}"
        tail = " ".join(log.read_text(errors="replace").split())[-300:]
        run.error = f"{why}: {tail}"
    return run


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(out: Path, expect: dict[str, tuple[int, str]]) -> str | None:
    bad = check(out, expect)
    if bad:
        return f"{len(bad)} of {len(expect)} outputs wrong, e.g. {bad[0]}"
    return None


def check(out: Path, expect: dict[str, tuple[int, str]]) -> list[str]:
    """What is wrong with the outputs: one line per missing or wrong file."""
    bad = []
    for rel, (size, digest) in expect.items():
        p = out / rel
        if not p.is_file():
            bad.append(f"{rel} missing")
        elif p.stat().st_size != size:
            bad.append(f"{rel} has {p.stat().st_size} bytes, want {size}")
        elif sha256(p) != digest:
            bad.append(f"{rel} sha256 mismatch")
    return bad


def clear(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def run_scenario(
    sc: Scenario,
    rows: list[Row],
    ds: Dataset,
    out: Path,
    args: argparse.Namespace,
    timing_log: Path,
    server_pids: tuple[int, ...] = (),
) -> None:
    active = [r for r in rows if r.cmd is not None]
    limit = sc.rounds or (None if args.quick else sc.full_rounds) or args.repeat
    for rnd in range(min(args.repeat, limit)):
        k = rnd % len(active) if active else 0
        for row in active[k:] + active[:k]:  # alternate the order between rounds
            assert row.cmd is not None
            clear(out)
            timing_log.write_bytes(b"")  # nginx appends: this run's requests only
            if row.cmd.report:
                row.cmd.report.unlink(missing_ok=True)
            if sc.pushback:  # let the last run's limit state (quota window,
                time.sleep(1.5)  # limit_req bucket) drain, not count against this
            cpu0 = cpu_seconds(list(server_pids))
            run = measure(row.cmd, out.parent / "run.log", args.timeout, args.time)
            if server_pids:
                time.sleep(0.2)  # the server's last log lines and CPU ticks
                run.server_cpu = cpu_seconds(list(server_pids)) - cpu0
                run.statuses = status_counts(timing_log)
            if sc.pushback:  # a refused file is a result here, not a failure
                bad = check(out, ds.expect)
                run.files_right = len(ds.expect) - len(bad)
                if bad and run.error is None:
                    run.error = f"{len(bad)} of {len(ds.expect)} wrong: {bad[0]}"
            elif run.error is None and row.cmd.verify:
                run.error = verify(out, ds.expect)
            if row.cmd.report:
                read_report(run, row.cmd.report)
            if run.error is None:
                run.first_request = first_request_after(timing_log, run.started)
            if sc.throttled:
                run.transfer = transfer_seconds(timing_log)
            row.runs.append(run)
            state = run.error or f"{run.wall:.2f} s"
            if sc.pushback:
                state = f"{run.wall:.2f} s, exit {run.exit_code}, "
                state += f"{run.files_right}/{len(ds.expect)} right, {run.statuses}"
            print(f"  {sc.name} round {rnd + 1} {row.tool.name}: {state}", flush=True)
    clear(out)


# ---------------------------------------------------------------- report


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def table(
    sc: Scenario, rows: list[Row], ds: Dataset, placeholders: dict[str, str]
) -> str:
    if sc.server == "s7":
        return latency_table(sc, rows, ds, placeholders)
    if sc.pushback:
        return pushback_table(sc, rows, ds, placeholders)
    head = (
        f"| tool | median wall s | {sc.unit} | CPU s | peak RSS MiB | ours ÷ tool "
        "| 1st request s |"
    )
    rule = "|---" * 7 + "|"
    if sc.throttled:  # nginx's timing log splits the wall time in two
        head += f" {sc.unit} from 1st request | ours ÷ tool | wall - transfer s |"
        rule = "|---" * 10 + "|"
    title = sc.title.format(size=ds.size)
    lines = [f"### {sc.name}: {title}", "", head, rule]
    rate: dict[str, float] = {}
    phase: dict[str, float] = {}  # throughput from the first request to the last
    for row in rows:
        ok = [r for r in row.runs if r.error is None]
        if ok:
            rate[row.tool.name] = ds.amount / statistics.median(r.wall for r in ok)
        timed = [r.transfer for r in ok if r.transfer]
        if timed:
            phase[row.tool.name] = ds.amount / statistics.median(timed)
    ours, ours_phase = rate.get("ours"), phase.get("ours")
    notes = []
    for row in rows:
        name = row.tool.name
        ok = [r for r in row.runs if r.error is None]
        if row.skip or not ok:
            if row.skip:
                notes.append(f"- {name} skipped: {row.skip}")
            elif row.runs:
                notes.append(f"- {name} failed: {row.runs[0].error}")
            continue
        n = (
            f"{name} ({len(ok)}/{len(row.runs)} ok)"
            if len(ok) < len(row.runs)
            else name
        )
        wall = statistics.median(r.wall for r in ok)
        cpu = statistics.median(r.cpu for r in ok)
        rss = max(r.rss_mib for r in ok)
        ratio = f"{ours / rate[name]:.2f}" if ours and name != "ours" else ""
        firsts = [r.first_request for r in ok if r.first_request is not None]
        first = f"{statistics.median(firsts):.3f}" if firsts else ""
        cells = [n, f"{wall:.2f}", fmt(rate[name]), f"{cpu:.2f}", f"{rss:.0f}", ratio]
        cells.append(first)
        if sc.throttled:
            p = phase.get(name)
            cells += [
                fmt(p) if p else "",
                f"{ours_phase / p:.2f}" if p and ours_phase and name != "ours" else "",
                f"{wall - ds.amount / p:.2f}" if p else "",
            ]
        lines.append("| " + " | ".join(cells) + " |")
        if len(ok) < len(row.runs):
            bad = next(r for r in row.runs if r.error)
            notes.append(f"- {name}: a run failed: {bad.error}")
    if sc.ceiling:
        label, value = sc.ceiling
        cells = [f"ref: {label}", "", fmt(value), "", "", "", ""]
        cells[5] = f"{ours / value:.2f}" if ours else ""
        if sc.throttled:
            cells += ["", f"{ours_phase / value:.2f}" if ours_phase else "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return finish(lines, notes, rows, placeholders)


def finish(
    lines: list[str], notes: list[str], rows: list[Row], placeholders: dict[str, str]
) -> str:
    cmds = [
        f"- {r.tool.name}: `{show(r.cmd.argv, placeholders)}`" for r in rows if r.cmd
    ]
    lines += ["", *notes]
    lines += ["", "<details><summary>commands</summary>", "", *cmds, "", "</details>"]
    return "\n".join(lines) + "\n"


def latency_table(
    sc: Scenario, rows: list[Row], ds: Dataset, placeholders: dict[str, str]
) -> str:
    """S7: files/s against the latency bound, files in flight / S7_DELAY."""
    ref = "ours tuned" if any(r.tool.name == "ours tuned" for r in rows) else "ours"
    head = (
        "| tool | median wall s | files/s | files in flight | latency bound files/s "
        "| of the bound | CPU s | CPU ms/file | peak RSS MiB | nginx CPU s "
        f"| {ref} ÷ tool |"
    )
    lines = [f"### {sc.name}: {sc.title.format(size=ds.size)}", "", head]
    lines.append("|---" * 11 + "|")
    notes: list[str] = []
    rate = {
        r.tool.name: ds.amount / statistics.median(x.wall for x in ok)
        for r in rows
        if (ok := [x for x in r.runs if x.error is None])
    }
    for row in rows:
        name, ok = row.tool.name, [r for r in row.runs if r.error is None]
        if row.skip or not ok:
            if row.skip:
                notes.append(f"- {name} skipped: {row.skip}")
            elif row.runs:
                notes.append(f"- {name} failed: {row.runs[0].error}")
            continue
        if len(ok) < len(row.runs):
            bad = next(r for r in row.runs if r.error)
            notes.append(f"- {name}: a run failed: {bad.error}")
            name = f"{name} ({len(ok)}/{len(row.runs)} ok)"
        wall = statistics.median(r.wall for r in ok)
        cpu = statistics.median(r.cpu for r in ok)
        flight = row.cmd.in_flight if row.cmd else None
        if flight is None:  # ours grows it: the most its report saw
            grown = [r.in_flight for r in ok if r.in_flight]
            flight = max(grown) if grown else None
        bound = flight / S7_DELAY if flight else None
        srv = [r.server_cpu for r in ok if r.server_cpu is not None]
        ratio = rate.get(ref, 0) / rate[row.tool.name] if row.tool.name != ref else 0
        cells = [
            name,
            f"{wall:.2f}",
            fmt(rate[row.tool.name]),
            str(flight or "?"),
            fmt(bound) if bound else "",
            f"{rate[row.tool.name] / bound:.0%}" if bound else "",
            f"{cpu:.2f}",
            f"{cpu * 1000 / ds.amount:.2f}",
            f"{max(r.rss_mib for r in ok):.0f}",
            f"{statistics.median(srv):.2f}" if srv else "",
            f"{ratio:.2f}" if ratio else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return finish(lines, notes, rows, placeholders)


def pushback_table(
    sc: Scenario, rows: list[Row], ds: Dataset, placeholders: dict[str, str]
) -> str:
    """S8: one line per run, failed runs included: wall against the ideal,
    the refusals the server logged, the files right, our report's hosts."""
    label, ideal = ds.ideal or ("", 0.0)
    head = (
        "| tool | round | wall s | wall ÷ ideal | exit | files right | requests "
        "| refused 429/503 | other statuses | CPU s | server CPU s "
        "| our report: hosts |"
    )
    lines = [f"### {sc.name}: {sc.title.format(size=ds.size)}", "", head]
    lines.append("|---" * 12 + "|")
    lines.append(
        f"| ideal: {label} | | {ideal:.2f} | 1.00 | | {len(ds.expect):,} "
        f"| {len(ds.expect):,} | 0 | | | | |"
    )
    notes: list[str] = []
    for row in rows:
        if row.skip:
            notes.append(f"- {row.tool.name} skipped: {row.skip}")
        for k, run in enumerate(row.runs, 1):
            st = run.statuses
            refused = st.get("429", 0) + st.get("503", 0)
            other = ", ".join(
                f"{code}: {n}"
                for code, n in sorted(st.items())
                if code not in ("200", "429", "503")
            )
            hosts = "; ".join(
                ", ".join(f"{key} {val}" for key, val in counts.items())
                if isinstance(counts, dict)
                else str(counts)
                for counts in (run.hosts or {}).values()
            )
            if run.attempts is not None:
                hosts += f"; attempts {run.attempts:,}"
            cells = [
                row.tool.name,
                str(k),
                f"{run.wall:.2f}",
                f"{run.wall / ideal:.2f}" if ideal else "",
                str(run.exit_code),
                f"{run.files_right or 0:,}/{len(ds.expect):,}",
                f"{sum(st.values()):,}",
                f"{refused:,}",
                other,
                f"{run.cpu:.2f}",
                f"{run.server_cpu:.2f}" if run.server_cpu is not None else "",
                hosts,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return finish(lines, notes, rows, placeholders)


def show(argv: list[str], placeholders: dict[str, str]) -> str:
    text = " ".join(argv)
    for real, short in placeholders.items():
        text = text.replace(real, short)
    return text


def machine(location: str) -> str:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"- machine: {os.cpu_count()} CPUs, {model}; Linux {platform.release()}; "
        f"Python {platform.python_version()}; load average at start {load}\n"
        f"- data and output on {location}; nginx 1 worker on 127.0.0.1, sendfile on\n"
    )


def versions(tools: list[Tool], env: Installer) -> str:
    out = []
    for tool in tools:
        if tool.version:
            try:
                r = subprocess.run(tool.version(env), capture_output=True, timeout=30)
                first = (r.stdout or r.stderr).decode(errors="replace").splitlines()
                line = first[0] if first and not r.returncode else "?"
                out.append(line.split(" (")[0].split(" - ")[0].strip())
            except (OSError, subprocess.TimeoutExpired):
                out.append("?")
            out[-1] = f"{tool.name} {out[-1]}" if tool.kind == "ours" else out[-1]
    return "- versions: " + "; ".join(out) + "\n"


def update_readme(body: str) -> None:
    """Replace the README's results with ``body``, keeping sections not re-run.

    A scenario left out of this run (S6 takes half an hour) keeps its table
    from the earlier run, marked with that run's date.
    """
    readme = REPO / "README.md"
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if not readme.exists():
        return
    text = readme.read_text()
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    old, tail = rest.split(end, 1)
    _, fresh = sections(body)
    _, earlier = sections(old)
    note = KEPT.format(when=old_date(old))
    kept = [
        section
        if KEPT[:12] in section
        else section.replace("\n\n", f"\n\n{note}\n\n", 1)
        for name, section in earlier.items()
        if name not in fresh
    ]
    body = body.rstrip("\n") + "\n\n" + "".join(kept) if kept else body
    readme.write_text(f"{head}{start}\n{body}\n{end}{tail}")
    print(f"updated {readme}")


KEPT = "_(kept from the run of {when}: this run did not include it)_"


def sections(text: str) -> tuple[str, dict[str, str]]:
    """Split results markdown into its preamble and ``{"S1": section text}``."""
    parts = text.split("\n### ")
    found = {}
    for part in parts[1:]:
        name = part.split(":", 1)[0]
        found[name] = "### " + part.rstrip("\n") + "\n\n"
    return parts[0], found


def old_date(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("- measured "):
            return line.removeprefix("- measured ").strip()
    return "an earlier date"


# ---------------------------------------------------------------- main


def scenario_missing(sc: Scenario, nginx: Nginx) -> str | None:
    """Why a scenario cannot run here (its server is missing), or None."""
    if sc.server == "s7" and not nginx.echo:
        return (
            "no nginx echo module (apt-get install libnginx-mod-http-echo): "
            f"looked for {', '.join(ECHO_MODULES)}"
        )
    if sc.server == "s8q":
        return QuotaServer.missing()
    return None


def workdir(need: int) -> tuple[Path, str]:
    shm = Path("/dev/shm")
    avail = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            avail = int(line.split()[1]) * 1024
    if shm.is_dir() and min(shutil.disk_usage(shm).free, avail - 2**30) > need * 1.2:
        return Path(tempfile.mkdtemp(prefix="dl-bench-", dir=shm)), "tmpfs (/dev/shm)"
    (BENCH / "work").mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="dl-bench-", dir=BENCH / "work"))
    print(f"NOTE: not enough room on /dev/shm; using disk at {root}: slower")
    return root, f"disk ({root}; /dev/shm lacked room, so the disk is measured too)"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    names = [s.name for s in SCENARIOS]
    ap.add_argument("--scenarios", default=",".join(names), help="e.g. S1,S2")
    ap.add_argument("--tools", default="", help="comma list; default all")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes, smoke test")
    ap.add_argument("--out", type=Path, default=BENCH / "results.md")
    ap.add_argument("--readme", action="store_true", help="update README section")
    ap.add_argument("--ours", help="command to run our tool (default: found)")
    ap.add_argument("--timeout", type=float, help="seconds per run (600; quick 120)")
    ap.add_argument("--keep", action="store_true", help="keep the temp data dir")
    args = ap.parse_args()
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(names)
    tool_names = [t.name for t in TOOLS]
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()] or tool_names
    unknown |= set(args.tools) - set(tool_names)
    if unknown:
        ap.error(f"unknown {', '.join(sorted(unknown))}; have {names} and {tool_names}")
    args.timeout = args.timeout or (120 if args.quick else 600)
    return args


def main() -> int:
    args = parse_args()
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios]
    tools = [t for t in TOOLS if t.name in args.tools]
    env = Installer(ours_cmd=args.ours)
    if reason := env.apt("nginx", "nginx"):
        sys.exit(f"cannot benchmark without nginx: {reason}")
    skip = {t.name: t.install(env) for t in tools}
    for name, why in skip.items():
        if why:
            print(f"SKIP {name}: {why}")
    args.time = gnu_time(env)
    if not args.time:
        print("NOTE: no GNU time; peak RSS includes the harness's RSS at fork")
    root, location = workdir(sum(s.space[args.quick] for s in scenarios))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    nginx = Nginx(root / "data", root / "nginx")
    quota = QuotaServer(root / "nginx")
    try:
        for d in ("data", "nginx", "out", "scratch"):
            (root / d).mkdir()
        root.chmod(0o755)
        (root / "data").chmod(0o755)
        nginx.start()
        plain = f"http://127.0.0.1:{nginx.plain}"
        slow = f"http://127.0.0.1:{nginx.throttled}"
        print(f"nginx pid {nginx.proc.pid if nginx.proc else '?'}: {plain} and {slow}")
        places = {
            str(root / "out"): "$OUT",
            str(root / "scratch"): "$TMP",
            str(root / "data"): "$DATA",
            plain: "$PLAIN",
            slow: "$SLOW",
            env.python: "$BENCH_PY",
            str(BENCH): "bench",
            str(root): "$WORK",
        }
        if env.ours:
            places[" ".join(env.ours)] = "downloader"
        mode = "--quick sizes" if args.quick else "full sizes"
        report = [
            f"# downloader benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n",
            machine(location),
            versions([t for t in tools if not skip[t.name]], env),
            f"- {mode}, median of {args.repeat} run(s), tools alternating each round; "
            "each output checked by size and sha256\n",
            "- CPU s = user+sys of the tool's process tree (wait4); peak RSS = "
            + ("GNU time %M" if args.time else "wait4 ru_maxrss (inflated)")
            + "; ours ÷ tool = our throughput over theirs, same run\n\n",
        ]
        for sc in scenarios:
            if why := scenario_missing(sc, nginx):
                print(f"SKIP {sc.name}: {why}")
                report.append(f"### {sc.name}: skipped\n\n- {why}\n\n")
                continue
            print(f"{sc.name}: generating data", flush=True)
            base, log, pids = slow if sc.throttled else plain, nginx.timing_log, ()
            if sc.server:
                port = getattr(nginx, sc.server, None) or quota.port
                base, pids = f"http://127.0.0.1:{port}", tuple(nginx.cpu_pids())
            ds = sc.setup(root / "data", base, args.quick)
            if sc.server == "s8q":
                quota.start(root / "data")
                assert quota.proc
                log, pids = quota.timing_log, (quota.proc.pid,)
            out, rows = root / "out" / "files", []
            for tool in tools:
                row = Row(tool, skip=skip[tool.name])
                if not row.skip:
                    scratch = root / "scratch" / sc.name / tool.name.replace(" ", "_")
                    scratch.mkdir(parents=True)
                    job = Job(sc.name, base, ds.items, root / "data", out, scratch, env)
                    job.manifest = ds.manifest
                    row.cmd = tool.command(job)
                    if row.cmd is None:
                        continue  # not applicable
                rows.append(row)
            print(f"{sc.name}: {sc.title.format(size=ds.size)}", flush=True)
            run_scenario(sc, rows, ds, out, args, log, pids)
            quota.stop()
            text = table(sc, rows, ds, {k: v for k, v in places.items() if k})
            print("\n" + text, flush=True)
            report.append(text + "\n")
            shutil.rmtree(root / "data", ignore_errors=True)  # free tmpfs
            (root / "data").mkdir()
        body = "".join(report)
        args.out.write_text(body)
        print(f"wrote {args.out}")
        if args.readme:
            when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
            rest = body.split("\n", 1)[1].strip()
            update_readme(f"- measured {when}\n{rest}\n")
        return 0
    finally:
        Child.kill()
        quota.stop()
        nginx.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
