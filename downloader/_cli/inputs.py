"""-i FILE, -i -, URLs and --dest, checked and turned into Sources."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from .._exceptions import UsageError
from .._manifest import (
    FORMATS,
    Sources,
    SumsFile,
    coerce_entries,
    looks_like_url,
    spool_stdin,
)


@contextlib.contextmanager
def _sources(args: argparse.Namespace) -> Iterator[Sources]:
    urls = getattr(args, "urls", [])
    if stray := getattr(args, "stray", []):
        msg = f"{args.command} reads manifests, not arguments: " + " ".join(
            f"-i {name}" for name in stray
        )
        raise UsageError(msg)
    if not args.input and not urls:
        msg = "nothing to do: give URLs or -i MANIFEST (see --help)"
        raise UsageError(msg)
    _check_dest(Path(args.dest))
    if args.input.count("-") > 1:
        msg = "'-i -' (standard input) can be given only once"
        raise UsageError(msg)
    spooled: Path | None = None
    manifests: list[Path] = []
    try:
        for name in args.input:
            if name == "-":
                if sys.stdin.isatty():
                    msg = "'-i -' reads a manifest from standard input; pipe one in"
                    raise UsageError(msg)
                spooled = spool_stdin(sys.stdin.buffer, suffix=".stdin")
                manifests.append(spooled)
            else:
                manifests.append(Path(name))
        for url in urls:
            if not looks_like_url(url):
                msg = f"{url!r} is not a URL; to read a manifest use -i {url}"
                raise UsageError(msg)
        resolved = [m.resolve() for m in manifests]
        for i, path in enumerate(resolved):
            if path in resolved[:i]:
                msg = f"manifest {manifests[i]} is given twice"
                raise UsageError(msg)
        entries = tuple(coerce_entries(urls, source="command line URL")) if urls else ()
        fmt = args.format or (_sniff(spooled) if spooled else None)
        yield Sources(
            tuple(manifests),
            entries,
            fmt,
            label="command line URL",
            shard=args.shard,
            checksums=_sums_file(args.checksums),
            base_url=getattr(args, "base_url", None),
        )
    finally:
        if spooled is not None:
            with contextlib.suppress(OSError):
                spooled.unlink()


def _sums_file(spec: str | None) -> SumsFile | None:
    """``--checksums [ALGO:]FILE``: the file must be there."""
    if spec is None:
        return None
    sums = SumsFile(spec)
    if not sums.path.is_file():
        msg = f"--checksums {spec}: no such file"
        raise UsageError(msg)
    return sums


def _check_dest(dest: Path) -> None:
    """--dest must be a folder, or a path where one can be made."""
    for place in (dest, *dest.parents):
        if place.is_dir():
            return
        if place.exists() or place.is_symlink():
            what = f"--dest {dest}" if place == dest else f"--dest {dest}: {place}"
            msg = f"{what} is not a folder (a file or a broken link)"
            raise UsageError(msg)


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
    raise UsageError(msg)
