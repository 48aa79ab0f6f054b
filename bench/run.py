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

# ---------------------------------------------------------------- scenarios


@dataclass
class Dataset:
    items: list[Item]  # what the tools fetch
    expect: dict[str, tuple[int, str]]  # rel path -> (size, sha256), checked
    amount: float  # MiB, files or entries: the numerator of the throughput
    size: str  # fills {size} in the scenario's title: "1 GiB", "2,000"
    manifest: Path | None = None


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
]

# ---------------------------------------------------------------- nginx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    def __init__(self, root: Path, work: Path) -> None:
        self.root, self.work = root, work
        self.proc: subprocess.Popen[bytes] | None = None
        self.plain, self.throttled = free_port(), free_port()

    # limit_rate is per request and nginx never delays a response's last write,
    # so a request smaller than one write goes unthrottled; small writes keep
    # that free part to 256 KiB per request (see README).
    throttle = f"limit_rate {THROTTLE_MIB}m; sendfile_max_chunk 256k; "

    @property
    def timing_log(self) -> Path:
        """The throttled port's requests: when each ended and how long it took."""
        return self.work / "throttled.log"

    def conf(self) -> str:
        w = self.work
        user = "user root;\n" if os.geteuid() == 0 else ""
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
            + "}\n"
        )

    def start(self) -> None:
        conf = self.work / "nginx.conf"
        conf.write_text(self.conf())
        argv = ["nginx", "-p", str(self.work), "-c", str(conf)]
        argv += ["-e", str(self.work / "error.log")]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        for _ in range(100):
            if self.proc.poll() is not None:
                log = (self.work / "error.log").read_text(errors="replace")
                sys.exit(f"nginx exited at start: {log[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.throttled), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        sys.exit("nginx did not start listening in 10 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: master reaps workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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
    if p.returncode:
        why = "timed out" if wall >= timeout else f"exit {p.returncode}"
        tail = " ".join(log.read_text(errors="replace").split())[-300:]
        run.error = f"{why}: {tail}"
    return run


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(out: Path, expect: dict[str, tuple[int, str]]) -> str | None:
    bad = []
    for rel, (size, digest) in expect.items():
        p = out / rel
        if not p.is_file():
            bad.append(f"{rel} missing")
        elif p.stat().st_size != size:
            bad.append(f"{rel} has {p.stat().st_size} bytes, want {size}")
        elif sha256(p) != digest:
            bad.append(f"{rel} sha256 mismatch")
    if bad:
        return f"{len(bad)} of {len(expect)} outputs wrong, e.g. {bad[0]}"
    return None


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
) -> None:
    active = [r for r in rows if r.cmd is not None]
    for rnd in range(min(args.repeat, sc.rounds or args.repeat)):
        k = rnd % len(active) if active else 0
        for row in active[k:] + active[:k]:  # alternate the order between rounds
            assert row.cmd is not None
            clear(out)
            timing_log.write_bytes(b"")  # nginx appends: this run's requests only
            run = measure(row.cmd, out.parent / "run.log", args.timeout, args.time)
            if run.error is None and row.cmd.verify:
                run.error = verify(out, ds.expect)
            if run.error is None:
                run.first_request = first_request_after(timing_log, run.started)
            if sc.throttled:
                run.transfer = transfer_seconds(timing_log)
            row.runs.append(run)
            state = run.error or f"{run.wall:.2f} s"
            print(f"  {sc.name} round {rnd + 1} {row.tool.name}: {state}", flush=True)
    clear(out)


# ---------------------------------------------------------------- report


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def table(
    sc: Scenario, rows: list[Row], ds: Dataset, placeholders: dict[str, str]
) -> str:
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
    cmds = [
        f"- {r.tool.name}: `{show(r.cmd.argv, placeholders)}`" for r in rows if r.cmd
    ]
    lines += ["", *notes]
    lines += ["", "<details><summary>commands</summary>", "", *cmds, "", "</details>"]
    return "\n".join(lines) + "\n"


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
            print(f"{sc.name}: generating data", flush=True)
            base = slow if sc.throttled else plain
            ds = sc.setup(root / "data", base, args.quick)
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
            run_scenario(sc, rows, ds, out, args, nginx.timing_log)
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
        nginx.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
