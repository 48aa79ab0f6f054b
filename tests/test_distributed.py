"""Shards on a real Dask LocalCluster (worker processes) against a real server."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from downloader._settings import Settings
from downloader.distributed import ClusterRun, download_on_cluster
from downloader.testing import Faults, FileServer, make_bytes
from tests.conftest import REPORT_FIELDS, file_sha256, sha256

distributed = pytest.importorskip("distributed")

pytestmark = [
    # Dask's own shutdown may warn about closed streams; not ours to fail on.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def local_cluster(workers: int = 2) -> Any:
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=50,
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Two worker processes shared by this module's tests; yields the address."""
    with local_cluster() as running:
        yield running.scheduler_address


async def serve(
    aiohttp_server: Any, files: dict[str, bytes], *, rate: float | None = None
) -> FileServer:
    """Serve ``files``, each at ``rate`` bytes/s per connection if given."""
    faults = {} if rate is None else {name: Faults(rate=rate) for name in files}
    server = FileServer(files=files, faults=faults)
    test_server = await aiohttp_server(server.app())
    server.base_url = str(test_server.make_url("")).rstrip("/")
    return server


def write_manifest(path: Path, server: FileServer, *, sized: bool = True) -> Path:
    lines = [
        {
            "url": server.url(name),
            "path": f"set/{name}",
            "sha256": sha256(data),
            **({"size": len(data)} if sized else {}),
        }
        for name, data in server.files.items()
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def assert_all_correct(dest: Path, server: FileServer) -> None:
    for name, data in server.files.items():
        assert file_sha256(dest / "set" / name) == sha256(data), name
    leftovers = [p.name for p in dest.rglob("*") if ".part" in p.name]
    assert leftovers == []


async def test_cluster_run_is_byte_identical_and_the_report_matches_disk(
    aiohttp_server: Any, tmp_path: Path, cluster: str
) -> None:
    files = {f"f{i:03d}.bin": make_bytes(5_000 + 997 * i, i) for i in range(40)}
    files["big.bin"] = make_bytes(3_000_000, "big")  # splits into ranged segments
    server = await serve(aiohttp_server, files)
    manifest = write_manifest(tmp_path / "m.jsonl", server)
    dest = tmp_path / "data"

    report = await asyncio.to_thread(
        download_on_cluster,
        manifest,
        dest,
        cluster=cluster,
        jobs=4,
        min_split_size=512 * 1024,
    )

    assert_all_correct(dest, server)
    assert report.ok
    assert sorted(r.path for r in report.results) == sorted(f"set/{n}" for n in files)
    for result in report.results:
        on_disk = dest / result.path
        assert result.status == "downloaded"
        assert result.size == on_disk.stat().st_size == result.bytes
        assert result.checksum == "sha256:" + file_sha256(on_disk)
    summary = report.summary.to_dict()
    assert summary["files"] == summary["downloaded"] == len(files)
    assert summary["bytes"] == sum(len(d) for d in files.values())
    for name, data in files.items():  # each fetched once, by one shard
        if name != "big.bin":  # (its first answer is cut short when it splits)
            assert server.bytes_sent(name) == len(data)

    again = await asyncio.to_thread(
        download_on_cluster, manifest, dest, cluster=cluster
    )
    assert {r.status for r in again.results} == {"skipped"}
    assert len(again.results) == len(files)


async def test_progress_from_the_workers_adds_up(
    aiohttp_server: Any, tmp_path: Path, cluster: str
) -> None:
    files = {f"p{i}.bin": make_bytes(40_000, i) for i in range(12)}
    files["gone.bin"] = b"x"
    server = await serve(aiohttp_server, files)
    manifest = write_manifest(tmp_path / "m.jsonl", server)
    server.faults["gone.bin"] = Faults(fail_status=404, fail_times=99)
    updates: list[Any] = []

    def run() -> Any:  # through a client that is not Dask's default one
        with distributed.Client(cluster, set_as_default=False) as client:
            return download_on_cluster(
                manifest,
                tmp_path / "d",
                cluster=client,
                retries=0,
                on_progress=updates.append,
            )

    report = await asyncio.to_thread(run)

    assert report.summary.counts["failed"] == 1
    assert sum(u.finished for u in updates) == len(files)
    assert sum(u.bytes for u in updates) == 12 * 40_000
    assert sum(u.dropped for u in updates) == 1  # the failed file's size
    failed = [line for u in updates for line in u.failed]
    assert len(failed) == 1
    assert "gone.bin" in failed[0]
    assert "404" in failed[0]
    assert updates[-1].shards_done == updates[-1].shards


async def test_a_shard_that_cannot_run_fails_its_entries_clearly(
    aiohttp_server: Any, tmp_path: Path, cluster: str
) -> None:
    server = await serve(aiohttp_server, {"a.bin": b"a" * 100, "b.bin": b"b" * 100})
    manifest = write_manifest(tmp_path / "m.jsonl", server)
    (tmp_path / "d" / "set").mkdir(parents=True)
    (tmp_path / "d" / "set" / "b.bin").write_bytes(b"b" * 100)  # done before the loss

    def broken() -> None:
        msg = "worker disk gone"
        raise OSError(msg)

    def run_checks() -> list[Any]:
        with ClusterRun(manifest, tmp_path / "d", cluster=cluster) as run:
            assert run.client is not None
            future = run.client.submit(broken, pure=False)
            distributed.wait(future)
            from downloader._manifest.shard import Shard

            return list(run._shard_results(future, Shard(0, 1), Settings()))

    results = await asyncio.to_thread(run_checks)

    by_path = {r.path: r for r in results}
    assert sorted(by_path) == ["set/a.bin", "set/b.bin"]
    assert by_path["set/b.bin"].status == "skipped"  # the report matches the disk
    failed = by_path["set/a.bin"]
    assert failed.status == "failed"
    assert failed.error is not None
    assert "shard 0/1 did not finish" in failed.error
    assert "OSError: worker disk gone" in failed.error
    assert "rerun to resume" in failed.error


async def test_killing_a_worker_mid_run_still_ends_correct(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    # Over 1 MiB each, so a file cut short keeps its .part for the rerun.
    files = {f"k{i:02d}.bin": make_bytes(1_500_000, i) for i in range(10)}
    server = await serve(aiohttp_server, files, rate=1_500_000)  # about 1 s per file
    manifest = write_manifest(tmp_path / "m.jsonl", server)
    total = sum(len(d) for d in files.values())
    dest = tmp_path / "data"
    updates: list[Any] = []

    with local_cluster() as running:
        with distributed.Client(running) as client:
            pids = list(client.run(os.getpid).values())
        run = asyncio.create_task(
            asyncio.to_thread(
                download_on_cluster,
                manifest,
                dest,
                cluster=running.scheduler_address,
                jobs=4,
                retry_wait=0.05,
                on_progress=updates.append,
            )
        )
        while server.bytes_sent() < total * 0.3:
            assert not run.done(), "finished before the kill"
            await asyncio.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)
        report = await asyncio.wait_for(run, 120)

    assert_all_correct(dest, server)
    assert report.ok, [r.error for r in report.failed]
    assert len(report.results) == len(files)
    resumed = [r for r in server.log if r.method == "GET" and "Range" in r.headers]
    assert resumed, "the rerun shard should have resumed a .part"
    print(f"killed a worker at 30%: {server.bytes_sent() / total:.2f}x the bytes")
    assert server.bytes_sent() < 1.3 * total
    # The rerun replaced the lost attempt's figures: nothing counted twice.
    assert sum(u.finished for u in updates) == len(files)
    assert sum(u.bytes for u in updates) + sum(u.dropped for u in updates) == total
    running_bytes = itertools.accumulate(u.bytes for u in updates)
    assert max(running_bytes) <= total


def test_cli_local_cluster_writes_the_usual_report(tmp_path: Path) -> None:
    # The real command line: its own LocalCluster, stderr not a terminal.
    files = {f"c{i}.bin": make_bytes(30_000, i) for i in range(10)}
    server = FileServer(files=files)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server.start())
    manifest = write_manifest(tmp_path / "m.jsonl", server)
    report_path = tmp_path / "report.json"
    command = [sys.executable, "-m", "downloader", "get", "-i", str(manifest)]
    command += ["-d", str(tmp_path / "data"), "--cluster", "local:2"]
    command += ["--report", str(report_path)]
    try:
        proc = loop.run_until_complete(_run(command))
    finally:
        loop.run_until_complete(server.stop())
        loop.close()

    code, err = proc
    assert code == 0, err
    assert_all_correct(tmp_path / "data", server)
    lines = err.splitlines()
    assert sum(line.startswith("downloaded ") for line in lines) == len(files)
    assert lines[-1].startswith("10 downloaded, 0 skipped, 0 failed")
    assert "Traceback" not in err, err
    report = json.loads(report_path.read_text())
    assert set(report) == {"results", "summary"}
    assert report["summary"]["downloaded"] == len(files)
    assert set(report["results"][0]) == REPORT_FIELDS


async def _run(command: list[str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--cluster", "local:0"], "want local:N"),
        (["--cluster", "4"], "want local:N"),
        (["--cluster", "local:2", "--shard", "0/2"], "give one or the other"),
    ],
)
def test_cluster_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    from downloader import _cli

    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"url": "http://127.0.0.1:9/a"}\n')
    try:
        code = _cli.main(["get", "-i", str(manifest), *args])
    except SystemExit as stop:
        code = stop.code  # type: ignore[assignment]
    assert code == 2
    assert said in capsys.readouterr().err


def test_cluster_errors_say_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask

    from downloader import _cli

    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"url": "http://127.0.0.1:9/a"}\n')
    get = ["get", "-i", str(manifest), "-d", str(tmp_path / "d")]

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert _cli.main([*get, "--cluster", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "--cluster tcp://127.0.0.1:9: cannot reach the Dask scheduler" in err

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert _cli.main([*get, "--cluster", "local:2"]) == 2
    assert "pip install 'downloader[dask]'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing was transferred


@pytest.mark.parametrize(
    ("signum", "group"),
    [
        (signal.SIGINT, True),  # Ctrl-C in a terminal: every process of the group
        (signal.SIGTERM, True),  # scancel, a service manager
        (signal.SIGTERM, False),  # kill PID, a container's PID 1: the client only
    ],
)
async def test_cli_cluster_stops_cleanly_and_resumes(
    aiohttp_server: Any, tmp_path: Path, signum: signal.Signals, group: bool
) -> None:
    # Over 1 MiB each, so files in flight keep a .part (smaller ones are
    # fetched in one go and, cut short, start again).
    files = {f"s{i:02d}.bin": make_bytes(1_500_000, i) for i in range(8)}
    server = await serve(aiohttp_server, files, rate=1_500_000)
    manifest = write_manifest(tmp_path / "m.jsonl", server)
    total = sum(len(d) for d in files.values())
    command = [sys.executable, "-m", "downloader", "get", "-i", str(manifest)]
    command += ["-d", str(tmp_path / "data"), "--cluster", "local:2", "-j", "4"]

    proc = await asyncio.create_subprocess_exec(
        *command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        while server.bytes_sent() < total * 0.3:
            assert proc.returncode is None, "finished before the signal"
            await asyncio.sleep(0.05)
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        _, err = await asyncio.wait_for(proc.communicate(), 30)

    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = err.decode()
    sent_at_stop = server.bytes_sent()
    await asyncio.sleep(2.5)  # two stop polls: a shard left running would show
    assert server.bytes_sent() == sent_at_stop, "downloads went on after the stop"
    assert sent_at_stop < total
    assert proc.returncode == 128 + signum, text
    assert f"stopped by {signum.name}" in text
    assert "Traceback" not in text
    assert "Run the same command again to resume" in text

    code, text = await _run(command)
    assert code == 0, text
    assert_all_correct(tmp_path / "data", server)
    assert server.bytes_sent() < 1.3 * total


async def test_cli_uses_a_running_scheduler(
    aiohttp_server: Any, tmp_path: Path, cluster: str
) -> None:
    files = {f"t{i}.bin": make_bytes(20_000, i) for i in range(6)}
    server = await serve(aiohttp_server, files)
    manifest = write_manifest(tmp_path / "m.jsonl", server)
    command = [sys.executable, "-m", "downloader", "get", "-i", str(manifest), "-q"]
    command += ["-d", str(tmp_path / "data"), "--cluster", cluster]

    code, err = await _run(command)

    assert code == 0, err
    assert err == ""  # -q: nothing to say when all went well
    assert_all_correct(tmp_path / "data", server)


async def test_leaving_a_run_early_stops_its_running_shards(
    aiohttp_server: Any, tmp_path: Path, cluster: str
) -> None:
    # The cluster lives on (as a tcp:// one would): only the stop flag can
    # end shards that are mid-file. Unstopped, these would run for 20 s.
    files = {f"slow{i}.bin": make_bytes(4_000_000, i) for i in range(4)}
    server = await serve(aiohttp_server, files, rate=200_000)
    manifest = write_manifest(tmp_path / "m.jsonl", server)

    class Leave(Exception):
        pass

    moved = [0]

    def follow(update: Any) -> None:
        moved[0] += update.bytes
        if moved[0] > 500_000:
            raise Leave

    def run() -> None:
        with (
            ClusterRun(manifest, tmp_path / "d", cluster=cluster) as running,
            pytest.raises(Leave),
        ):
            for _ in running.results({"jobs": 4}, on_progress=follow):
                pass

    await asyncio.to_thread(run)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    previous = -1
    while server.bytes_sent() != previous:  # still moving: wait for it to settle
        assert loop.time() < deadline, "shards kept downloading after the run ended"
        previous = server.bytes_sent()
        await asyncio.sleep(2.0)  # two stop polls
    assert previous < 0.5 * sum(len(d) for d in files.values())
