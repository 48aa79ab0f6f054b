"""Type aliases shared across modules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeAlias

StrPath: TypeAlias = str | os.PathLike[str]
Headers: TypeAlias = Mapping[str, str]
