"""Sums files (``sha256sum``, ``md5sum``, ``b2sum`` output): path -> expected digest.

The rules, as the README tells them:

- Paths in a sums file are relative to ``--dest``, as if ``sha256sum -c``
  ran inside the destination folder.
- Lines look like ``sha256sum``'s (``HEX  path``, ``HEX *path`` for binary
  mode, a leading ``\\`` for an escaped name) or the BSD tag style
  (``SHA256 (path) = HEX``, what ``--tag`` writes). Blank lines and ``#``
  comments are skipped.
- The algorithm is the tag's, else the one ``ALGO:FILE`` names, else the one
  the file's name names (``SHA512SUMS``, ``b2sums.txt``, ``x.md5``), else
  judged from the digest's length: 32 hex md5, 40 sha1, 64 sha256. 128 hex
  is sha512 or blake2b: without one of those hints it is an error.
- Entries it does not name are unaffected; names no entry has are ignored.
- An entry whose manifest gives a checksum of the same algorithm must agree
  with it (else an error naming both lines); one of another algorithm keeps
  the manifest's.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from .._exceptions import ManifestError
from .._integrity import ALGORITHMS, Checksum
from .._models import Entry
from .._types import StrPath
from .paths import check_path

# The BSD tag style's names, as the tools write them.
_TAGS = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha512": "sha512"}
_TAGS |= {"blake2b": "blake2b", "blake2b-512": "blake2b"}
_TAG_LINE = re.compile(r"([A-Za-z0-9-]+) \((.*)\) ?= ?([0-9A-Fa-f]+)")
_GNU_LINE = re.compile(r"([0-9A-Fa-f]+) ([ *]?)(.*)")
# A sums file's name may say its algorithm: SHA256SUMS, b2sums.txt, x.sha512.
_NAME_HINTS = (
    (re.compile(r"sha-?512"), "sha512"),
    (re.compile(r"sha-?256"), "sha256"),
    (re.compile(r"sha-?1(?!\d)"), "sha1"),
    (re.compile(r"md5"), "md5"),
    (re.compile(r"blake2|b2sum|\.b2$"), "blake2b"),
)
_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256"}


def split_spec(spec: str) -> tuple[str | None, str]:
    """``sha512:FILE`` -> ("sha512", "FILE"); a plain file name -> (None, it)."""
    algorithm, sep, rest = spec.partition(":")
    if sep and algorithm.lower() in ALGORITHMS and rest:
        return algorithm.lower(), rest
    return None, spec


def name_hint(path: str) -> str | None:
    """The algorithm a sums file's name names, if it names one."""
    name = os.path.basename(path).lower()
    for pattern, algorithm in _NAME_HINTS:
        if pattern.search(name):
            return algorithm
    return None


def parse_line(text: str, hint: str | None) -> tuple[str, Checksum] | None:
    """One line of a sums file -> (normalised path, checksum); None: nothing there.

    ``hint`` is the algorithm the command line or the file's name gives.

    Raises
    ------
    ValueError
        Not a sums line, an unknown or unclear algorithm, a digest of the
        wrong length, or a path that is absolute, has ``..``, or is unusable.
    """
    line = text.rstrip("\r\n")
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    escaped = line.startswith("\\")
    if escaped:
        line = line[1:]
    tagged = _TAG_LINE.fullmatch(line)
    if tagged is not None:
        name = tagged[1].lower()
        if name not in _TAGS:
            msg = f"unsupported algorithm {tagged[1]!r} (use MD5, SHA1, SHA256, "
            raise ValueError(msg + "SHA512 or BLAKE2b)")
        algorithm, path, hexdigest = _TAGS[name], tagged[2], tagged[3]
    else:
        gnu = _GNU_LINE.fullmatch(line)
        if gnu is None or not gnu[3]:
            msg = "not a checksum line (want 'HEX  path', 'HEX *path' or "
            raise ValueError(msg + "'ALGO (path) = HEX')")
        hexdigest, path = gnu[1], gnu[3]
        algorithm = _judged(len(hexdigest), hint)
    if escaped:
        path = _unescape(path)
    checksum = Checksum.parse(hexdigest, algorithm=algorithm)
    try:
        return check_path(path), checksum
    except ValueError as exc:
        msg = f"{exc} (paths in a checksums file are relative to --dest)"
        raise ValueError(msg) from None


def _judged(length: int, hint: str | None) -> str:
    """The algorithm of a digest of ``length`` hex digits (``hint`` first)."""
    if hint is not None:
        return hint  # Checksum.parse then refuses a digest of another length
    if length in _BY_LENGTH:
        return _BY_LENGTH[length]
    if length == 128:
        msg = (
            "a 128-digit digest is sha512 or blake2b: say which with "
            "--checksums sha512:FILE or --checksums blake2b:FILE"
        )
        raise ValueError(msg)
    msg = f"a digest of {length} hex digits is no algorithm known here"
    raise ValueError(msg + " (md5 32, sha1 40, sha256 64, sha512/blake2b 128)")


def _unescape(path: str) -> str:
    r"""coreutils' escaped names: ``\\`` is a backslash, ``\n`` a newline."""
    out, chars = [], iter(path)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append({"\\": "\\", "n": "\n", "r": "\r"}.get(nxt, "\\" + nxt))
        else:
            out.append(char)
    return "".join(out)


class SumsFile:
    """A sums file, read whole on first use (``load``); applied to entries.

    ``spec`` is a path, or ``ALGO:PATH`` to name the algorithm. It holds one
    dict item per line (about 200 bytes each): a sums file of a million
    lines costs about 200 MB, unlike a manifest, which is streamed.
    """

    def __init__(self, spec: StrPath) -> None:
        text = os.fspath(spec)
        algorithm, name = split_spec(text) if isinstance(spec, str) else (None, text)
        self.path = Path(name)
        self.algorithm = algorithm or name_hint(name)
        self._sums: dict[str, Checksum] | None = None

    def __repr__(self) -> str:
        return f"SumsFile({os.fspath(self.path)!r}, algorithm={self.algorithm!r})"

    def __getstate__(self) -> dict[str, Any]:  # a cluster worker reads it anew
        return {"path": self.path.resolve(), "algorithm": self.algorithm}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.algorithm, self._sums = state["path"], state["algorithm"], None

    def load(self) -> dict[str, Checksum]:
        """path -> checksum (its ``source`` naming FILE:LINE); read once.

        Raises
        ------
        ManifestError
            The file cannot be read, or a line is malformed (FILE:LINE: why).
        """
        if self._sums is not None:
            return self._sums
        source = os.fspath(self.path)
        sums: dict[str, Checksum] = {}
        try:
            with self.path.open(encoding="utf-8", newline="\n") as f:
                for number, text in enumerate(f, 1):
                    self._add(sums, text.lstrip("\ufeff"), source, number)
        except UnicodeDecodeError as exc:
            msg = f"not UTF-8 text: {exc}"
            raise ManifestError(msg, source=source) from None
        except OSError as exc:
            msg = f"cannot read: {exc.strerror or exc}"
            raise ManifestError(msg, source=source) from None
        self._sums = sums
        return sums

    def _add(
        self, sums: dict[str, Checksum], text: str, source: str, line: int
    ) -> None:
        try:
            found = parse_line(text, self.algorithm)
        except ValueError as exc:
            raise ManifestError(str(exc), source=source, line=line) from None
        if found is None:
            return
        path, checksum = found
        checksum = dataclasses.replace(checksum, source=f"{source}:{line}")
        old = sums.get(path)
        if old is not None and old != checksum:
            msg = f"{path!r} has another digest at {old.source}"
            raise ManifestError(msg, source=source, line=line)
        sums.setdefault(path, checksum)

    def conflict(self, entry: Entry) -> str | None:
        """Why ``entry``'s own checksum disagrees with this file's, if it does."""
        theirs = self.load().get(entry.path)
        ours = entry.checksum
        if theirs is None or ours is None or ours.algorithm != theirs.algorithm:
            return None
        if ours.hexdigest == theirs.hexdigest:
            return None
        return (
            f"checksum {ours} differs from {theirs} given for {entry.path!r} "
            f"at {theirs.source}; which one is right?"
        )

    def apply(self, entry: Entry) -> Entry:
        """``entry`` with this file's checksum, when it names it and it has none."""
        if entry.checksum is not None:
            return entry
        checksum = self.load().get(entry.path)
        if checksum is None:
            return entry
        return dataclasses.replace(entry, checksum=checksum)
