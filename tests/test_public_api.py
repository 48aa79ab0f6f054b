"""The public surface: a sorted, complete ``__all__``, docstrings, ``--version``."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest

import downloader

PUBLIC = [name for name in downloader.__all__ if not name.startswith("_")]


def test_all_is_sorted() -> None:
    assert downloader.__all__ == sorted(downloader.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(downloader.__all__) == len(set(downloader.__all__))


@pytest.mark.parametrize("name", downloader.__all__)
def test_every_name_in_all_exists(name: str) -> None:
    assert hasattr(downloader, name)


def test_all_is_complete() -> None:
    exported = {
        name
        for name, value in vars(downloader).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__ import annotations
    }
    assert exported <= set(downloader.__all__)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_have_docstrings(name: str) -> None:
    obj = getattr(downloader, name)
    assert inspect.isclass(obj) or inspect.isfunction(obj)
    doc = inspect.getdoc(obj)
    assert doc
    assert doc.strip().splitlines()[0].strip()


def test_package_has_docstring() -> None:
    assert inspect.getdoc(downloader)


def test_version_is_a_string() -> None:
    assert isinstance(downloader.__version__, str)
    assert downloader.__version__.count(".") >= 1


def test_python_m_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "downloader", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == downloader.__version__


def test_commands_off_the_network_never_import_aiohttp(tmp_path: Path) -> None:
    # plan, verify and --help skip aiohttp's ~150 ms import; fetching loads it.
    manifest = tmp_path / "m.txt"
    manifest.write_text("http://127.0.0.1:9/a.bin\n")
    script = f"""
import contextlib, io, sys
from downloader._cli import main
for argv in (["plan", "-i", {str(manifest)!r}, "-d", {str(tmp_path)!r}],
             ["verify", "-i", {str(manifest)!r}, "-d", {str(tmp_path)!r}],
             ["--help"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(argv)
print("aiohttp" in sys.modules)
import downloader
print(downloader.Downloader.__name__, "aiohttp" in sys.modules)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert proc.stdout.split("\n")[:2] == ["False", "Downloader True"], proc.stderr
