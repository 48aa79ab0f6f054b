"""``python -m downloader`` runs the command line."""

from __future__ import annotations

from ._cli import console_main

# Guarded: worker processes started by spawn (Dask, multiprocessing) import this.
if __name__ == "__main__":
    raise SystemExit(console_main())
