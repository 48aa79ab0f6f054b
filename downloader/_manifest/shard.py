"""Shards: one manifest split over N independent runs by a stable hash of each path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from .paths import path_key

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def shard_of(path: str, count: int) -> int:
    """The shard (0..count-1) that owns the output ``path``.

    blake2b-64 of the path as macOS and Windows store it (``fold``: Unicode
    NFC, case folded), modulo ``count``. It depends on nothing but the path,
    so every copy of a job array agrees whatever the manifest order; two
    entries for one path, or for paths only letter case tells apart, always
    meet in one shard, where the duplicate (or the warning) is caught and no
    two shards write one file of a case-insensitive shared filesystem. Never
    change it: shards run by two versions must still partition a manifest.
    """
    return path_key(path) % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count``: the entries whose path hashes to ``index``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            msg = (
                f"shard {self.index}/{self.count} does not exist: "
                f"want K/N with N >= 1 and 0 <= K < N (K counts from 0)"
            )
            raise ValueError(msg)

    @classmethod
    def parse(cls, text: ShardLike) -> Shard:
        """Accept ``"K/N"``, ``(K, N)`` or a ``Shard``.

        Raises
        ------
        ValueError
            Not of that form, or K is not in 0..N-1.
        """
        if isinstance(text, Shard):
            return text
        if isinstance(text, tuple):
            return cls(*text)
        match = _SPEC.match(text)
        if not match:
            msg = f"want a shard as K/N, e.g. 0/4 (the first of four), got {text!r}"
            raise ValueError(msg)
        return cls(int(match[1]), int(match[2]))

    def owns(self, path: str) -> bool:
        return self.count == 1 or shard_of(path, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ShardLike: TypeAlias = "str | tuple[int, int] | Shard"
