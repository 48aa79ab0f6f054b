"""TLS: verified by default, --ca-bundle to trust a private CA, --insecure warns."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from downloader import Downloader
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
