"""Checksums: parsing ``ALGO:HEX`` and hashing bytes as they pass."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

ALGORITHMS: dict[str, int] = {  # name -> hex digest length
    "md5": 32,
    "sha1": 40,
    "sha256": 64,
    "sha512": 128,
    "blake2b": 128,
}
_HEX = re.compile(r"[0-9a-fA-F]+")
READ_BLOCK = 4 * 1024 * 1024


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Checksum:
    """An expected digest, e.g. ``Checksum("sha256", "ab12...")``.

    ``source`` says where the expected value came from when that is not the
    manifest (``"SHA256SUMS:12"``, ``"the Repr-Digest header"``), so a
    mismatch names it; it takes no part in comparisons.
    """

    algorithm: str
    hexdigest: str
    source: str | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str, *, algorithm: str | None = None) -> Checksum:
        """Parse ``ALGO:HEX`` (or bare hex for ``algorithm``; bare 64 hex = sha256).

        Raises
        ------
        ValueError
            The algorithm is unknown or the digest is not hex of the right length.
        """
        text = text.strip()
        if algorithm is None:
            if ":" in text:
                algorithm, _, text = text.partition(":")
            elif len(text) == ALGORITHMS["sha256"]:
                algorithm = "sha256"
            else:
                msg = f"checksum {text!r} needs an ALGO: prefix (e.g. sha256:...)"
                raise ValueError(msg)
        algorithm = algorithm.strip().lower()
        if algorithm not in ALGORITHMS:
            known = ", ".join(ALGORITHMS)
            msg = f"unsupported checksum algorithm {algorithm!r} (use {known})"
            raise ValueError(msg)
        digest = text.strip()
        if len(digest) != ALGORITHMS[algorithm] or not _HEX.fullmatch(digest):
            msg = (
                f"malformed {algorithm} checksum {digest!r}: want "
                f"{ALGORITHMS[algorithm]} hex digits"
            )
            raise ValueError(msg)
        return cls(algorithm, digest.lower())

    def hasher(self) -> Hasher:
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"

    def described(self) -> str:
        """``ALGO:HEX``, followed by ``(from SOURCE)`` when it has a source."""
        return f"{self} (from {self.source})" if self.source else str(self)

    def matches_file(self, path: Path) -> bool:
        """Does the file at ``path`` have this digest? Blocking: hashes it all."""
        return hash_file(path, self).hexdigest() == self.hexdigest


def hash_file(path: Path, checksum: Checksum, *, limit: int | None = None) -> Hasher:
    """Hash a file (or its first ``limit`` bytes); blocking, run it in a thread."""
    hasher = checksum.hasher()
    remaining = limit
    with path.open("rb") as f:
        while remaining is None or remaining > 0:
            want = READ_BLOCK if remaining is None else min(READ_BLOCK, remaining)
            block = f.read(want)
            if not block:
                break
            hasher.update(block)
            if remaining is not None:
                remaining -= len(block)
    return hasher


def hash_range(path: Path, hasher: Hasher, start: int, end: int) -> None:
    """Feed bytes [start, end) of a file to ``hasher``; blocking, run it in a thread."""
    with path.open("rb") as f:
        f.seek(start)
        remaining = end - start
        while remaining > 0:
            block = f.read(min(READ_BLOCK, remaining))
            if not block:
                msg = f"{path} ended at byte {end - remaining}, expected {end}"
                raise OSError(msg)
            hasher.update(block)
            remaining -= len(block)


class _Tee:
    """Feeds every byte to several hashers; its digest is the first one's."""

    def __init__(self, *hashers: Hasher) -> None:
        self._hashers = hashers

    def update(self, data: bytes | memoryview, /) -> None:
        for hasher in self._hashers:
            hasher.update(data)

    def hexdigest(self) -> str:
        return self._hashers[0].hexdigest()


class Digests:
    """The entry's hasher and, when a lock file wants it, a sha256 beside it.

    One pass over the bytes feeds both (``hasher``), so pinning a file in a
    lock file costs no second read. An entry whose checksum is sha256
    already is hashed once.
    """

    def __init__(self, checksum: Checksum | None, *, want_sha256: bool) -> None:
        self.checksum = checksum
        self._entry = checksum.hasher() if checksum is not None else None
        same = checksum is not None and checksum.algorithm == "sha256"
        self._sha256 = hashlib.sha256() if want_sha256 and not same else None
        self._want = want_sha256
        hashers = [h for h in (self._entry, self._sha256) if h is not None]
        self.hasher: Hasher | None = (
            _Tee(*hashers) if len(hashers) > 1 else (hashers[0] if hashers else None)
        )

    def entry_digest(self) -> str | None:
        """The digest to check against the entry's checksum (None: it has none)."""
        return self._entry.hexdigest() if self._entry is not None else None

    def sha256(self) -> str | None:
        """The sha256 of the bytes fed (None unless a lock file wants it)."""
        if not self._want:
            return None
        if self._sha256 is not None:
            return self._sha256.hexdigest()
        return self.entry_digest()


def sha256_file(path: Path) -> str:
    """The sha256 of a whole file; blocking, run it in a thread."""
    return hash_file(path, Checksum("sha256", "0" * 64)).hexdigest()
