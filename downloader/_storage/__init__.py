"""Bytes on disk: the only writer of files under --dest.

The crash-ordering rules, each enforced (and explained) in ``state.py``:

1. A final name only ever holds whole, verified, synced bytes: it appears by a
   rename (or a link of a synced O_TMPFILE) after the bytes' fsync.
2. A state file never outlives its part ("no part" means "no state"), and it
   never claims bytes that are not on disk: a part is emptied before a new
   validator is recorded, and a checkpoint syncs the bytes before it records them.
3. One process works on a file at a time: the ``.part`` lock, which dies with
   its holder, so a crashed run's part is taken over, never shared.

- ``paths.py``        FilePaths (final, .part, .part.state), InsideCheck
- ``fs.py``           the OS line: stat, room, folders, writes at offsets, syncs
- ``lock.py``         PartLock, LazyLock, PartBusy
- ``state.py``        ResumeState and every transition: start_fresh, start_split,
                      keep_partial, checkpoint, forget, publish
- ``writer.py``       PartWriter (batched writes off the loop), BackgroundFlush
- ``commit.py``       small files: written on the loop, fsyncs grouped (GroupSync)
- ``filesystems.py``  which folders are on tmpfs (no fsync needed there)

``writer``, ``commit`` and ``filesystems`` are not re-exported: only the engine
needs them and imports them itself, so ``plan`` and ``verify`` never load them.
"""

from __future__ import annotations

from .fs import (
    allocated,
    check_room,
    make_folder,
    part_size,
    prepare_part,
    stat_or_none,
    write_all,
    write_at,
)
from .lock import LazyLock, PartBusy, PartLock
from .paths import FilePaths, InsideCheck
from .state import (
    STATE_VERSION,
    ResumeState,
    checkpoint,
    forget,
    keep_partial,
    load_state,
    publish,
    rename_into_place,
    save_state,
    segments_cover,
    start_fresh,
    start_split,
)

__all__ = [
    "STATE_VERSION",
    "FilePaths",
    "InsideCheck",
    "LazyLock",
    "PartBusy",
    "PartLock",
    "ResumeState",
    "allocated",
    "check_room",
    "checkpoint",
    "forget",
    "keep_partial",
    "load_state",
    "make_folder",
    "part_size",
    "prepare_part",
    "publish",
    "rename_into_place",
    "save_state",
    "segments_cover",
    "start_fresh",
    "start_split",
    "stat_or_none",
    "write_all",
    "write_at",
]
