"""TLS: verified by default, --ca-bundle to trust a private CA, --insecure warns."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from downloader import Downloader
from downloader._http import tls as _tls
from downloader.testing import FileServer, make_bytes

from .conftest import file_sha256, sha256


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_origin(ca: trustme.CA) -> AsyncIterator[FileServer]:
    """A real HTTPS server on 127.0.0.1 whose certificate only ``ca`` vouches for."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = FileServer(files={"secret.bin": make_bytes(200_000, "tls")})
    await server.start(ssl_context=context)
    yield server
    await server.stop()


async def test_unknown_ca_is_refused_once_and_clearly(
    tls_origin: FileServer, tmp_path: Path
) -> None:
    async with Downloader(tmp_path, retries=3) as dl:
        report = await dl.download([tls_origin.url("secret.bin")])

    result = report.results[0]
    assert result.status == "failed"
    assert "TLS certificate rejected" in (result.error or "")
    assert result.attempts == 1  # a bad certificate is not retried
    assert not (tmp_path / "secret.bin").exists()
    assert tls_origin.log == []  # the handshake failed: no request was sent


async def test_ca_bundle_makes_the_private_ca_trusted(
    ca: trustme.CA, tls_origin: FileServer, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with Downloader(tmp_path / "d", ca_bundle=str(bundle)) as dl:
        report = await dl.download([tls_origin.url("secret.bin")])

    assert report.results[0].status == "downloaded", report.results[0].error
    data = tls_origin.files["secret.bin"]
    assert file_sha256(tmp_path / "d/secret.bin") == sha256(data)


async def test_insecure_works_and_warns_on_the_command_line(
    tls_origin: FileServer, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "downloader",
        "get",
        tls_origin.url("secret.bin"),
        "-d",
        str(tmp_path),
        "--insecure",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()

    assert proc.returncode == 0, err.decode()
    assert "--insecure: TLS certificates are NOT verified" in err.decode()
    data = tls_origin.files["secret.bin"]
    assert file_sha256(tmp_path / "secret.bin") == sha256(data)


async def _cli_get(url: str, dest: Path, env: dict[str, str]) -> tuple[int, str]:
    """``python -m downloader get URL``: the console path, with its fast start."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "downloader",
        "get",
        url,
        "-d",
        str(dest),
        "--retries",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await proc.communicate()
    return proc.returncode or 0, err.decode()


def _ca_env(cafile: Path) -> dict[str, str]:
    """The environment with ``cafile`` as the system's only trusted CAs."""
    env = dict(os.environ)
    env["SSL_CERT_FILE"] = str(cafile)
    env["SSL_CERT_DIR"] = str(cafile.parent / "no-such-dir")
    return env


async def test_command_line_trusts_the_cas_the_environment_names(
    ca: trustme.CA, tls_origin: FileServer, tmp_path: Path
) -> None:
    # The command line builds its context in a thread while aiohttp is imported
    # with SSL_CERT_FILE pointed away: the context must still see this file.
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    for attempt in range(3):  # a race would show on some runs, not all
        dest = tmp_path / f"d{attempt}"
        code, err = await _cli_get(tls_origin.url("secret.bin"), dest, _ca_env(bundle))
        assert code == 0, err
        data = tls_origin.files["secret.bin"]
        assert file_sha256(dest / "secret.bin") == sha256(data)


async def test_command_line_refuses_a_ca_the_environment_does_not_name(
    tls_origin: FileServer, tmp_path: Path
) -> None:
    other = trustme.CA()  # trusted instead: not the server's CA
    bundle = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(bundle))
    code, err = await _cli_get(
        tls_origin.url("secret.bin"), tmp_path / "d", _ca_env(bundle)
    )
    assert code == 1, err
    assert "TLS certificate rejected" in err
    assert not (tmp_path / "d" / "secret.bin").exists()
    assert tls_origin.log == []


def test_aiohttp_import_skips_its_ca_loading_and_restores_the_environment(
    ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    script = """
import asyncio, json, os, sys
from downloader._http import tls as _tls
_tls.start_default_context()
_tls.import_aiohttp_without_ca_loading()
import aiohttp.connector
ours = asyncio.run(_tls.default_context())
theirs = aiohttp.connector._SSL_CONTEXT_VERIFIED
print(json.dumps({
    "file": os.environ.get("SSL_CERT_FILE"),
    "dir": os.environ.get("SSL_CERT_DIR"),
    "aiohttp_cas": theirs.cert_store_stats()["x509_ca"],
    "our_cas": ours.cert_store_stats()["x509_ca"],
    "our_checks": ours.verify_mode == 2 and ours.check_hostname,
}))
"""
    env = dict(os.environ, SSL_CERT_FILE=str(bundle))
    env.pop("SSL_CERT_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["file"] == str(bundle)  # put back as it was...
    assert seen["dir"] is None  # ...and what was unset stays unset
    assert seen["aiohttp_cas"] == 0  # the unused import-time context read nothing
    assert seen["our_cas"] == 1  # ours read the bundle the environment names
    assert seen["our_checks"]  # certificate and host name both verified


async def test_a_caller_cancelled_while_the_context_builds_spoils_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The default context is built once per process; a caller cancelled while
    # it builds (a timeout, a failing TaskGroup) must not cancel it for others.
    monkeypatch.setattr(_tls, "_default", None)  # build afresh in this test
    first = asyncio.ensure_future(_tls.default_context())
    await asyncio.sleep(0)  # waiting on the build
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    context = await _tls.default_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.fixture
def hashed_ca_folder(ca: trustme.CA, tmp_path: Path) -> Path:
    """A folder OpenSSL can look ``ca`` up in (named by its subject hash)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to hash a CA folder")
    folder = tmp_path / "certs"
    folder.mkdir()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    subprocess.run(["openssl", "rehash", str(folder)], check=True)
    return folder


async def test_ssl_cert_dir_may_list_several_folders(
    hashed_ca_folder: Path, tls_origin: FileServer, tmp_path: Path
) -> None:
    # OpenSSL reads SSL_CERT_DIR as a ':'-separated list; so must our context.
    folder = hashed_ca_folder
    env = dict(os.environ)
    env["SSL_CERT_FILE"] = str(tmp_path / "no-such.pem")
    env["SSL_CERT_DIR"] = f"{tmp_path / 'no-such-dir'}:{folder}"
    code, err = await _cli_get(tls_origin.url("secret.bin"), tmp_path / "d", env)
    assert code == 0, err
    data = tls_origin.files["secret.bin"]
    assert file_sha256(tmp_path / "d" / "secret.bin") == sha256(data)
