"""Where an entry's bytes live (final, .part, .part.state), inside --dest."""

from __future__ import annotations

import os
from pathlib import Path

from .._exceptions import StorageError


class FilePaths:
    """Where one entry's bytes live: the final name and what lives beside it.

    The hot path uses the names as strings (``final_name``, ``part_name``);
    the ``Path`` objects are made on first use: a bulk run would otherwise
    build three per file, about as costly as the file's own system calls.
    """

    __slots__ = ("_final", "_part", "_state", "final_name", "part_name")

    def __init__(self, final: Path | str) -> None:
        # The longest name beside a file, FINAL.part.state.tmp, is what
        # _portable.SIDECAR reserves room for: a longer one must update it.
        self.final_name = os.fspath(final)
        self.part_name = self.final_name + ".part"
        self._final = final if isinstance(final, Path) else None
        self._part: Path | None = None
        self._state: Path | None = None

    @property
    def final(self) -> Path:
        if self._final is None:
            self._final = Path(self.final_name)
        return self._final

    @property
    def part(self) -> Path:
        if self._part is None:
            self._part = Path(self.part_name)
        return self._part

    @property
    def state(self) -> Path:
        if self._state is None:
            self._state = Path(self.final_name + ".part.state")
        return self._state

    @property
    def folder_name(self) -> str:
        return os.path.dirname(self.final_name) or "."

    def __repr__(self) -> str:
        return f"FilePaths({self.final_name!r})"

    @classmethod
    def of(cls, dest: Path, relative: str) -> FilePaths:
        """The paths for ``relative`` (normalised) under ``dest``; no system calls."""
        base = os.fspath(dest)
        return cls(relative if base == "." else os.path.join(base, relative))

    @classmethod
    def under(
        cls, dest: Path, relative: str, inside: InsideCheck | None = None
    ) -> FilePaths:
        """Paths for ``relative`` under ``dest``, refusing to leave ``dest``.

        Raises
        ------
        StorageError
            The path would resolve outside ``dest`` (for example via a symlink).
        """
        try:
            (inside or InsideCheck(dest))(relative)
        except ValueError as exc:
            raise StorageError(str(exc)) from None
        return cls.of(dest, relative)


class InsideCheck:
    """Rejects paths that would land outside ``dest`` through a symlink.

    Remembers the folders it has seen (up to ``limit``), so millions of entries
    in a few folders cost a few ``resolve`` calls.
    """

    def __init__(self, dest: Path, limit: int = 100_000) -> None:
        self.root = dest.resolve()
        self.dest = dest
        self.limit = limit
        self._ok: set[str] = set()

    def __call__(self, relative: str) -> None:
        parent = relative.rpartition("/")[0]
        if parent in self._ok:
            return
        resolved = (self.dest / parent).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            msg = f"path {relative!r} would land outside {self.dest} (via a symlink)"
            raise ValueError(msg)
        if len(self._ok) >= self.limit:
            self._ok.clear()
        self._ok.add(parent)
