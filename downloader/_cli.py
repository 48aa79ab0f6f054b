"""The command line: parse_args(argv) and run(args) -> exit code; no transfer logic."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._exceptions import ManifestError
from ._manifest import FORMATS, coerce_entries, spool_stdin
from ._models import Result, Summary
from ._offline import Verdict, inspect_all
from ._progress import LogProgress, ProgressSink, TqdmProgress, describe, format_bytes
from ._settings import Settings
from ._shard import Shard
from ._sources import Sources, looks_like_url
from ._version import __version__

if TYPE_CHECKING:
    from ._engine import Downloader

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
MAX_FAILURES_LISTED = 20

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

EXAMPLES = """\
examples:
  downloader demo                                  try it offline, in 10 seconds
  downloader get https://example.org/a.iso         one URL into the current folder
  downloader get -i files.jsonl -d data/ -j 16     a manifest, 16 files at a time
  cat urls.txt | downloader get -i - --format urls -d data/
  downloader plan -i files.jsonl -d data/          what get would do (no network)
  downloader verify -i files.jsonl -d data/        check files on disk (no network)

Interrupted runs resume: rerun the same command. Exit status: 0 all files
complete, 1 some failed, 2 bad usage or manifest, 130 Ctrl-C, 143 SIGTERM.
"""


def parse_size(text: str) -> int:
    """``32M`` -> 33554432 (binary units: K, M, G, T; optional ``B``/``iB``)."""
    match = _SIZE.match(text)
    if not match:
        msg = f"not a size: {text!r} (examples: 512K, 32M, 1.5G)"
        raise argparse.ArgumentTypeError(msg)
    return int(float(match[1]) * _UNITS[match[2].lower()])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"want a whole number >= 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        msg = f"want a whole number >= 0, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        msg = f"want a number of seconds > 0, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cluster(text: str) -> str:
    if text.startswith("local:"):
        rest = text.removeprefix("local:")
        if rest.isdigit() and int(rest) >= 1:
            return text
    elif "://" in text:
        return text
    msg = (
        f"want local:N (N worker processes here) or a scheduler address "
        f"like tcp://HOST:8786, got {text!r}"
    )
    raise argparse.ArgumentTypeError(msg)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in text for c in "\r\n"):
        msg = f"want 'Name: value', got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return name.strip(), value.strip()


def _size_text(value: int) -> str:
    """32 MiB -> ``32M``: a default shown as a user would type it."""
    for unit in "TGMK":
        scale = _UNITS[unit.lower()]
        if value >= scale and value % scale == 0:
            return f"{value // scale}{unit}"
    return str(value)


# (flags, setting, parser, metavar): the options whose defaults and help come
# from Settings, so the library and the command line never disagree.
_NETWORK_OPTIONS: tuple[tuple[tuple[str, ...], str, Any, str], ...] = (
    (("--per-host",), "per_host", _positive_int, "N"),
    (("--max-connections",), "max_connections", _positive_int, "N"),
    (("-s", "--split"), "split", _positive_int, "N"),
    (("--min-split-size",), "min_split_size", parse_size, "SIZE"),
    (("--retries",), "retries", _non_negative_int, "N"),
    (("--timeout",), "timeout", _seconds, "S"),
    (("--connect-timeout",), "connect_timeout", _seconds, "S"),
    (("--limit-rate",), "limit_rate", parse_size, "RATE"),
)


def _add_setting(
    group: Any, flags: tuple[str, ...], name: str, kind: Any, metavar: str
) -> None:
    """One option for setting ``name``: its default and help from ``Settings``."""
    default = Settings.default(name)
    if default is None:
        shown = "e.g. 10M = 10 MiB/s; default: none"
    elif kind is parse_size:
        shown = f"default: {_size_text(default)}"
    else:
        shown = (
            f"default: {default:g}"
            if isinstance(default, float)
            else f"default: {default}"
        )
    group.add_argument(
        *flags,
        type=kind,
        default=default,
        metavar=metavar,
        help=f"{Settings.doc(name)} ({shown})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="downloader",
        description="Resumable, verified bulk downloads from a manifest or URLs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inputs = argparse.ArgumentParser(add_help=False)
    inputs.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="FILE",
        help="manifest (repeatable); '-' reads standard input",
    )
    inputs.add_argument(
        "-d",
        "--dest",
        default=".",
        metavar="DIR",
        help="root folder; every output path lies under it (default: .)",
    )
    inputs.add_argument(
        "--format",
        choices=FORMATS,
        help="manifest format when the file extension cannot tell",
    )
    inputs.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="only the entries shard K of N owns (K counts from 0; by a stable "
        "hash of each path): run N copies, K = 0..N-1, to split one manifest",
    )
    _add_setting(inputs, ("-j", "--jobs"), "jobs", _positive_int, "N")

    get = sub.add_parser(
        "get",
        parents=[inputs],
        help="download (resuming what is already there)",
        description="Download every entry; rerun the same command to resume.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    get.add_argument("urls", nargs="*", metavar="URL", help="URLs to fetch")
    net = get.add_argument_group("network")
    for flags, name, kind, metavar in _NETWORK_OPTIONS:
        _add_setting(net, flags, name, kind, metavar)
    net.add_argument(
        "-H",
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="'K: V'",
        help="extra request header (repeatable)",
    )
    net.add_argument("--ca-bundle", metavar="FILE", help=Settings.doc("ca_bundle"))
    net.add_argument(
        "--insecure",
        action="store_true",
        help=Settings.doc("insecure") + ", with a warning",
    )
    scale = get.add_argument_group("scaling out (needs the dask extra)")
    scale.add_argument(
        "--cluster",
        type=_cluster,
        metavar="ADDR",
        help="run shards on Dask: local:N starts N worker processes here, "
        "tcp://HOST:PORT uses a running scheduler; -j, --per-host and "
        "--max-connections are shared out over the workers",
    )
    out = get.add_argument_group("output")
    out.add_argument(
        "--overwrite",
        action="store_true",
        help=Settings.doc("overwrite"),
    )
    out.add_argument(
        "--no-wait",
        action="store_true",
        help="fail a file another live downloader process is working on, "
        "instead of waiting for it (by default: wait, then skip it once "
        "complete, or take over its part if that process died)",
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    out.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    out.add_argument("--report", metavar="FILE", help="write a JSON report here")

    local = [
        sub.add_parser(
            "plan",
            parents=[inputs],
            help="show what get would do (no network)",
            description="For each entry: new, resume from N bytes, complete, "
            "or replace.",
        ),
        sub.add_parser(
            "verify",
            parents=[inputs],
            help="check files on disk (no network)",
            description="Check sizes and checksums on disk; exit 1 naming every "
            "bad file.",
        ),
    ]
    for command in local:  # `plan m.txt`: answered with what to type instead
        command.add_argument("stray", nargs="*", help=argparse.SUPPRESS)
    demo = sub.add_parser(
        "demo",
        help="an offline tour: local server, faults, resume, verify",
        description="Serves generated files on 127.0.0.1 (no internet needed), "
        "downloads them with injected faults, interrupts and resumes, verifies.",
    )
    demo.add_argument(
        "--keep",
        metavar="DIR",
        help="download into DIR and keep it (default: a temp dir)",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(own_process=False)  # main() says when the process is ours
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Parse ``argv`` and run it; returns the exit status.

    ``own_process``: nothing else runs in this interpreter, so start-up may
    take process-wide shortcuts (see ``_load_engine``).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = parse_args(argv)
    args.own_process = own_process
    return run(args)


def console_main() -> int:
    """The ``downloader`` command and ``python -m downloader``."""
    return main(own_process=True)


def _load_engine(own_process: bool) -> type[Downloader]:
    """The network half (aiohttp, ~150 ms of imports), loaded only to fetch.

    ``plan``, ``verify`` and ``--help`` never pay for it. In a process of our
    own the TLS context is built beside the import and aiohttp's unused
    import-time contexts skip their CA loading (see ``_http.tls``), and the
    collector is kept off the ~200k objects the imports made, which live as
    long as the process (~50 ms less full collection at exit).
    """
    if own_process:
        from ._http import tls as _tls

        _tls.start_default_context()
        _tls.import_aiohttp_without_ca_loading()
    from ._engine import Downloader

    if own_process:
        gc.freeze()
    return Downloader


def run(args: argparse.Namespace) -> int:
    """Run a parsed command line; returns the exit status."""
    try:
        if args.command == "demo":
            from ._demo import run_demo

            return run_demo(keep=args.keep, progress=not args.no_progress)
        with _sources(args) as sources:
            if args.command == "get":
                return _run_get(args, sources)
            return _run_local(args, sources)
    except ManifestError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except _Usage as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE


class _Usage(Exception):
    """A usage problem found after argparse (the message says what to do)."""


@contextlib.contextmanager
def _sources(args: argparse.Namespace) -> Iterator[Sources]:
    urls = getattr(args, "urls", [])
    if stray := getattr(args, "stray", []):
        msg = f"{args.command} reads manifests, not arguments: " + " ".join(
            f"-i {name}" for name in stray
        )
        raise _Usage(msg)
    if not args.input and not urls:
        msg = "nothing to do: give URLs or -i MANIFEST (see --help)"
        raise _Usage(msg)
    _check_dest(Path(args.dest))
    if args.input.count("-") > 1:
        msg = "'-i -' (standard input) can be given only once"
        raise _Usage(msg)
    spooled: Path | None = None
    manifests: list[Path] = []
    try:
        for name in args.input:
            if name == "-":
                if sys.stdin.isatty():
                    msg = "'-i -' reads a manifest from standard input; pipe one in"
                    raise _Usage(msg)
                spooled = spool_stdin(sys.stdin.buffer, suffix=".stdin")
                manifests.append(spooled)
            else:
                manifests.append(Path(name))
        for url in urls:
            if not looks_like_url(url):
                msg = f"{url!r} is not a URL; to read a manifest use -i {url}"
                raise _Usage(msg)
        resolved = [m.resolve() for m in manifests]
        for i, path in enumerate(resolved):
            if path in resolved[:i]:
                msg = f"manifest {manifests[i]} is given twice"
                raise _Usage(msg)
        entries = tuple(coerce_entries(urls, source="command line URL")) if urls else ()
        fmt = args.format or (_sniff(spooled) if spooled else None)
        yield Sources(
            tuple(manifests), entries, fmt, label="command line URL", shard=args.shard
        )
    finally:
        if spooled is not None:
            with contextlib.suppress(OSError):
                spooled.unlink()


def _check_dest(dest: Path) -> None:
    """--dest must be a folder, or a path where one can be made."""
    for place in (dest, *dest.parents):
        if place.is_dir():
            return
        if place.exists() or place.is_symlink():
            what = f"--dest {dest}" if place == dest else f"--dest {dest}: {place}"
            msg = f"{what} is not a folder (a file or a broken link)"
            raise _Usage(msg)


def _sniff(path: Path) -> str:
    """Guess the format of a manifest piped in without --format."""
    with path.open("rb") as f:
        head = f.read(4096).decode("utf-8", "replace").lstrip("\ufeff")
    first = next((ln.strip() for ln in head.splitlines() if ln.strip()), "")
    if first.startswith("{"):
        return "jsonl"
    if first.startswith("["):
        return "json"
    if first.startswith("#") or looks_like_url(first):
        return "urls"
    if "\t" in first and "url" in first.lower():
        return "tsv"
    if "," in first and "url" in first.lower():
        return "csv"
    msg = (
        "cannot tell the format of standard input: add --format ("
        + ", ".join(FORMATS)
        + ")"
    )
    raise _Usage(msg)


def _make_progress(args: argparse.Namespace) -> ProgressSink:
    if args.quiet:
        return LogProgress(sys.stderr, errors_only=True)
    if args.no_progress or not sys.stderr.isatty():
        return LogProgress(sys.stderr)
    return TqdmProgress(sys.stderr, jobs=args.jobs)


def _run_get(args: argparse.Namespace, sources: Sources) -> int:
    headers = dict(args.header)
    if args.insecure:
        _err("warning: --insecure: TLS certificates are NOT verified for this run")
    if args.ca_bundle and not Path(args.ca_bundle).is_file():
        msg = f"--ca-bundle {args.ca_bundle}: no such file"
        raise _Usage(msg)
    settings = Settings(
        jobs=args.jobs,
        per_host=args.per_host,
        max_connections=args.max_connections,
        split=args.split,
        min_split_size=args.min_split_size,
        retries=args.retries,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
        limit_rate=args.limit_rate,
        headers=headers,
        overwrite=args.overwrite,
        wait_for_others=not args.no_wait,
        ca_bundle=args.ca_bundle,
        insecure=args.insecure,
    )
    if args.cluster:
        from ._cli_cluster import run_on_cluster

        return run_on_cluster(args, sources, settings)
    progress = _make_progress(args)
    outcome = _Outcome(args.report)
    downloader = _load_engine(args.own_process)

    async def transfer() -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with (
                downloader(args.dest, settings, progress=progress) as dl,
                contextlib.aclosing(dl.stream(sources)) as results,
            ):
                async for result in results:
                    outcome.add(result)
        finally:
            outcome.summary.seconds = loop.time() - began

    stopped_by = _run_until_signal(transfer())
    # On a terminal the echoed ^C sits where the bars were: clear that line.
    return outcome.finish(stopped_by, quiet=args.quiet, clear_line=sys.stderr.isatty())


class _Outcome:
    """A get run's results as the user sees them: summary, failures, report, exit."""

    def __init__(self, report: str | None) -> None:
        self.summary = Summary()
        self.failures: list[Result] = []  # the first few, listed at the end
        self.writer = _ReportWriter(Path(report)) if report else None

    def add(self, result: Result) -> None:
        self.summary.add(result)
        if result.status == "failed" and len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append(result)
        if self.writer is not None:
            self.writer.add(result)

    def finish(
        self,
        stopped_by: int | None,
        *,
        quiet: bool,
        finished: int | None = None,
        clear_line: bool = False,
    ) -> int:
        """Close the report, say how it ended; the exit status.

        ``finished``: files done when stopped, if more than the results seen.
        """
        if self.writer is not None:
            self.writer.close(self.summary)
        if stopped_by is not None:
            done = self.summary.files if finished is None else finished
            _err(
                ("\r\033[K" if clear_line else "")
                + f"stopped by {signal.Signals(stopped_by).name}: "
                f"{done} files finished; partial files kept. "
                "Run the same command again to resume."
            )
            return EXIT_SIGINT if stopped_by == signal.SIGINT else EXIT_SIGTERM
        _print_summary(self.summary, self.failures, quiet=quiet)
        return EXIT_FAILED if self.summary.counts.get("failed") else EXIT_OK


def _run_until_signal(coro: Any) -> int | None:
    """Run ``coro``; SIGINT/SIGTERM cancel it (part files stay). Returns the signal."""
    caught: list[int] = []

    async def guarded() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop(signum: int) -> None:
            caught.append(signum)
            task.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal: hard stop
                loop.remove_signal_handler(sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        await coro

    _new_loop_policy()
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(guarded())
    if caught:
        return caught[0]
    return None


def _new_loop_policy() -> None:
    """Use uvloop when it is installed (the ``speed`` extra); never required."""
    if os.environ.get("DOWNLOADER_NO_UVLOOP"):
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _print_summary(summary: Summary, failures: list[Result], *, quiet: bool) -> None:
    failed = summary.counts.get("failed", 0)
    if failures and sys.stderr.isatty() and not quiet:
        _err("\nfailed files:")
        for result in failures:
            _err("  " + describe(result))
        if failed > len(failures):
            _err(f"  ... and {failed - len(failures)} more (see --report)")
    if quiet and not failed:
        return
    counts = ", ".join(
        f"{summary.counts.get(s, 0)} {s}" for s in ("downloaded", "skipped", "failed")
    )
    _err(
        f"{counts}; {format_bytes(summary.bytes)} in {summary.seconds:.1f}s "
        f"({format_bytes(summary.mean_rate)}/s)"
    )


class _ReportWriter:
    """Streams results into the JSON report, so a huge run holds none in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        try:
            self._file: TextIO = self.tmp.open("w", encoding="utf-8")
        except OSError as exc:
            msg = f"--report {path}: {exc.strerror}"
            raise _Usage(msg) from exc
        self._file.write('{"results": [')
        self._first = True

    def add(self, result: Result) -> None:
        self._file.write(
            ("\n  " if self._first else ",\n  ") + json.dumps(result.to_dict())
        )
        self._first = False

    def close(self, summary: Summary) -> None:
        self._file.write('\n],\n"summary": ' + json.dumps(summary.to_dict()) + "}\n")
        self._file.close()
        os.replace(self.tmp, self.path)


def _run_local(args: argparse.Namespace, sources: Sources) -> int:
    """``plan`` and ``verify``: read the disk, never the network."""
    dest = Path(args.dest)
    sources.check(dest)
    verdicts = inspect_all(dest, sources, jobs=args.jobs)
    if args.command == "plan":
        return _print_plan(verdicts)
    return _print_verify(verdicts)


_PLAN_WORDS = {
    "new": "new",
    "resume": "resume",
    "restart": "restart",
    "complete": "skip",
    "replace": "replace",
    "blocked": "blocked",
}


def _print_plan(verdicts: Iterator[Verdict]) -> int:
    counts: dict[str, int] = {}
    reuse = 0
    out = sys.stdout
    for v in verdicts:
        word = _PLAN_WORDS[v.action]
        counts[word] = counts.get(word, 0) + 1
        reuse += v.have
        detail = f"  ({v.detail})" if v.detail else ""
        out.write(f"{word:<8} {v.entry.path}{detail}\n")
    total = sum(counts.values())
    parts = ", ".join(f"{n} {w}" for w, n in counts.items())
    _err(f"plan: {total} entries: {parts}; {format_bytes(reuse)} reused by resumes")
    return EXIT_FAILED if counts.get("blocked") else EXIT_OK


def _print_verify(verdicts: Iterator[Verdict]) -> int:
    bad = good = 0
    for v in verdicts:
        if v.action == "complete":
            good += 1
            continue
        bad += 1
        of = f" of {v.size:,}" if v.size is not None else ""
        reason = {
            "new": "missing",
            "resume": f"missing (partial download, {v.have:,}{of} bytes)",
            "restart": "missing (unusable partial download)",
            "replace": v.detail,
            "blocked": v.detail,
        }[v.action]
        sys.stdout.write(f"BAD  {v.entry.path}: {reason}\n")
    _err(f"verify: {good} ok, {bad} bad")
    return EXIT_FAILED if bad else EXIT_OK


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
