"""The option table -> build_parser; argparse types; defaults and help from Settings."""

from __future__ import annotations

import argparse
import re
from typing import Any

from .._manifest import FORMATS, Shard, check_base_url
from .._settings import JOBS_START, Settings
from .._version import __version__

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

EXAMPLES = """\
examples:
  downloader demo                                  try it offline, in 10 seconds
  downloader get https://example.org/a.iso         one URL into the current folder
  downloader get -i files.jsonl -d data/ -j 16     a manifest, 16 files at a time
  cat urls.txt | downloader get -i - --format urls -d data/
  downloader get -i warc.paths.gz -d cc/ --base-url https://data.commoncrawl.org/
                                                   a list of relative paths, onto a base
  downloader plan -i files.jsonl -d data/          what get would do (no network)
  downloader verify -i files.jsonl -d data/        check files on disk (no network)
  downloader get -i isos.txt -d data/ --checksums data/SHA256SUMS
                                                   verify against a published sums file
  downloader get -i files.jsonl -d data/ --lock data.lock --report run.json
  downloader get -i files.jsonl -d data/ --lock data.lock --refresh
  downloader get --retry-failed run.json -d data/  only what failed in run.json

Interrupted runs resume: rerun the same command. Exit status: 0 all files
complete, 1 some failed, 2 bad usage or manifest, 130 Ctrl-C, 143 SIGTERM.
"""

_SubParsers = argparse._SubParsersAction  # the type of add_subparsers()' answer


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


def _base_url(text: str) -> str:
    try:
        return check_base_url(text)
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
        shown = _NONE_SHOWN[name]
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


# How the options whose default is None say what None does.
_NONE_SHOWN = {
    "limit_rate": "e.g. 10M = 10 MiB/s; default: none",
    "jobs": f"plan and verify: files hashed at once, default {JOBS_START}",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="downloader",
        description="Resumable, verified bulk downloads from a manifest or URLs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    inputs = _inputs()
    _add_get(sub, inputs)
    _add_local(sub, inputs)
    _add_demo(sub)
    return parser


def _inputs() -> argparse.ArgumentParser:
    """The options every command but ``demo`` shares: what to read, where to put it."""
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
        help="manifest format when the file extension cannot tell; a "
        ".gz, .xz, .bz2 or .zst file is read through, by the name under it "
        "(urls.txt.gz is a URL list)",
    )
    inputs.add_argument(
        "--base-url",
        metavar="URL",
        help="for manifests of relative paths (Common Crawl's warc.paths.gz): "
        "join each onto this URL, taken as a folder, and save the file at its "
        "relative path under --dest, folders kept; absolute URLs stay as they are",
        type=_base_url,
    )
    inputs.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="only the entries shard K of N owns (K counts from 0; by a stable "
        "hash of each path): run N copies, K = 0..N-1, to split one manifest",
    )
    inputs.add_argument(
        "--checksums",
        metavar="[ALGO:]FILE",
        help="verify the entries named in a sums file (sha256sum, md5sum or "
        "b2sum output, e.g. a dataset's SHA256SUMS); its paths are relative to "
        "--dest, entries it does not name are unaffected; the algorithm comes "
        "from the digest's length or the file's name, or say it: sha512:FILE",
    )
    _add_setting(inputs, ("-j", "--jobs"), "jobs", _positive_int, "N")
    return inputs


def _add_get(
    sub: _SubParsers[argparse.ArgumentParser], inputs: argparse.ArgumentParser
) -> None:
    get = sub.add_parser(
        "get",
        parents=[inputs],
        help="download (resuming what is already there)",
        description="Download every entry; rerun the same command to resume.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    get.add_argument("urls", nargs="*", metavar="URL", help="URLs to fetch")
    _add_network(get)
    _add_scaling(get)
    _add_output(get)
    _add_repeat(get)


def _add_network(get: argparse.ArgumentParser) -> None:
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
    net.add_argument(
        "--no-adapt",
        action="store_true",
        help="keep --per-host connections to every host and -j files in "
        "flight; by default: " + Settings.doc("adapt"),
    )


def _add_scaling(get: argparse.ArgumentParser) -> None:
    scale = get.add_argument_group("scaling out (needs the dask extra)")
    scale.add_argument(
        "--cluster",
        type=_cluster,
        metavar="ADDR",
        help="run shards on Dask: local:N starts N worker processes here, "
        "tcp://HOST:PORT uses a running scheduler; -j, --per-host and "
        "--max-connections are shared out over the workers",
    )


def _add_output(get: argparse.ArgumentParser) -> None:
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
    out.add_argument(
        "--events",
        metavar="FILE",
        help="write one JSON line per change of a file's state as it happens "
        "(queued, started, resumed, retry, throttled, done, failed, skipped, "
        "unchanged), "
        "each with event, time (ISO 8601 UTC), url and path; '-' writes them "
        "to stdout, where nothing else is printed. Each event's fields: the "
        "README, 'Events for programs'. E.g. "
        "--events - | jq -c 'select(.event == \"failed\")'",
    )


def _add_repeat(get: argparse.ArgumentParser) -> None:
    again = get.add_argument_group("repeating a run")
    again.add_argument(
        "--lock",
        metavar="FILE",
        help="write a lock file: one JSON line per complete file (url, path, "
        "size, sha256, etag, last_modified), skipped files included; it is "
        "itself a manifest (-i FILE.lock fetches the same bytes, verify -i "
        "checks them). Rewritten by each run, replaced when the run ends",
    )
    again.add_argument(
        "--refresh",
        action="store_true",
        help="needs --lock: "
        + Settings.doc("refresh")
        + "; a failed refresh keeps the old copy",
    )
    again.add_argument(
        "--retry-failed",
        metavar="REPORT",
        help="run only the entries that failed in REPORT (a --report of an "
        "earlier run on the same --dest), resuming their parts; entries "
        "that had headers need their manifest again: -i MANIFEST (and -H)",
    )


def _add_local(
    sub: _SubParsers[argparse.ArgumentParser], inputs: argparse.ArgumentParser
) -> None:
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


def _add_demo(sub: _SubParsers[argparse.ArgumentParser]) -> None:
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
