"""Tool registry for bench/run.py: how to install each tool and how to run it.

A tool maps scenario names to command builders; a scenario missing from
``commands`` means "not applicable". To add a tool, append a ``Tool`` to
``TOOLS``; to support a new scenario, add its key to the tools' ``commands``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = BENCH / ".venv"
DRIVERS = BENCH / "drivers"
CONNS = 16  # connections / parallel files every tool is allowed

# aria2c options used in every scenario (as issue 3 asks).
ARIA2_COMMON = [
    "--no-conf",
    "--allow-overwrite=true",
    "--auto-file-renaming=false",
    "--file-allocation=none",
    "--console-log-level=warn",
    "--summary-interval=0",
]
CURL_COMMON = ["curl", "-q", "-s", "-S", "--fail"]  # -q first: ignore ~/.curlrc
WGET2_COMMON = ["wget2", "--no-config", "-q", "--no-robots", "--no-hsts"]


class Item(NamedTuple):
    url_path: str  # "/s1/big.bin", appended to the base URL; or a whole URL (S7)
    rel: str  # output path relative to the output folder


@dataclass
class Cmd:
    argv: list[str]
    verify: bool = True  # check the output folder against the expected files
    stdout_null: bool = False  # send stdout to /dev/null instead of the run log
    in_flight: int | None = None  # files it fetches at once (S7's latency bound)
    report: Path | None = None  # our JSON report, read after the run (S8)


@dataclass
class Job:
    """Everything a command builder needs for one tool in one scenario."""

    scenario: str
    base: str  # http://127.0.0.1:PORT (plain or throttled port)
    items: list[Item]
    data: Path  # served root
    out: Path  # output folder (emptied before each run)
    scratch: Path  # per-tool folder for lists and configs (not timed)
    env: Installer
    manifest: Path | None = None  # a ready-made manifest (S4)

    def urls(self) -> list[tuple[str, str]]:
        return [
            (it.url_path if "://" in it.url_path else self.base + it.url_path, it.rel)
            for it in self.items
        ]

    def write(self, name: str, text: str) -> Path:
        path = self.scratch / name
        path.write_text(text)
        return path

    def tab_list(self) -> Path:
        """``URL<TAB>rel`` lines, read by the python drivers."""
        return self.write("list.tsv", "".join(f"{u}\t{r}\n" for u, r in self.urls()))


Builder = Callable[[Job], Cmd]


@dataclass(frozen=True)
class Tool:
    name: str
    install: Callable[[Installer], str | None]  # None = ready, else why not
    commands: Mapping[str, Builder]
    version: Callable[[Installer], list[str]] | None = None
    kind: Literal["ours", "peer", "ref"] = "peer"

    def command(self, job: Job) -> Cmd | None:
        build = self.commands.get(job.scenario)
        return build(job) if build else None


# ---------------------------------------------------------------- installing


def _tail(text: str | bytes, n: int = 300) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " ".join(text.strip().split())[-n:]


@dataclass
class Installer:
    """Installs peers on demand and finds our own tool."""

    ours_cmd: str | None = None  # --ours, split with shlex
    log: Callable[[str], None] = print
    _apt_updated: bool = False
    ours: list[str] = field(default_factory=list)  # argv prefix once found
    ours_get_help: str = ""

    @property
    def python(self) -> str:
        return str(VENV / "bin" / "python")

    def apt(self, binary: str, package: str) -> str | None:
        if shutil.which(binary):
            return None
        if not shutil.which("apt-get"):
            return f"{binary} not found and there is no apt-get"
        if os.geteuid() != 0:
            return f"{binary} not found and not root (apt-get install {package})"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not self._apt_updated:
            self.log("apt-get update (a tool is missing)")
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            self._apt_updated = True
        self.log(f"apt-get install {package}")
        r = subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
            env=env,
            capture_output=True,
        )
        if shutil.which(binary):
            return None
        return f"apt-get install {package} failed: {_tail(r.stderr or r.stdout)}"

    def pip(self, module: str, package: str) -> str | None:
        if not (VENV / "bin" / "python").exists():
            self.log(f"creating {VENV}")
            r = subprocess.run(
                [sys.executable, "-m", "venv", str(VENV)], capture_output=True
            )
            if r.returncode:
                return f"cannot create {VENV}: {_tail(r.stderr)}"
        probe = [self.python, "-c", f"import {module}"]
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return None
        self.log(f"pip install {package} into {VENV}")
        r = subprocess.run(
            [self.python, "-m", "pip", "install", "-q", package], capture_output=True
        )
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return None
        return f"pip install {package} failed: {_tail(r.stderr or r.stdout)}"

    def pip_here(self, module: str, package: str) -> str | None:
        """Install into the environment running this harness (and our tool)."""
        probe = [sys.executable, "-c", f"import {module}"]
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return None
        self.log(f"pip install {package} into {sys.prefix} (our tool needs it)")
        r = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", package],
            capture_output=True,
        )
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return None
        return f"pip install {package} failed: {_tail(r.stderr or r.stdout)}"

    def find_ours(self) -> str | None:
        """Find a runnable `downloader` with a `get` subcommand."""
        if self.ours:
            return None
        candidates: list[list[str]] = []
        if self.ours_cmd:
            candidates.append(shlex.split(self.ours_cmd))
        else:
            sibling = Path(sys.executable).parent / "downloader"
            if sibling.exists():
                candidates.append([str(sibling)])
            if found := shutil.which("downloader"):
                candidates.append([found])
            candidates.append([sys.executable, "-m", "downloader"])
        tried = []
        for argv in candidates:
            tried.append(shlex.join(argv))
            try:
                r = subprocess.run(
                    [*argv, "get", "--help"], capture_output=True, timeout=60
                )
            except OSError:
                continue
            if r.returncode == 0:
                self.ours, self.ours_get_help = argv, r.stdout.decode(errors="replace")
                if argv[0] == sys.executable or argv[0].startswith(sys.prefix):
                    self.compile_ours()
                return None
        return "downloader cannot be run yet (tried: " + "; ".join(tried) + ")"

    def compile_ours(self) -> None:
        """Byte-compile our package, as ``pip install`` does for a user.

        An editable checkout under PYTHONDONTWRITEBYTECODE (this machine sets
        it) would otherwise compile every module afresh in every timed run.
        """
        code = (
            "import compileall, os, downloader; "
            "compileall.compile_dir(os.path.dirname(downloader.__file__), quiet=1)"
        )
        subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)

    def ours_flags(self, *pairs: tuple[str, str, str]) -> list[str]:
        """(flag, long name, value): keep only options `get --help` lists."""
        out: list[str] = []
        for flag, long_name, value in pairs:
            if long_name in self.ours_get_help:
                out += [flag, value]
            else:
                self.log(f"ours: {long_name} not in `get --help`; not passed")
        return out


# ---------------------------------------------------------------- builders


def _single(job: Job) -> tuple[str, Path]:
    (url, rel), *_ = job.urls()
    return url, job.out / rel


def curl_one(job: Job) -> Cmd:
    url, dest = _single(job)
    return Cmd([*CURL_COMMON, "-o", str(dest), url])


def curl_many(job: Job, null: bool = False, conns: int = CONNS) -> Cmd:
    lines = []
    for url, rel in job.urls():
        out = "/dev/null" if null else str(job.out / rel)
        lines.append(f'url = "{url}"\noutput = "{out}"\n')
    cfg = job.write("curl.cfg", "".join(lines))
    return Cmd(
        [*CURL_COMMON, "--parallel", "--parallel-max", str(conns), "-K", str(cfg)],
        verify=not null,
        in_flight=conns,
    )


def curl_null(job: Job) -> Cmd:
    if len(job.items) > 1:
        return curl_many(job, null=True)
    url, _ = _single(job)
    return Cmd([*CURL_COMMON, "-o", "/dev/null", url], verify=False)


def curl_ranges_null(job: Job) -> Cmd:
    """16 ranges of the one file at once, to /dev/null: the throttle's real total.

    One curl process, 16 connections, no disk write and almost no CPU: what
    nginx's pacing lets 16 concurrent connections carry on this machine.
    """
    url, _ = _single(job)
    size = (job.data / job.items[0].url_path.lstrip("/")).stat().st_size
    step = -(-size // CONNS)
    cfg = "".join(
        f'url = "{url}"\nrange = "{start}-{min(start + step, size) - 1}"\n'
        'output = "/dev/null"\n'
        for start in range(0, size, step)
    )
    # --parallel-immediate: open all 16 at once instead of waiting to multiplex
    argv = [*CURL_COMMON, "--parallel", "--parallel-immediate", "--parallel-max"]
    return Cmd([*argv, str(CONNS), "-K", str(job.write("ranges.cfg", cfg))], False)


def cp_ref(job: Job) -> Cmd:
    item = job.items[0]
    return Cmd(
        ["cp", str(job.data / item.url_path.lstrip("/")), str(job.out / item.rel)]
    )


def wget2_one(job: Job, threads: int = 1) -> Cmd:
    url, dest = _single(job)
    extra = []
    if threads > 1:
        # One chunk per connection, as aria2c's segments: smaller ranges would
        # slip past nginx's per-request limit_rate (see README).
        size = (job.data / job.items[0].url_path.lstrip("/")).stat().st_size
        extra = [f"--max-threads={threads}", f"--chunk-size={-(-size // threads)}"]
    return Cmd([*WGET2_COMMON, *extra, "-O", str(dest), url])


def wget2_many(job: Job) -> Cmd:
    # -nd: flat output; the S2 output names are the URLs' basenames.
    lst = job.write("urls.txt", "".join(f"{u}\n" for u, _ in job.urls()))
    argv = [*WGET2_COMMON, f"--max-threads={CONNS}", "-nd", "-P", str(job.out)]
    return Cmd([*argv, "-i", str(lst)])


def aria2_one(job: Job, conns: int) -> Cmd:
    url, dest = _single(job)
    split = [f"-x{conns}", f"-s{conns}"] + (["-k1M"] if conns > 1 else [])
    argv = ["aria2c", *ARIA2_COMMON, *split, "-d", str(dest.parent), "-o", dest.name]
    return Cmd([*argv, url])


def aria2_many(job: Job, conns: int = CONNS) -> Cmd:
    lst = job.write("aria2.txt", "".join(f"{u}\n  out={r}\n" for u, r in job.urls()))
    argv = ["aria2c", *ARIA2_COMMON, "-i", str(lst), f"-j{conns}", "-d", str(job.out)]
    return Cmd(argv, in_flight=conns)


def parfive(job: Job, splits: int) -> Cmd:
    script = str(DRIVERS / "parfive_get.py")
    lst, out = str(job.tab_list()), str(job.out)
    argv = [job.env.python, script, lst, out, "--conn", str(CONNS)]
    return Cmd([*argv, "--splits", str(splits)])


def pypdl(job: Job, segments: int) -> Cmd:
    script = str(DRIVERS / "pypdl_get.py")
    lst, out = str(job.tab_list()), str(job.out)
    argv = [job.env.python, script, lst, out, "--conn", str(CONNS)]
    return Cmd([*argv, "--segments", str(segments)])


def ours_url(job: Job, *flags: tuple[str, str, str]) -> Cmd:
    url, _ = _single(job)  # output name = the URL's last segment
    argv = [*job.env.ours, "get", url, "-d", str(job.out), "-q"]
    return Cmd([*argv, *job.env.ours_flags(*flags)])


def ours_list(job: Job, *more: str) -> Cmd:
    manifest = job.manifest
    if manifest is None:  # a URL list: "URL path" per line
        lines = "".join(f"{u} {r}\n" for u, r in job.urls())
        manifest = job.write("manifest.txt", lines)
    argv = [*job.env.ours, "get", "-i", str(manifest), "-d", str(job.out), "-q"]
    flags = job.env.ours_flags(
        ("-j", "--jobs", str(CONNS)), ("--per-host", "--per-host", str(CONNS))
    )
    return Cmd([*argv, *flags, *more])


def ours_default_jobs(env: Installer) -> int | None:
    """`get`'s default -j, read from its help: the files ours has in flight."""
    # Only -j's own help: up to the next option ("\n  -..."). Builds that
    # grow their files in flight show no plain default: None, read the report.
    own = re.search(r"--jobs N\s(.*?)(?:\n  -|\Z)", env.ours_get_help, re.S)
    found = re.search(r"\(default: (\d+)\)", own.group(1)) if own else None
    return int(found.group(1)) if found else None


def ours_plain(job: Job, *flags: str, report: bool = False) -> Cmd:
    """`get -i MANIFEST -d OUT -q` with only ``flags``: S7 and S8 (no -j 16).

    ``report``: also ``--report`` into the scratch folder, read after the run
    for its ``hosts`` (connections, throttled, requests per host).
    """
    lines = "".join(f"{u} {r}\n" for u, r in job.urls())
    manifest = job.write("manifest.txt", lines)
    argv = [*job.env.ours, "get", "-i", str(manifest), "-d", str(job.out), "-q"]
    path = job.scratch / "report.json" if report else None
    if path:
        argv += ["--report", str(path)]
    jobs = ours_default_jobs(job.env)  # None: it grows; the report says
    if "-j" in flags:
        jobs = int(flags[flags.index("-j") + 1])
    return Cmd([*argv, *flags], in_flight=jobs, report=path)


S7_TUNED = ("--no-adapt", "-j", "256", "--per-host", "8", "--max-connections", "512")
NO_ADAPT16 = ("--no-adapt", "-j", str(CONNS), "--per-host", str(CONNS))
S8 = ("S8c", "S8r", "S8q")


def retrying(cmd: Cmd, *flags: str) -> Cmd:
    """The same command with retry options after its first option (curl's -q)."""
    cmd.argv[2:2] = flags
    return cmd


def ours_plan(job: Job, *more: str) -> Cmd:
    assert job.manifest is not None
    argv = [*job.env.ours, "plan", "-i", str(job.manifest), "-d", str(job.out)]
    return Cmd([*argv, *more], stdout_null=True)


def ours_with_dask(env: Installer) -> str | None:
    """Our tool plus the ``dask`` extra (``distributed``) in its environment."""
    if why := env.find_ours():
        return why
    if "--cluster" not in env.ours_get_help:
        return "this downloader has no --cluster"
    return env.pip_here("distributed", "distributed>=2024.1")


SHARDS = 8  # S6: one manifest planned as eight shards


def _py_version(module: str) -> Callable[[Installer], list[str]]:
    code = f"import importlib.metadata as m; print('{module}', m.version('{module}'))"
    return lambda env: [env.python, "-c", code]


SPLIT16 = (
    ("-s", "--split", str(CONNS)),
    ("--per-host", "--per-host", str(CONNS)),
    ("--min-split-size", "--min-split-size", "1M"),  # as aria2c's -k1M
)

TOOLS: list[Tool] = [
    Tool(
        "ours",
        lambda env: env.find_ours(),
        {
            "S1": lambda j: ours_url(j),
            "S1L": lambda j: ours_url(j),
            "S2": ours_list,
            "S2L": ours_list,
            "S3": lambda j: ours_url(j, *SPLIT16),
            "S3L": lambda j: ours_url(j, *SPLIT16),
            "S4": ours_plan,
            "S4g": ours_list,
            "S5": ours_list,
            "S7": lambda j: ours_plain(j, report=True),  # defaults: nothing tuned
            **{s: lambda j: ours_plain(j, report=True) for s in S8},
        },
        version=lambda env: [*env.ours, "--version"],
        kind="ours",
    ),
    Tool(
        "ours tuned",
        lambda env: env.find_ours(),
        {"S7": lambda j: ours_plain(j, *S7_TUNED)},
        kind="ours",
    ),
    Tool(
        "ours --no-adapt",
        lambda env: env.find_ours(),
        {s: lambda j: ours_plain(j, *NO_ADAPT16, report=True) for s in S8},
        kind="ours",
    ),
    Tool(
        "curl",
        lambda env: env.apt("curl", "curl"),
        {
            "S1": curl_one,
            "S1L": curl_one,
            "S2": curl_many,
            "S2L": curl_many,
            "S3": curl_one,
            "S3L": curl_one,
            "S7": lambda j: curl_many(j, conns=256),
            **{s: curl_many for s in S8},
        },
        version=lambda env: ["curl", "--version"],
    ),
    Tool(
        "wget2",
        lambda env: env.apt("wget2", "wget2"),
        {
            "S1": wget2_one,
            "S1L": wget2_one,
            "S2": wget2_many,
            "S2L": wget2_many,
            "S3": lambda j: wget2_one(j, threads=CONNS),
            "S3L": lambda j: wget2_one(j, threads=CONNS),
        },
        version=lambda env: ["wget2", "--version"],
    ),
    Tool(
        "aria2c",
        lambda env: env.apt("aria2c", "aria2"),
        {
            "S1": lambda j: aria2_one(j, 1),
            "S1L": lambda j: aria2_one(j, 1),
            "S2": aria2_many,
            "S2L": aria2_many,
            "S3": lambda j: aria2_one(j, CONNS),
            "S3L": lambda j: aria2_one(j, CONNS),
            "S7": lambda j: aria2_many(j, 256),
            **{s: aria2_many for s in S8},
        },
        version=lambda env: ["aria2c", "--version"],
    ),
    Tool(  # curl's retries: 429/503 retried, Retry-After or 1 s doubling
        "curl --retry 5",
        lambda env: env.apt("curl", "curl"),
        {s: lambda j: retrying(curl_many(j), "--retry", "5") for s in S8},
    ),
    Tool(  # aria2c retries a 503 only with --retry-wait > 0 (a 429 never)
        "aria2c --retry-wait=1",
        lambda env: env.apt("aria2c", "aria2"),
        {s: lambda j: retrying(aria2_many(j), "--retry-wait=1") for s in S8},
    ),
    Tool(
        "aria2c -j64",
        lambda env: env.apt("aria2c", "aria2"),
        {"S7": lambda j: aria2_many(j, 64)},
    ),
    Tool(
        "parfive",
        lambda env: env.pip("parfive", "parfive"),
        {
            "S1": lambda j: parfive(j, 1),
            "S2": lambda j: parfive(j, 1),
            "S3": lambda j: parfive(j, CONNS),
            "S3L": lambda j: parfive(j, CONNS),
        },
        version=_py_version("parfive"),
    ),
    Tool(
        "pypdl",
        lambda env: env.pip("pypdl", "pypdl"),
        {
            "S1": lambda j: pypdl(j, 1),
            "S2": lambda j: pypdl(j, 1),
            "S3": lambda j: pypdl(j, CONNS),
            "S3L": lambda j: pypdl(j, CONNS),
        },
        version=_py_version("pypdl"),
    ),
    Tool(
        "ours local:2",
        ours_with_dask,
        {"S5": lambda j: ours_list(j, "--cluster", "local:2")},
        kind="ours",
    ),
    *(
        Tool(
            f"ours shard {k}/{SHARDS}",
            lambda env: env.find_ours(),
            {"S6": lambda j, k=k: ours_plan(j, "--shard", f"{k}/{SHARDS}")},
            kind="ours",
        )
        for k in range(SHARDS)
    ),
    # Physical-limit references: measured like tools, never ranked.
    Tool(
        "ref-curl-null",
        lambda env: env.apt("curl", "curl"),
        {"S1": curl_null, "S1L": curl_null, "S2": curl_null, "S2L": curl_null},
        kind="ref",
    ),
    Tool(
        "ref-curl-16-ranges-null",
        lambda env: env.apt("curl", "curl"),
        {"S3": curl_ranges_null, "S3L": curl_ranges_null},
        kind="ref",
    ),
    Tool("ref-cp", lambda env: None, {"S1": cp_ref}, kind="ref"),
    Tool(  # S8c: as many at once as limit_conn allows, never refused: the ideal
        "ref-curl-4",
        lambda env: env.apt("curl", "curl"),
        {"S8c": lambda j: curl_many(j, conns=4)},
        kind="ref",
    ),
]
