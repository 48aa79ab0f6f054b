"""TLS client contexts, built beside the start-up instead of in front of it.

Reading the system CA bundle takes ~25-30 ms per context, and aiohttp reads it
twice while it is imported, for two default contexts. Our sessions never use
those: each is given its own context from here. So the command line builds its
one verifying context in a thread (OpenSSL releases the GIL while it reads the
bundle) during the aiohttp import, and points OpenSSL at no CA file while that
import builds the unused pair. Measured: ~50 ms off every ``downloader get``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import threading
from concurrent.futures import Future

_ALPN = ("http/1.1",)  # as aiohttp's own default contexts
_CA_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR")
_NO_SUCH_PATH = os.path.join(os.devnull, "none")  # can never exist: /dev/null is a file

_default: Future[ssl.SSLContext] | None = None
_default_lock = threading.Lock()


def verifying_context(
    cafile: str | None = None, capath: str | None = None
) -> ssl.SSLContext:
    """A certificate- and hostname-checking client context.

    With neither argument it trusts the platform's CAs (``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` honoured), as ``ssl.create_default_context()`` does.
    """
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    context.set_alpn_protocols(_ALPN)
    return context


def start_default_context() -> None:
    """Begin building the process's default context in a background thread."""
    _default_future()


async def default_context() -> ssl.SSLContext:
    """The process's default verifying context: built once, never on the loop."""
    return await asyncio.wrap_future(_default_future())


async def client_context(
    ca_bundle: str | None, insecure: bool
) -> ssl.SSLContext | bool:
    """What a session verifies with: False (insecure), a private CA, or the default."""
    if insecure:
        return False
    if ca_bundle:
        return await asyncio.to_thread(verifying_context, ca_bundle)
    return await default_context()


def import_aiohttp_without_ca_loading() -> None:
    """Import aiohttp with OpenSSL pointed at no CA file or directory.

    Only for a process that is ours alone (the command line): code in it that
    relied on aiohttp's default contexts would find them trusting nothing, so
    it fails closed. On Linux the environment is all those contexts read;
    elsewhere (system stores) the import is left as it is.
    """
    point_away = "aiohttp" not in sys.modules and sys.platform.startswith("linux")
    saved = {name: os.environ.get(name) for name in _CA_ENV}
    try:
        if point_away:
            os.environ.update(dict.fromkeys(_CA_ENV, _NO_SUCH_PATH))
        import aiohttp  # noqa: F401
    finally:
        if point_away:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _default_future() -> Future[ssl.SSLContext]:
    global _default
    with _default_lock:
        if _default is None:
            cafile, capath = _openssl_ca_locations()
            future: Future[ssl.SSLContext] = Future()
            # Running: a caller cancelled while waiting must not cancel it for all.
            future.set_running_or_notify_cancel()

            def build() -> None:
                try:
                    if not sys.platform.startswith("linux"):
                        context = verifying_context()  # system stores: env untouched
                    elif cafile or capath:
                        context = verifying_context(cafile, capath)
                    else:  # no CAs on this machine: trust nothing, as OpenSSL would
                        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                        context.set_alpn_protocols(_ALPN)
                    future.set_result(context)
                except BaseException as exc:  # handed to whoever awaits it
                    future.set_exception(exc)

            threading.Thread(target=build, name="downloader-tls", daemon=True).start()
            _default = future
        return _default


def _openssl_ca_locations() -> tuple[str | None, str | None]:
    """Where OpenSSL's defaults would look, read now, in the caller's thread.

    The builder thread must not read the environment while an import has it
    pointed away. As OpenSSL: ``SSL_CERT_FILE`` else its default file (used if it
    is a file), and ``SSL_CERT_DIR`` else its default folder, passed on as it is
    (OpenSSL reads it as a ``:``-separated list of folders).
    """
    paths = ssl.get_default_verify_paths()
    cafile = os.environ.get(paths.openssl_cafile_env, paths.openssl_cafile)
    capath = os.environ.get(paths.openssl_capath_env, paths.openssl_capath)
    return (cafile if cafile and os.path.isfile(cafile) else None), (capath or None)


def _forget_in_child() -> None:
    """After fork: the builder thread is gone; build afresh if it was not done."""
    global _default, _default_lock
    _default_lock = threading.Lock()
    if _default is not None and not _default.done():
        _default = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
