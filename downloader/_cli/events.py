"""get --events FILE: open the stream (``-`` is stdout) the events are written to."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from .._events import JsonLines
from .._exceptions import UsageError


@contextlib.contextmanager
def events_to(where: str | None) -> Iterator[JsonLines | None]:
    """``JsonLines`` writing to ``where`` (None: no events), closed afterwards.

    Raises
    ------
    UsageError
        ``where`` cannot be opened for writing (exit 2, before any transfer).
    """
    if where is None:
        yield None
        return
    if where == "-":
        emit = JsonLines(sys.stdout, "-")
        try:
            yield emit
        finally:
            emit.flush()  # what the loop's last turn left
            if emit.broken is not None:  # stdout's reader left: no noise at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    try:
        stream = open(where, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        msg = f"--events {where}: {exc.strerror or exc}"
        raise UsageError(msg) from exc
    emit = JsonLines(stream, where)
    try:
        yield emit
    finally:
        try:
            stream.close()
        except OSError:  # the rest of its buffer: already warned about
            if emit.broken is None:
                raise
