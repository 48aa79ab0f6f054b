"""``plan`` and ``verify``: what get would do, and what is on disk, printed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from .._manifest import Sources
from .._offline import Verdict, inspect_all
from .._progress import format_bytes
from .._storage import InsideCheck
from .outcome import EXIT_FAILED, EXIT_OK, err


def _run_local(args: argparse.Namespace, sources: Sources) -> int:
    """``plan`` and ``verify``: read the disk, never the network."""
    dest = Path(args.dest)
    sources.check(InsideCheck(dest))
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
    err(f"plan: {total} entries: {parts}; {format_bytes(reuse)} reused by resumes")
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
    err(f"verify: {good} ok, {bad} bad")
    return EXIT_FAILED if bad else EXIT_OK
