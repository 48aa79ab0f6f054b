"""The command line: parse_args(argv) and run(args) -> exit code; no transfer logic.

parser.py    the option table -> build_parser; argparse types; help from Settings
inputs.py    -i FILE, -i -, URLs and --dest, checked and turned into Sources
get.py       get: settings from the options, signals, uvloop, the progress display
outcome.py   summary lines, failures listed, the JSON report, exit codes, err()
events.py    get --events FILE: the stream (- is stdout) events are written to
retry.py     get --retry-failed REPORT: the failed entries of a report, checked
offline.py   plan and verify: read the disk, never the network, and print it
cluster.py   get --cluster: the Dask run's bar, report and signals (imports outcome.py)
demo.py      downloader demo: the offline tour on 127.0.0.1
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from .._exceptions import ManifestError, UsageError
from .inputs import _sources
from .outcome import EXIT_OK, EXIT_USAGE, err
from .parser import build_parser
from .retry import NothingToRetry

__all__ = ["build_parser", "console_main", "main", "parse_args", "run"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Parse ``argv`` and run it; returns the exit status.

    ``own_process``: nothing else runs in this interpreter, so start-up may
    take process-wide shortcuts (see ``_load_engine``).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = parse_args(argv)
    return run(args, own_process=own_process)


def console_main() -> int:
    """The ``downloader`` command and ``python -m downloader``."""
    return main(own_process=True)


def run(args: argparse.Namespace, *, own_process: bool = False) -> int:
    """Run a parsed command line; returns the exit status.

    ``own_process``: as for ``main``.
    """
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(keep=args.keep, progress=not args.no_progress)
        # Each command loads only its own half: get.py brings asyncio (and
        # ssl, socket: ~20 ms), which plan, verify and --help never need.
        opener = _sources
        if getattr(args, "retry_failed", None):
            from .retry import retry_sources as opener
        with opener(args) as sources:
            if args.command == "get":
                from .get import _run_get

                return _run_get(args, sources, own_process=own_process)
            from .offline import _run_local

            return _run_local(args, sources)
    except ManifestError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except NothingToRetry as exc:
        err(str(exc))
        return EXIT_OK
    except UsageError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
