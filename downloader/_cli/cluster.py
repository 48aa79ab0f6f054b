"""``get --cluster``: the command line's side of a Dask run (bar, report, signals)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time

from .._exceptions import ClusterError, UsageError
from .._manifest import Sources
from .._progress import OverallBar, describe
from .._settings import Settings
from ..distributed import ClusterRun, ProgressUpdate
from .outcome import Outcome

HEARTBEAT = 30.0  # seconds between progress lines when stderr is not a terminal


class _Stopped(BaseException):
    """SIGINT or SIGTERM during a cluster run (raised in the main thread)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: object) -> None:
    # One stop is enough: a second signal must not cut the clean-up short
    # (it tells the workers to stop). Workers signalled with us die at once;
    # what Dask logs about the closed streams says nothing new.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    quiet_dask(logging.CRITICAL + 1)
    raise _Stopped(signum)


def run_on_cluster(
    args: argparse.Namespace, sources: Sources, settings: Settings
) -> int:
    """Shards on Dask, one overall bar, one merged report; returns the exit status."""
    if args.shard is not None:
        msg = (
            "--cluster makes its own shards; --shard is for separate runs "
            "(job arrays), so give one or the other"
        )
        raise UsageError(msg)
    quiet_dask()
    outcome = Outcome(args.report)
    show_bar = not (args.quiet or args.no_progress) and sys.stderr.isatty()
    bar: OverallBar | None = None
    stopped_by: int | None = None
    began = time.monotonic()
    handlers = {
        sig: signal.signal(sig, _raise_stopped)
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with contextlib.ExitStack() as stack:
            run = ClusterRun(sources, args.dest, cluster=args.cluster)
            _enter(stack, run, args.cluster)
            bar = _open_bar(stack, run, quiet=args.quiet, show_bar=show_bar)
            _collect(
                stack, run, settings, outcome, bar, quiet=args.quiet, show_bar=show_bar
            )
    except _Stopped as stop:
        stopped_by = stop.signum
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        outcome.summary.seconds = time.monotonic() - began
    finished = bar.finished if bar is not None else 0  # shards report when they end
    return outcome.finish(stopped_by, quiet=args.quiet, finished=finished)


def _enter(stack: contextlib.ExitStack, run: ClusterRun, cluster: str) -> None:
    """Start ``run`` (reach or start the cluster); no cluster is a usage error."""
    try:
        stack.enter_context(run)
    except (ClusterError, ValueError) as exc:
        msg = f"--cluster {cluster}: {exc}"
        raise UsageError(msg) from None


def _open_bar(
    stack: contextlib.ExitStack, run: ClusterRun, *, quiet: bool, show_bar: bool
) -> OverallBar:
    """The one overall bar (or heartbeat lines), closed when ``stack`` is."""
    bar = OverallBar(
        sys.stderr,
        files=run.count,
        total_bytes=run.total_bytes,
        bar=show_bar,
        heartbeat=None if quiet or show_bar else HEARTBEAT,
    )
    stack.callback(bar.close)  # first, so Dask's shutdown lines come after
    return bar


def _collect(
    stack: contextlib.ExitStack,
    run: ClusterRun,
    settings: Settings,
    outcome: Outcome,
    bar: OverallBar,
    *,
    quiet: bool,
    show_bar: bool,
) -> None:
    """Every result into ``outcome``, progress onto ``bar``, as the shards send them."""

    def show(update: ProgressUpdate) -> None:
        shards = f"{update.shards_done}/{update.shards} shards"
        live = update.failed if show_bar else []
        bar.advance(update.bytes, update.dropped, update.finished, live, shards)

    # Closed before the cluster is: that is what tells running shards
    # to stop, so none goes on downloading while the workers close.
    results = stack.enter_context(
        contextlib.closing(run.results(settings, on_progress=show))
    )
    for result in results:
        outcome.add(result)
        if not show_bar and (not quiet or result.status == "failed"):
            bar.write(describe(result))


def quiet_dask(level: int = logging.WARNING) -> None:
    """Keep Dask's warnings (a worker died...) but not its INFO start-up chatter."""
    try:
        import distributed  # noqa: F401 - its import sets its loggers' levels
    except ImportError:
        return  # ClusterRun says how to install it
    for name in list(logging.root.manager.loggerDict):
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(level)
