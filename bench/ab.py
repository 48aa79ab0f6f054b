"""A/B runs of one file against the bench's private nginx: medians, in one run.

For questions the scenarios do not ask (a flag against another, a disk
instead of tmpfs, when the first request leaves). Commands are templates with
{url} and {out}; they run in turn, the order alternating each round, and
every output is checked by sha256.

  python bench/ab.py "downloader get {url} -d {out} -q" \\
                     "downloader get {url} -d {out} -q -s 1"
  python bench/ab.py --out /var/tmp/ab "downloader get {url} -d {out} -q" \\
                     "curl -s -o {out}/ab.bin {url}"          # a real disk
  python bench/ab.py --throttled --size 1M "downloader get {url} -d {out} -q"
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import MiB, Nginx, child_env, request_spans, sha256, write_random


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("commands", nargs="+", help="templates with {url} and {out}")
    ap.add_argument("--size", default="1024M", help="file size, e.g. 256M (1024M)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--throttled", action="store_true", help="16 MiB/s per request")
    ap.add_argument("--out", type=Path, help="output folder (default: on tmpfs)")
    args = ap.parse_args()
    size = int(args.size.rstrip("M")) * MiB
    root = Path(tempfile.mkdtemp(prefix="dl-ab-", dir="/dev/shm"))
    out = args.out or root / "out"
    nginx = Nginx(root / "data", root / "nginx")
    results: dict[str, list[tuple[float, float, float | None]]] = {
        c: [] for c in args.commands
    }
    try:
        (root / "nginx").mkdir()
        _, digest = write_random(root / "data" / "ab.bin", size, seed=size)
        root.chmod(0o755)
        (root / "data").chmod(0o755)
        nginx.start()
        port = nginx.throttled if args.throttled else nginx.plain
        url = f"http://127.0.0.1:{port}/ab.bin"
        for rnd in range(args.rounds):
            order = args.commands if rnd % 2 == 0 else args.commands[::-1]
            for template in order:
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                subprocess.run(["sync"], check=False)
                argv = shlex.split(template.format(url=url, out=out))
                nginx.timing_log.write_bytes(b"")
                began, before = time.time(), os.times()
                subprocess.run(argv, check=True, env=child_env())
                wall, after = time.time() - began, os.times()
                cpu = after.children_user + after.children_system
                cpu -= before.children_user + before.children_system
                got = next((p for p in out.rglob("*") if p.is_file()), None)
                if got is None or sha256(got) != digest:
                    sys.exit(f"wrong or missing output from: {template}")
                first = _first_request(nginx.timing_log, began)
                results[template].append((wall, cpu, first))
    finally:
        nginx.stop()
        shutil.rmtree(root, ignore_errors=True)
        if args.out:
            shutil.rmtree(out, ignore_errors=True)
    for template, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        line = f"{wall:6.2f} s  {size / MiB / wall:6.0f} MiB/s  CPU {cpu:5.2f} s"
        firsts = [r[2] for r in runs if r[2] is not None]
        if firsts:
            line += f"  first request +{statistics.median(firsts) * 1000:.0f} ms"
        print(f"{line}  {template}")
    return 0


def _first_request(log: Path, began: float) -> float | None:
    """Seconds from the start to the first request nginx logged (throttled only)."""
    spans = request_spans(log)
    return min(start for start, _ in spans) - began if spans else None


if __name__ == "__main__":
    sys.exit(main())
