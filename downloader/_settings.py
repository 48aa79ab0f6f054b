"""Settings: every user-facing default once, for the library, the CLI and clusters.

``Downloader`` takes a ``Settings`` or the same names as keywords; the command
line builds its options' defaults and help from the field docs here; a cluster
run shares one ``Settings`` out over its workers (it is frozen and pickles).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

MiB = 1024 * 1024
BACKOFF_BASE = 0.5  # seconds before the first retry

# Connections a large file may use. A fast connection is never split (see
# FAST_ENOUGH), so this matters only for throttling servers: 4x the speed
# there, under 64 MiB RSS (README "Large files").
DEFAULT_SPLIT = 4
# Extra connections help only when each one is throttled; when the CPU or the
# disk is the limit they slow the file down (1 GiB from a local nginx: 1.90 s
# over 4 connections, 1.44 s over one). A connection this fast is not split.
FAST_ENOUGH = 128 * 1024 * 1024  # bytes/s

# Files in flight: a run starts with JOBS_START and grows while files/s rises
# (policy.FlightLimit), up to -j; by default up to JOBS_CEILING, for
# manifests spread over many slow hosts. With adapt off: -j, or JOBS_START.
JOBS_START = 8
JOBS_CEILING = 256

# Limits that are totals for a run: a cluster gives each worker a share, so the
# cluster as a whole keeps the limits a single run would (at least one each).
SHARED_LIMITS = ("jobs", "per_host", "max_connections", "limit_rate")


def _setting(default: Any, doc: str) -> Any:
    """A field with its one-line doc (the CLI's help text starts from it)."""
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """How a run behaves; every default a user can change, once.

    Raises ``ValueError`` on a value no run could use (``jobs=0``...).
    """

    jobs: int | None = _setting(
        None,
        f"files in flight at most: it starts at {JOBS_START} and doubles while "
        f"files/s rises (manifests over many slow hosts), up to this, by default "
        f"{JOBS_CEILING}; with adapt off it stays at this, by default {JOBS_START}",
    )
    per_host: int = _setting(
        8, "open connections to one host, at most (fewer while it pushes back)"
    )
    max_connections: int = _setting(JOBS_CEILING, "open connections in all")
    split: int = _setting(
        DEFAULT_SPLIT,
        "ranged connections a large file may use; added only while one is "
        f"slower than {FAST_ENOUGH >> 20} MiB/s (a throttling server), and only "
        "with servers that honour Range",
    )
    min_split_size: int = _setting(32 * MiB, "no segment smaller than this")
    retries: int = _setting(5, "retries per file after the first try")
    timeout: float = _setting(60.0, "no bytes for this many seconds fails a try")
    connect_timeout: float = _setting(30.0, "seconds to set up a connection")
    limit_rate: float | None = _setting(
        None, "bandwidth cap over all files, in bytes per second"
    )
    headers: Mapping[str, str] = _setting({}, "extra request headers for every entry")
    overwrite: bool = _setting(False, "download again even if a complete file is there")
    refresh: bool = _setting(
        False,
        "ask the server again about every complete file, with the validators "
        "the lock file kept (If-None-Match / If-Modified-Since): 304 leaves it "
        "as it is (unchanged), a new version replaces it once verified",
    )
    wait_for_others: bool = _setting(
        True,
        "when another live process works on a file in the same folder, wait "
        "for it (then skip the file or take over its part); False fails it",
    )
    ca_bundle: str | None = _setting(None, "trust these CA certificates for TLS")
    insecure: bool = _setting(False, "skip TLS verification (dangerous)")
    adapt: bool = _setting(
        True,
        "halve a host's connections when it answers 429 or 503 (or stalls), "
        "pace its requests, and grow them back while its answers are clean, "
        "never past the per-host limit; grow the files in flight while "
        "files/s rises, never past jobs",
    )
    retry_wait: float = _setting(
        BACKOFF_BASE, "seconds before the first retry; doubles each time"
    )
    raise_on_failure: bool = _setting(
        False, "raise DownloadFailed from download() when any file failed"
    )

    def __post_init__(self) -> None:
        jobs = 1 if self.jobs is None else self.jobs
        if min(jobs, self.per_host, self.max_connections, self.split) < 1:
            msg = "jobs, per_host, max_connections and split must be >= 1"
            raise ValueError(msg)
        if self.retries < 0 or self.min_split_size < 1:
            msg = "retries must be >= 0 and min_split_size >= 1"
            raise ValueError(msg)
        if self.timeout <= 0 or self.connect_timeout <= 0 or self.retry_wait < 0:
            msg = "timeout and connect_timeout must be > 0, retry_wait >= 0"
            raise ValueError(msg)
        if self.limit_rate is not None and self.limit_rate <= 0:
            msg = "limit_rate must be > 0 (or None for no cap)"
            raise ValueError(msg)
        object.__setattr__(self, "headers", dict(self.headers))

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``; an unknown name is a ``TypeError`` saying so."""
        unknown = sorted(set(changes) - set(NAMES))
        if unknown:
            names = ", ".join(map(repr, unknown))
            msg = f"unknown setting {names} (known: {', '.join(NAMES)})"
            raise TypeError(msg)
        return dataclasses.replace(self, **changes)

    def flight(self) -> tuple[int, int]:
        """(files in flight at first, at most): grown between the two with adapt."""
        if not self.adapt:
            fixed = self.jobs or JOBS_START
            return fixed, fixed
        ceiling = self.jobs or JOBS_CEILING
        return min(JOBS_START, ceiling), ceiling

    def shared_out(self, workers: int) -> Settings:
        """Each of ``workers`` processes' share of the run-wide limits."""
        shares: dict[str, Any] = {}
        for name in SHARED_LIMITS:
            total = self.flight()[1] if name == "jobs" else getattr(self, name)
            if total is None:
                continue
            if name == "limit_rate":
                shares[name] = total / workers
            else:
                shares[name] = max(1, math.ceil(total / workers))
        return dataclasses.replace(self, **shares)

    @staticmethod
    def doc(name: str) -> str:
        """The one-line doc of setting ``name``."""
        return str(_FIELDS[name].metadata["doc"])

    @staticmethod
    def default(name: str) -> Any:
        """The default of setting ``name``."""
        return getattr(DEFAULTS, name)


class Options(TypedDict, total=False):
    """The settings as keywords: ``Downloader(dest, jobs=16)``; same names, types."""

    jobs: int | None
    per_host: int
    max_connections: int
    split: int
    min_split_size: int
    retries: int
    timeout: float
    connect_timeout: float
    limit_rate: float | None
    headers: Mapping[str, str] | None
    overwrite: bool
    refresh: bool
    wait_for_others: bool
    ca_bundle: str | None
    insecure: bool
    adapt: bool
    retry_wait: float
    raise_on_failure: bool


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
NAMES: tuple[str, ...] = tuple(_FIELDS)
DEFAULTS = Settings()


def settings_from(settings: Settings | None, options: Mapping[str, Any]) -> Settings:
    """``settings`` (or the defaults) with ``options`` given as keywords on top."""
    changes = dict(options)
    if "headers" in changes and changes["headers"] is None:
        changes["headers"] = {}
    return (settings or DEFAULTS).replace(**changes)
