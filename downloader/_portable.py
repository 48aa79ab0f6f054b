"""Paths that work on every filesystem: name and path lengths."""

from __future__ import annotations

NAME_MAX = 255  # bytes in one file or folder name (Linux, macOS, most others)
PATH_MAX = 4000  # bytes in a relative path: Linux allows 4096, --dest included
# The longest name kept beside a file while it downloads (see _storage): the
# final name must leave room for it, or the download fails at the first write.
SIDECAR = ".part.state.tmp"


def length_problem(path: str) -> str | None:
    """Why a normalised ``/``-separated path is too long to create, or None."""
    if len(path) <= NAME_MAX - len(SIDECAR) and path.isascii():
        return None  # the common case: short enough whatever its parts
    size = len(path.encode())
    if size > PATH_MAX:
        return f"path is {size:,} bytes long; at most {PATH_MAX:,} are allowed"
    *folders, name = path.split("/")
    for folder in folders:
        size = len(folder.encode())
        if size > NAME_MAX:
            return (
                f"folder name {_short(folder)} is {size} bytes long; "
                f"filesystems allow at most {NAME_MAX}"
            )
    size, room = len(name.encode()), NAME_MAX - len(SIDECAR)
    if size > room:
        return (
            f"file name {_short(name)} is {size} bytes long; at most {room} "
            f"(filesystems allow {NAME_MAX}, and the {SIDECAR!r} file kept "
            f"beside it while it downloads needs {len(SIDECAR)} more)"
        )
    return None


def _short(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:32] + "...")
