"""Lock files: one JSON line per complete file, written as the run goes.

A run writes its records to ``LOCK.tmp``, one line flushed per file, and
renames that over ``LOCK`` when every entry has a result: a lock file is
always a whole run's, never half of one. A run that is stopped (Ctrl-C, a
kill) leaves the previous ``LOCK`` as it was and ``LOCK.tmp`` as a valid
prefix (its last line may be cut short by a kill; ``read_known`` skips it).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TextIO

from ._exceptions import ManifestError, StorageError
from ._models import Result
from ._policy import Known, known_from_record, lock_record
from ._types import StrPath

log = logging.getLogger(__name__)


def record_of(result: Result) -> dict[str, object] | None:
    """The lock file line for a result, or None when no complete file is pinned."""
    entry = result.entry
    return lock_record(
        entry.url,
        entry.path,
        result.size,
        result.sha256,
        mirrors=entry.mirrors,
        etag=result.etag,
        last_modified=result.last_modified,
    )


class LockWriter:
    """Writes one run's lock file: records to ``LOCK.tmp``, renamed at the end."""

    def __init__(self, path: StrPath) -> None:
        """Raises ``StorageError`` when ``LOCK.tmp`` cannot be written."""
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self._file: TextIO = self.tmp.open("w", encoding="utf-8")
        except OSError as exc:
            msg = f"cannot write the lock file {self.tmp}: {exc.strerror}"
            raise StorageError(msg) from exc
        self.records = 0

    def add(self, result: Result) -> None:
        """Pin a result's file, if complete: one line, flushed (others may tail it)."""
        record = record_of(result)
        if record is None:
            return
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self.records += 1

    def close(self, *, publish: bool) -> None:
        """Sync and rename over ``LOCK`` (``publish``), or leave ``LOCK.tmp`` be."""
        if self._file.closed:
            return
        try:
            if publish:
                os.fsync(self._file.fileno())
            self._file.close()
            if publish:
                os.replace(self.tmp, self.path)
        except OSError as exc:
            msg = f"cannot write the lock file {self.path}: {exc.strerror}"
            raise StorageError(msg) from exc


def read_known(path: StrPath) -> dict[str, Known]:
    """What a lock file pins, by path: validators and sha256 for a refresh.

    A missing file pins nothing (the first run with ``--lock``). A last line
    without its newline is what a killed writer leaves: it is skipped, with
    a warning. Any other line that is not a lock record is an error.

    Raises
    ------
    ManifestError
        ``FILE:LINE: reason`` for a line that is not a lock record.
    """
    source = os.fspath(path)
    known: dict[str, Known] = {}
    try:
        file = open(source, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return known
    except OSError as exc:
        msg = f"cannot read: {exc.strerror}"
        raise ManifestError(msg, source=source) from None
    with file:
        for line, raw in enumerate(file, 1):
            if not raw.strip():
                continue
            try:
                found, pinned = known_from_record(json.loads(raw))
            except ValueError as exc:  # JSONDecodeError and UnicodeError too
                if not raw.endswith(b"\n"):
                    log.warning("%s:%d: last line cut short; skipped", source, line)
                    break
                reason = f"not a lock record: {exc}"
                raise ManifestError(reason, source=source, line=line) from None
            known[found] = pinned
    return known
