"""Which filesystem a folder is on, and what that changes for writing to it.

On a filesystem kept in memory (tmpfs, ramfs) a write never waits for a
disk and an fsync has nothing to flush: the event loop can write there
itself, and skip the fsync, without weakening anything (on tmpfs "durable"
cannot mean more than "written").
"""

from __future__ import annotations

import os
import re

_OCTAL = re.compile(r"\\([0-7]{3})")  # mountinfo writes a space as \040
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})  # fsync there does nothing


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of each line of ``/proc/self/mountinfo``."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, kinds = left.split(), right.split()
        if sep and len(fields) >= 5 and kinds:
            point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            mounts.append((point, kinds[0]))
    return mounts


def filesystem_at(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """The type of the filesystem holding absolute ``path``: its last, deepest mount."""
    best, kind = -1, None
    for point, fstype in mounts:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # later lines are mounted over earlier
            best, kind = len(point), fstype
    return kind


def kept_in_memory(fstype: str | None) -> bool:
    """Is this filesystem kept only in memory (no disk to wait for or flush to)?"""
    return fstype in MEMORY_FILESYSTEMS


def _system_mounts() -> list[tuple[str, str]] | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            return parse_mountinfo(f.read())
    except OSError:  # not Linux: assume every folder needs its fsyncs
        return None


class Filesystems:
    """Answers "is this folder on a memory filesystem?", once per folder."""

    def __init__(self, mounts: list[tuple[str, str]] | None = None) -> None:
        """``mounts``: (mount point, type) pairs; None reads the system's."""
        self._mounts = mounts
        self._in_memory: dict[str, bool] = {}

    def in_memory(self, folder: str) -> bool:
        known = self._in_memory.get(folder)
        if known is None:
            if self._mounts is None:
                self._mounts = _system_mounts() or []
            kind = filesystem_at(os.path.realpath(folder), self._mounts)
            known = kept_in_memory(kind)
            if len(self._in_memory) > 10_000:
                self._in_memory.clear()
            self._in_memory[folder] = known
        return known
