"""Manifests and entries given in code -> checked entries, lazily; no disk, no network.

- ``formats.py``  readers (JSON Lines, CSV/TSV, JSON, URL lists) -> rows; iter_manifest
- ``compressed.py`` .gz, .xz, .bz2, .zst manifests read through, damage as FILE:LINE
- ``parquet.py``  parquet manifests (pyarrow), a batch of rows at a time
- ``relative.py`` --base-url: relative manifest URLs joined, their paths kept
- ``fields.py``   entry_from_fields and its validators, coerce_entries, quick_path
- ``paths.py``    check_path, names for every filesystem, fold, path_key (one digest)
- ``check.py``    the check pass: no repeated path, portability warnings, ManifestStats
- ``sources.py``  Sources: manifest files plus entries given in code, checked, then read
- ``shard.py``    Shard, shard_of: one manifest split over N runs by a hash of each path
- ``sums.py``     SumsFile: a sha256sum/md5sum/b2sum file, path -> expected digest

Imports run downwards: this wing imports ``_exceptions``, ``_integrity``,
``_models``, ``_types`` and its own files only.
"""

from __future__ import annotations

from .check import (
    MAX_WARNINGS_SHOWN,
    check_entries,
    check_manifests,
    check_manifests_stats,
)
from .fields import (
    coerce_entries,
    entry_from_fields,
    quick_path,
)
from .formats import (
    FORMATS,
    READERS,
    format_for,
    iter_manifest,
    spool_stdin,
)
from .parquet import PARQUET_HINT
from .paths import (
    NAME_MAX,
    PATH_MAX,
    SIDECAR,
    check_path,
    fold,
    length_problem,
    part_problem,
    path_key,
    windows_problem,
)
from .relative import (
    check_base_url,
)
from .shard import (
    Shard,
    ShardLike,
    shard_of,
)
from .sources import (
    EntriesLike,
    Sources,
    looks_like_url,
)
from .sums import SumsFile

__all__ = [
    "FORMATS",
    "MAX_WARNINGS_SHOWN",
    "NAME_MAX",
    "PARQUET_HINT",
    "PATH_MAX",
    "READERS",
    "SIDECAR",
    "EntriesLike",
    "Shard",
    "ShardLike",
    "Sources",
    "SumsFile",
    "check_base_url",
    "check_entries",
    "check_manifests",
    "check_manifests_stats",
    "check_path",
    "coerce_entries",
    "entry_from_fields",
    "fold",
    "format_for",
    "iter_manifest",
    "length_problem",
    "looks_like_url",
    "part_problem",
    "path_key",
    "quick_path",
    "shard_of",
    "spool_stdin",
    "windows_problem",
]
