"""plan_entry: the one decision get, plan and verify make about what is on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from downloader import Checksum, Entry
from downloader._policy import DiskFacts, FinalFacts, Plan, plan_entry, plan_part

URL = "http://127.0.0.1:1/f.bin"
SUM = Checksum("sha256", "0" * 64)
ETAG = '"v1"'


@dataclass(frozen=True)
class State:
    url: str | None = URL
    validator: str | None = ETAG
    size: int | None = 1000
    segments: tuple[tuple[int, int, int], ...] | None = None


def entry(size: int | None = 1000, checksum: Checksum | None = None) -> Entry:
    return Entry(URL, "f.bin", size=size, checksum=checksum)


SPLIT = ((0, 300, 500), (500, 700, 1000))  # (start, saved, end)

CASES = [
    # -- the path or the final file decides
    ("blocked-path", DiskFacts(blocked="escapes --dest"), entry(), False,
     Plan("blocked", "escapes --dest")),
    ("final-is-a-folder", DiskFacts(FinalFacts(0, is_dir=True)), entry(), False,
     Plan("blocked", "a directory is in the way")),
    ("final-size-differs", DiskFacts(FinalFacts(999)), entry(), False,
     Plan("replace", "present but its size differs")),
    ("final-overwrite", DiskFacts(FinalFacts(1000)), entry(), True,
     Plan("replace", "present; --overwrite given")),
    ("final-needs-hashing", DiskFacts(FinalFacts(1000)), entry(checksum=SUM), False,
     Plan("hash", "present; only its checksum can tell")),
    ("final-hash-differs", DiskFacts(FinalFacts(1000, verified=False)),
     entry(checksum=SUM), False, Plan("replace", "present but its checksum differs")),
    ("final-verified", DiskFacts(FinalFacts(1000, verified=True)),
     entry(checksum=SUM), False, Plan("complete", "verified")),
    ("final-size-matches", DiskFacts(FinalFacts(1000)), entry(), False,
     Plan("complete", "size matches (no checksum to verify)")),
    ("final-no-size", DiskFacts(FinalFacts(5)), entry(size=None), False,
     Plan("complete", "present (no checksum to verify)")),
    ("final-wins-over-part", DiskFacts(FinalFacts(1000), 10, State()), entry(), False,
     Plan("complete", "size matches (no checksum to verify)")),
    # -- no final file: the .part decides
    ("no-part", DiskFacts(), entry(), False, Plan("new")),
    ("empty-part", DiskFacts(part_size=0, state=State()), entry(), False, Plan("new")),
    ("part-without-state", DiskFacts(part_size=10), entry(), False,
     Plan("restart", "10 bytes on disk cannot be trusted")),
    ("part-no-validator", DiskFacts(part_size=10, state=State(validator=None)),
     entry(), False, Plan("restart", "10 bytes on disk cannot be trusted")),
    ("part-checksum-instead", DiskFacts(part_size=10, state=State(validator=None)),
     entry(checksum=SUM), False, Plan("resume", "from byte 10", 10, 1000)),
    ("part-checksum-no-url",
     DiskFacts(part_size=10, state=State(url=None, validator=None)),
     entry(checksum=SUM), False, Plan("restart", "10 bytes on disk cannot be trusted")),
    ("part-resume", DiskFacts(part_size=400, state=State()), entry(), False,
     Plan("resume", "from byte 400", 400, 1000)),
    ("part-resume-size-unknown", DiskFacts(part_size=400, state=State(size=None)),
     entry(size=None), False, Plan("resume", "from byte 400", 400, None)),
    ("part-whole", DiskFacts(part_size=1000, state=State()), entry(), False,
     Plan("resume", "all 1,000 bytes on disk; published without a transfer",
          1000, 1000, "whole")),
    ("split-resume", DiskFacts(part_size=700, state=State(segments=SPLIT)), entry(),
     False, Plan("resume", "2 segments, 500 of 1,000 bytes held", 500, 1000, "split")),
    ("split-short-part", DiskFacts(part_size=600, state=State(segments=SPLIT)),
     entry(), False,
     Plan("restart", "the part (600 bytes) lacks bytes its saved segments claim")),
    ("split-longer-than-file",
     DiskFacts(part_size=1001, state=State(segments=SPLIT)), entry(), False,
     Plan("restart", "the part (1,001 bytes) lacks bytes its saved segments claim")),
    ("split-size-unknown",
     DiskFacts(part_size=700, state=State(size=None, segments=SPLIT)), entry(), False,
     Plan("restart", "the part (700 bytes) lacks bytes its saved segments claim")),
    ("split-untrusted",
     DiskFacts(part_size=700, state=State(validator=None, segments=SPLIT)), entry(),
     False, Plan("restart", "500 bytes on disk cannot be trusted")),
    ("split-overwrite-is-about-finals",
     DiskFacts(part_size=700, state=State(segments=SPLIT)), entry(), True,
     Plan("resume", "2 segments, 500 of 1,000 bytes held", 500, 1000, "split")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("facts", "item", "overwrite", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_plan_entry(
    facts: DiskFacts, item: Entry, overwrite: bool, expected: Plan
) -> None:
    assert plan_entry(facts, item, overwrite=overwrite) == expected


def test_plan_part_is_the_part_half_of_plan_entry() -> None:
    for _, facts, item, _, _ in CASES:
        if facts.final is None and facts.blocked is None:
            checksum = item.checksum is not None
            assert plan_part(facts.part_size, facts.state, checksum=checksum) == (
                plan_entry(facts, item)
            )


def test_get_plan_and_verify_all_ask_plan_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One rule: each command's decision goes through the same function."""
    import asyncio

    from downloader import _cli, _engine, _offline
    from downloader._engine import job

    asked: list[str] = []

    def spy(where: str) -> Any:
        def plan(*args: Any, **kwargs: Any) -> Plan:
            asked.append(where)
            return plan_entry(*args, **kwargs)

        return plan

    monkeypatch.setattr(job, "plan_entry", spy("get"))
    monkeypatch.setattr(_offline, "plan_entry", spy("offline"))
    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(f'{{"url": "{URL}", "path": "f.bin", "size": 1000}}\n')
    for command in ("plan", "verify"):
        assert _cli.main([command, "-i", str(manifest), "-d", str(tmp_path)]) == 0
    assert asked == ["offline", "offline"]

    async def get() -> None:
        async with _engine.Downloader(tmp_path) as dl:
            report = await dl.download([entry()])
        assert report.results[0].status == "skipped"  # no network needed

    asyncio.run(get())
    assert asked == ["offline", "offline", "get"]
