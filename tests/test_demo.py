"""The offline demo: its bundled manifest and a real run of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from downloader._cli.demo import (
    DEMO_HOST,
    DEMO_PORT,
    bundled_manifest,
    demo_manifest_lines,
)

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_manifest_matches_generated_bytes_and_repo_copy() -> None:
    expected = "".join(
        line + "\n" for line in demo_manifest_lines(f"http://{DEMO_HOST}:{DEMO_PORT}")
    )
    assert bundled_manifest().read_text() == expected
    assert (ROOT / "manifests" / "demo.jsonl").read_text() == expected


def test_demo_runs_offline_and_verifies(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "downloader", "demo", "--keep", str(keep)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "10 of 10 files verified" in proc.stderr
    assert "resumed from their .part files" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(keep.rglob("*.part*"))
    # Independent re-check of the bytes against the manifest's checksums.
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "downloader",
            "verify",
            "-i",
            str(bundled_manifest()),
            "-d",
            str(keep),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verify: 10 ok, 0 bad" in verify.stderr
