"""Manifests of relative paths: --base-url joined onto them, the path kept as given."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

BASE_HINT = "for a manifest of relative paths, give --base-url URL (base_url= in code)"


def check_base_url(text: str) -> str:
    """The base every relative manifest URL is joined onto, ending in ``/``.

    The base names a folder: ``https://h/v1`` and ``https://h/v1/`` both put
    ``a/b.bin`` at ``https://h/v1/a/b.bin``.

    Raises
    ------
    ValueError
        Not an http(s) URL with a host, or it has a query or a fragment.
    """
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        msg = f"malformed base URL {text!r}: {exc}"
        raise ValueError(msg) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        msg = f"base URL {text!r} must be http:// or https:// with a host"
        raise ValueError(msg)
    if parts.query or parts.fragment or text.strip().endswith(("?", "#")):
        msg = f"base URL {text!r} must not have a query or a fragment"
        raise ValueError(msg)
    return parts._replace(path=parts.path.rstrip("/") + "/").geturl()


def is_relative(url: object) -> bool:
    """A URL string without a scheme: ``crawl-data/x.warc.gz``, ``/x``, ``//h/x``."""
    if not isinstance(url, str) or not url.strip():
        return False
    try:
        return not urlsplit(url.strip()).scheme
    except ValueError:
        return False


def join(base: str, url: str) -> str:
    """``url`` on top of ``base`` (RFC 3986), or ``url`` itself when absolute."""
    return urljoin(base, url.strip()) if is_relative(url) else url


def relative_path(url: str) -> str:
    """The output path a relative URL gives: its path, folders kept, percent-decoded.

    The query and fragment are dropped, and so are leading slashes, so
    ``crawl-data/CC-MAIN-2024-10/x.warc.gz`` lands at that path under --dest.
    """
    return unquote(urlsplit(url.strip()).path).lstrip("/")


def with_base(item: Any, base: str) -> Any:
    """A raw manifest item with its relative URLs joined onto ``base``.

    An item that gives no path gets the relative path of its url. Absolute
    URLs, and items that are not entries at all (the full check refuses
    those), are left as they are.
    """
    if isinstance(item, str):
        item = {"url": item}
    if not isinstance(item, Mapping):
        return item
    url, mirrors = item.get("url"), _listed(item.get("mirrors"))
    relative_mirrors = mirrors is not None and any(map(is_relative, mirrors))
    if not (isinstance(url, str) and is_relative(url)) and not relative_mirrors:
        return item
    joined = dict(item)
    if isinstance(url, str) and is_relative(url):
        joined["url"] = join(base, url)
        if item.get("path") in (None, "") and (path := relative_path(url)):
            joined["path"] = path
    if relative_mirrors and mirrors is not None:
        joined["mirrors"] = [
            join(base, m) if isinstance(m, str) else m for m in mirrors
        ]
    return joined


def _listed(mirrors: Any) -> list[Any] | None:
    if isinstance(mirrors, str):
        return list(mirrors.split())
    return list(mirrors) if isinstance(mirrors, list | tuple) else None
