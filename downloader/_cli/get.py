"""``get``: settings from the options, signals, uvloop, the progress display."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._events import Emit
from .._exceptions import UsageError
from .._manifest import Sources
from .._progress import LogProgress, ProgressSink, TqdmProgress
from .._settings import Settings
from .events import events_to
from .outcome import Outcome, err

if TYPE_CHECKING:
    from .._engine import Downloader


def _make_progress(args: argparse.Namespace) -> ProgressSink:
    if args.quiet:
        return LogProgress(sys.stderr, errors_only=True)
    if args.no_progress or not sys.stderr.isatty():
        return LogProgress(sys.stderr)
    return TqdmProgress(sys.stderr, jobs=args.jobs)


def _run_get(args: argparse.Namespace, sources: Sources, *, own_process: bool) -> int:
    headers = dict(args.header)
    if args.insecure:
        err("warning: --insecure: TLS certificates are NOT verified for this run")
    if args.ca_bundle and not Path(args.ca_bundle).is_file():
        msg = f"--ca-bundle {args.ca_bundle}: no such file"
        raise UsageError(msg)
    _check_lock(args)
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
        adapt=not args.no_adapt,
        refresh=args.refresh,
    )
    if args.cluster:
        from .cluster import run_on_cluster

        if args.events:
            msg = "--events does not work with --cluster yet: use --report"
            raise UsageError(msg)
        return run_on_cluster(args, sources, settings)
    with events_to(args.events) as on_event:
        return _run_here(args, sources, settings, on_event, own_process=own_process)


def _run_here(
    args: argparse.Namespace,
    sources: Sources,
    settings: Settings,
    on_event: Emit | None,
    *,
    own_process: bool,
) -> int:
    """A get run in this process; ``on_event`` gets its events (``--events``)."""
    progress = _make_progress(args)
    outcome = Outcome(args.report, dest=args.dest)
    downloader = _load_engine(own_process)

    async def transfer() -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with (
                downloader(
                    args.dest,
                    settings,
                    progress=progress,
                    lock=args.lock,
                    on_event=on_event,
                ) as dl,
                contextlib.aclosing(dl.stream(sources)) as results,
            ):
                try:
                    async for result in results:
                        outcome.add(result)
                finally:
                    outcome.hosts = dl.hosts()
                    outcome.files_in_flight = dl.files_in_flight()
        finally:
            outcome.summary.seconds = loop.time() - began

    stopped_by = _run_until_signal(transfer())
    # On a terminal the echoed ^C sits where the bars were: clear that line.
    return outcome.finish(stopped_by, quiet=args.quiet, clear_line=sys.stderr.isatty())


def _check_lock(args: argparse.Namespace) -> None:
    """--lock and --refresh as a user may give them wrong: exit 2, saying why."""
    if args.refresh and not args.lock:
        msg = (
            "--refresh needs --lock FILE: the validators (ETag, Last-Modified) "
            "it asks the server with are kept in the lock file"
        )
        raise UsageError(msg)
    if not args.lock:
        return
    if args.cluster:
        msg = "--lock works on one machine only, not with --cluster"
        raise UsageError(msg)
    if args.retry_failed:
        msg = (
            "--lock with --retry-failed would pin only the retried files; after "
            "the retry, run the whole manifest with --lock (complete files are "
            "skipped, and pinned)"
        )
        raise UsageError(msg)
    lock = Path(args.lock)
    if lock.is_dir():
        msg = f"--lock {lock} is a folder; name a file"
        raise UsageError(msg)
    if not lock.parent.is_dir():
        msg = f"--lock {lock}: no folder {lock.parent}"
        raise UsageError(msg)


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


def _load_engine(own_process: bool) -> type[Downloader]:
    """The network half (aiohttp, ~150 ms of imports), loaded only to fetch.

    ``plan``, ``verify`` and ``--help`` never pay for it. In a process of our
    own the TLS context is built beside the import and aiohttp's unused
    import-time contexts skip their CA loading (see ``_http.tls``), and the
    collector is kept off the ~200k objects the imports made, which live as
    long as the process (~50 ms less full collection at exit).
    """
    if own_process:
        from .._http import tls as _tls

        _tls.start_default_context()
        _tls.import_aiohttp_without_ca_loading()
    from .._engine import Downloader

    if own_process:
        gc.freeze()
    return Downloader
