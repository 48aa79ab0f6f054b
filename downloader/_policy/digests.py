"""Digests a server sends (RFC 9530, x-goog-hash, x-amz-checksum-*): read, chosen.

Every parser here is forgiving: an unknown algorithm, a malformed value or a
digest of the wrong length is ignored (a header we cannot read promises
nothing), never an error. Only a well-formed digest is checked, and a
mismatch then fails the try like any checksum mismatch.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from .._integrity import Checksum
from .._models import Entry

# RFC 9530's registry names -> ours, with the digest's length in bytes.
# md5, sha (sha-1) and the checksums are "deprecated" there: not trusted.
_RFC9530 = {"sha-256": ("sha256", 32), "sha-512": ("sha512", 64)}
_BYTE_SEQUENCE = re.compile(r":([A-Za-z0-9+/]*={0,2}):")
_STRENGTH = {"md5": 1, "sha256": 2, "sha512": 3}
# Query parameters of a URL signed in its query (S3 SigV2/SigV4, GCS V4).
_SIGNED_QUERY = frozenset(
    {"x-amz-signature", "x-amz-credential", "signature", "awsaccesskeyid"}
    | {"x-goog-signature", "x-goog-credential"}
)
AMZ_CHECKSUM_MODE = "x-amz-checksum-mode"


@dataclass(frozen=True, slots=True)
class ServerDigest:
    """One digest a response carried, and what it covers."""

    algorithm: str  # ours: sha256, sha512, md5
    hexdigest: str
    header: str  # where it was read, to name in a mismatch
    whole: bool  # True: the whole file; False: only this response's body


def _decoded(text: str, size: int) -> str | None:
    """Base64 of ``size`` bytes -> lower-case hex; anything else -> None."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == size else None


def parse_digest_field(value: str, header: str, *, whole: bool) -> list[ServerDigest]:
    """An RFC 9530 ``Repr-Digest`` / ``Content-Digest`` dictionary, e.g.
    ``sha-256=:X48E9q...=:, sha-512=:...:``; parameters after ``;`` ignored."""
    found = []
    for member in value.split(","):
        key, _, rest = member.partition("=")
        algorithm = _RFC9530.get(key.strip().lower())
        match = _BYTE_SEQUENCE.fullmatch(rest.split(";", 1)[0].strip())
        if algorithm is None or match is None:
            continue
        hexdigest = _decoded(match[1], algorithm[1])
        if hexdigest is not None:
            found.append(ServerDigest(algorithm[0], hexdigest, header, whole))
    return found


def parse_goog_hash(value: str) -> list[ServerDigest]:
    """``x-goog-hash: crc32c=n03x6A==,md5=Ojk9c3dhfxgoKVVHYwFbHQ==``: the md5.

    crc32c is not read: the standard library has no CRC-32C, and md5 is
    there for every object not uploaded in parts.
    """
    found = []
    for member in value.split(","):
        key, _, rest = member.partition("=")
        if key.strip().lower() != "md5":
            continue
        hexdigest = _decoded(rest, 16)
        if hexdigest is not None:
            found.append(ServerDigest("md5", hexdigest, "x-goog-hash", True))
    return found


def parse_amz_sha256(value: str, checksum_type: str | None) -> list[ServerDigest]:
    """``x-amz-checksum-sha256``: base64 of the whole object's SHA-256.

    An object uploaded in parts carries a checksum of the parts' checksums
    (``...=-3``, or ``x-amz-checksum-type: COMPOSITE``): not the file's, ignored.
    """
    if (checksum_type or "").strip().upper() == "COMPOSITE":
        return []
    hexdigest = _decoded(value, 32)
    if hexdigest is None:
        return []
    return [ServerDigest("sha256", hexdigest, "x-amz-checksum-sha256", True)]


def _coding(values: Sequence[str]) -> str:
    codings = [c.strip().lower() for v in values for c in v.split(",")]
    return ",".join(c for c in codings if c and c != "identity") or "identity"


def server_digests(getall: Callable[[str], Sequence[str]]) -> tuple[ServerDigest, ...]:
    """Every digest in a response's headers (``getall(name)``: all its values).

    ``Content-Digest`` covers the body as sent: only without a content coding
    is that the file's bytes. ``x-goog-hash`` covers the object as stored: a
    GCS object stored gzip-encoded but served decoded (decompressive
    transcoding) carries the stored bytes' md5, so it is then ignored.
    """
    served = _coding(getall("Content-Encoding"))
    found: list[ServerDigest] = []
    for value in getall("Repr-Digest"):
        found += parse_digest_field(value, "Repr-Digest", whole=True)
    if served == "identity":
        for value in getall("Content-Digest"):
            found += parse_digest_field(value, "Content-Digest", whole=False)
    if _coding(getall("x-goog-stored-content-encoding")) == served:
        for value in getall("x-goog-hash"):
            found += parse_goog_hash(value)
    types = getall("x-amz-checksum-type")
    for value in getall("x-amz-checksum-sha256"):
        found += parse_amz_sha256(value, types[0] if types else None)
    return tuple(found)


def expected_digest(
    digests: Sequence[ServerDigest], *, whole_body: bool
) -> Checksum | None:
    """The strongest digest that covers the whole file, as a ``Checksum``.

    ``whole_body``: the response is a 200 carrying the whole file, so a digest
    of its body (``Content-Digest``) is one of the file; a 206 continuing a
    resume has only the whole-file ones (``Repr-Digest``...).
    """
    usable = [d for d in digests if d.whole or whole_body]
    if not usable:
        return None
    best = max(usable, key=lambda d: _STRENGTH.get(d.algorithm, 0))
    return Checksum(best.algorithm, best.hexdigest, source=f"the {best.header} header")


def with_server_digest(
    entry: Entry, digests: Sequence[ServerDigest], *, whole_body: bool
) -> Entry:
    """The entry as this try checks it: the manifest's checksum, else the server's.

    A checksum the user gave (in the manifest or a ``--checksums`` file) is
    the authority: bytes that match it are right whatever a header says, so
    the server's digests are checked only for entries without one.
    """
    if entry.checksum is not None:
        return entry
    checksum = expected_digest(digests, whole_body=whole_body)
    return entry if checksum is None else dataclasses.replace(entry, checksum=checksum)


def checksum_request(url: str, headers: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-checksum-mode: ENABLED`` for a request to S3 that may carry it.

    S3 sends ``x-amz-checksum-sha256`` only when asked. But an ``x-amz-*``
    header the signature does not cover makes S3 refuse a signed request (403
    "There were headers present in the request which were not signed"), so
    it is asked only of an S3 host (``*.amazonaws.com`` with an ``s3`` label),
    in a request signed neither in its query (presigned URLs) nor by an
    ``Authorization`` header, and not when the caller set the header itself.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host.endswith(".amazonaws.com"):
        return {}
    if not any(label.startswith("s3") for label in host.split(".")[:-2]):
        return {}
    names = {name.lower() for name in headers}
    if "authorization" in names or AMZ_CHECKSUM_MODE in names:
        return {}
    query = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if query & _SIGNED_QUERY:
        return {}
    return {AMZ_CHECKSUM_MODE: "ENABLED"}
