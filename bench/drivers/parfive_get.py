"""Benchmark driver: fetch a URL list with parfive (run by bench/run.py).

Usage: parfive_get.py LIST OUT --conn N --splits N
LIST holds one ``URL<TAB>relative/path`` per line.  Exit 1 if any file failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from parfive import Downloader


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("list", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--conn", type=int, default=16)
    ap.add_argument("--splits", type=int, default=1)
    args = ap.parse_args()
    dl = Downloader(max_conn=args.conn, max_splits=args.splits, progress=False)
    for line in args.list.read_text().splitlines():
        url, rel = line.split("\t")
        target = args.out / rel
        dl.enqueue_file(url, path=target.parent, filename=target.name)
    results = dl.download()
    for err in results.errors:
        print(f"parfive: {err.url}: {err.exception!r}", file=sys.stderr)
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
