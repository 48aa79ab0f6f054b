"""Benchmark driver: fetch a URL list with pypdl (run by bench/run.py).

Usage: pypdl_get.py LIST OUT --conn N --segments N
LIST holds one ``URL<TAB>relative/path`` per line.  ``--segments 1`` turns
multi-segment download off.  Exit 1 if any file failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
from pathlib import Path

from pypdl import Pypdl


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("list", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--conn", type=int, default=16)
    ap.add_argument("--segments", type=int, default=1)
    args = ap.parse_args()
    tasks = []
    for line in args.list.read_text().splitlines():
        url, rel = line.split("\t")
        target = args.out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tasks.append({"url": url, "file_path": str(target)})
    dl = Pypdl(max_concurrent=args.conn)
    future = dl.start(
        tasks=tasks,
        multisegment=args.segments > 1,
        segments=max(args.segments, 1),
        retries=0,
        display=False,
        block=False,
    )
    # pypdl's blocking wait polls once a second (EFuture.result sleeps 1 s), which
    # would add up to 1 s to every run; wait on the inner future it polls instead.
    inner = getattr(getattr(future, "_future", None), "_future", None)
    if isinstance(inner, concurrent.futures.Future):
        concurrent.futures.wait([inner])
    future.result()
    for failed in dl.failed:
        print(f"pypdl: failed: {failed}", file=sys.stderr)
    return 1 if dl.failed or len(dl.success) != len(tasks) else 0


if __name__ == "__main__":
    sys.exit(main())
