"""Output paths: check_path, names that work on every filesystem, case folding."""

from __future__ import annotations

import hashlib
import re
import unicodedata

NAME_MAX = 255  # bytes in one file or folder name (Linux, macOS, most others)
PATH_MAX = 4000  # bytes in a relative path: Linux allows 4096, --dest included
# The longest name kept beside a file while it downloads (see _storage): the
# final name must leave room for it, or the download fails at the first write.
SIDECAR = ".part.state.tmp"

_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"}
)
_WINDOWS_CHARS = re.compile(r'[<>:"|?*]')
# A part that may start with a device name: a cheap filter before the exact
# check, since manifests hold millions of paths and almost none of these.
_MAYBE_DEVICE = re.compile(r"(?<![^/])(?:con|prn|aux|nul|com|lpt)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # only JSON escapes can make one
_DRIVE = re.compile(r"[A-Za-z]:")
# A path that is normal as it stands: ASCII names not starting with a dot,
# joined by single slashes. Short enough (_SHORT) for every length limit.
_PLAIN_PATH = re.compile(r"[\w-][\w.-]*(?:/[\w-][\w.-]*)*", re.ASCII)
_SHORT = NAME_MAX - len(SIDECAR)


def check_path(path: str) -> str:
    """Check an output path relative to ``--dest``; return it normalised.

    Raises
    ------
    ValueError
        The path is empty, absolute, has a drive, a ``..``, a backslash, a
        control character or a lone surrogate, names no file, or is too long
        for a filesystem (a name over 255 bytes, a path over 4000).
    """
    if isinstance(path, str) and len(path) <= _SHORT and _PLAIN_PATH.fullmatch(path):
        return path  # the common case, already normal: millions of these
    if not isinstance(path, str):
        msg = f"path must be a string, not {type(path).__name__}"
    elif not path:
        msg = "empty path"
    elif "\x00" in path:
        msg = f"path {path!r} contains a NUL byte"
    elif _CONTROL.search(path):
        msg = f"path {path!r} contains a control character (CR, LF, tab...)"
    elif _SURROGATE.search(path):
        msg = f"path {path!r} is not valid Unicode (a lone surrogate escape)"
    elif _DRIVE.match(path):
        msg = f"path {path!r} starts with a Windows drive"
    elif "\\" in path:
        msg = f"path {path!r} contains a backslash; separate folders with '/'"
    elif path.startswith("/"):
        msg = f"path {path!r} is absolute; it must be relative to --dest"
    elif ".." in path.split("/"):
        msg = f"path {path!r} contains '..'; it must stay inside --dest"
    elif path.endswith("/"):
        msg = f"path {path!r} ends in '/'; it must name a file"
    else:
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if not parts:
            msg = f"path {path!r} names no file"
        else:
            normal = "/".join(parts)
            problem = length_problem(normal)
            if problem is None:
                return normal
            msg = problem
    raise ValueError(msg)


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


def windows_problem(path: str) -> str | None:
    """Why ``path`` cannot be created on Windows (it is fine here), or None.

    Device names (``CON``, ``nul.txt``, ``COM1``...) in any letter case and with
    any extension, names ending in a dot or a space, and ``<>:"|?*``.
    """
    suspect = (
        _WINDOWS_CHARS.search(path)
        or path.endswith((".", " "))
        or "./" in path
        or " /" in path
        or _MAYBE_DEVICE.search(path)
    )
    if not suspect:
        return None
    for part in path.split("/"):
        if (problem := part_problem(part)) is not None:
            return problem
    return None


def part_problem(part: str) -> str | None:
    """Why Windows refuses this one name (``windows_problem`` without a filter)."""
    if part[-1:] in (".", " "):
        return f"{part!r} ends in {'a dot' if part[-1] == '.' else 'a space'}"
    if _WINDOWS_CHARS.search(part):
        return f'{part!r} contains one of the characters <>:"|?*'
    if part.partition(".")[0].rstrip(" ").upper() in _DEVICES:
        return f"{part!r} is a reserved device name"
    return None


def fold(path: str) -> str:
    """The key under which case-insensitive, normalising filesystems store ``path``.

    macOS (APFS, HFS+) and Windows (NTFS) store ``A.txt`` and ``a.txt``, or ``é``
    composed and decomposed, as one file: Unicode NFC, then ``casefold``.
    """
    if path.isascii():
        return path.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", path).casefold())


def path_key(path: str) -> int:
    """The one digest of an output path: blake2b-64 of ``fold(path)``, big-endian.

    Shards take it modulo their count (``shard_of``), and the check pass keeps
    it, 8 bytes an entry, to find repeated paths. Never change it: shards run
    by two versions must still partition a manifest.
    """
    return folded_key(fold(path))


def folded_key(folded: str) -> int:
    """``path_key`` of a path that is already folded (the check pass folds anyway).

    The check pass used to encode strictly and sharding with ``surrogatepass``.
    The bytes are the same for every string without a lone surrogate, and
    ``check_path`` refuses those before the check pass hashes a path, so both
    keep their numbers; ``surrogatepass`` stays so that ``shard_of`` never
    raises where it answered before.
    """
    digest = hashlib.blake2b(folded.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def _short(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:32] + "...")
