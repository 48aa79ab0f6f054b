"""Entry, Result and Report: plain frozen data, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from ._integrity import Checksum

Status = Literal["downloaded", "skipped", "unchanged", "failed"]
# unchanged: a refresh asked the server, which answered 304 Not Modified
STATUSES: tuple[Status, ...] = ("downloaded", "skipped", "unchanged", "failed")


@dataclass(frozen=True, slots=True)
class Entry:
    """One file to fetch: where from, where to, and what it must be.

    Parameters
    ----------
    url:
        http(s) URL of the file.
    path:
        Output path relative to the destination; defaults to the URL's last
        path segment, percent-decoded.
    mirrors:
        More URLs serving the same bytes, tried when ``url`` fails.
    size:
        Expected size in bytes, checked before the file is published.
    checksum:
        Expected digest, checked before the file is published.
    headers:
        Extra request headers for this entry only.
    """

    url: str
    path: str = ""
    mirrors: tuple[str, ...] = ()
    size: int | None = None
    checksum: Checksum | None = None
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.path:
            object.__setattr__(self, "path", default_path(self.url))

    @property
    def urls(self) -> tuple[str, ...]:
        """The URL first, then the mirrors, in the order to try them."""
        return (self.url, *self.mirrors)


def default_path(url: str) -> str:
    """The URL's last path segment, percent-decoded ('' when there is none)."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one entry in one run."""

    entry: Entry
    status: Status
    bytes: int = 0  # transferred this run
    size: int | None = None  # final size on disk, when known
    elapsed_s: float = 0.0
    attempts: int = 0
    error: str | None = None
    checksum: str | None = None  # the ALGO:HEX verified, if any
    # Only when a lock file is written: the complete file now at ``path``
    # (kept by a failed refresh too), and the validators it came with.
    sha256: str | None = None
    etag: str | None = None
    last_modified: str | None = None

    @property
    def url(self) -> str:
        return self.entry.url

    @property
    def path(self) -> str:
        return self.entry.path

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "path": self.path,
            "status": self.status,
            "bytes": self.bytes,
            "size": self.size,
            "elapsed_s": round(self.elapsed_s, 3),
            "attempts": self.attempts,
            "error": self.error,
            "checksum": self.checksum,
            **self._extras(),
        }

    def _extras(self) -> dict[str, Any]:
        """What a lock file needs, when known; a failure's entry, to retry it.

        The entry's header *names* are kept, never their values: a retry
        must be given them again (``--retry-failed REPORT -i MANIFEST``).
        """
        extras: dict[str, Any] = {
            name: value
            for name, value in (
                ("sha256", self.sha256),
                ("etag", self.etag),
                ("last_modified", self.last_modified),
            )
            if value is not None
        }
        if self.status == "failed":
            entry = self.entry
            extras["entry"] = {
                "url": entry.url,
                "mirrors": list(entry.mirrors),
                "path": entry.path,
                "size": entry.size,
                "checksum": None if entry.checksum is None else str(entry.checksum),
                "header_names": sorted(entry.headers),
            }
        return extras


@dataclass(slots=True)
class Summary:
    """Running totals over results, so a report needs no list to be summarised."""

    counts: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    seconds: float = 0.0

    def add(self, result: Result) -> None:
        self.counts[result.status] += 1
        self.bytes += result.bytes

    @property
    def files(self) -> int:
        return sum(self.counts.values())

    @property
    def mean_rate(self) -> float:
        """Bytes per second over the whole run."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            **{status: self.counts.get(status, 0) for status in STATUSES},
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "mean_rate_bps": round(self.mean_rate, 1),
        }


@dataclass(slots=True)
class Report:
    """Every result of a run plus the summary (SPEC section 5)."""

    results: list[Result] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)

    @classmethod
    def of(cls, results: Iterable[Result], seconds: float) -> Report:
        report = cls()
        for result in results:
            report.add(result)
        report.summary.seconds = seconds
        return report

    def add(self, result: Result) -> None:
        self.results.append(result)
        self.summary.add(result)

    @property
    def ok(self) -> bool:
        return self.summary.counts.get("failed", 0) == 0

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary.to_dict(),
            "results": [r.to_dict() for r in self.results],
        }
