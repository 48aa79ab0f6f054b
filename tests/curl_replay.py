"""Replay curl's HTTP test replies (``tests/data/testNUM``) byte for byte.

A reading of curl's test format (``tests/FILEFORMAT.md``) kept as close to
curl's own harness as the corpus needs, so the bytes on the wire are the bytes
curl was tested against:

- ``preprocess`` is runtests' ``prepro`` (``tests/runner.pm``): variables,
  ``%CR``-style characters, ``%hex[]hex%``, ``%repeat[N x S]%``, ``%b64[]b64%``
  and the ``crlf="headers"`` / ``crlf="yes"`` line rewriting of ``subnewlines``
  (``tests/testutil.pm``), line by line and in the same order.
- ``sws_part`` is the test server's ``getpart`` (``tests/server/getpart.c``):
  the bytes of ``<reply><dataN>`` it sends, ``nonewline`` dropping the last.
- ``ReplayServer`` routes a request as sws (``tests/server/sws.c``) does: the
  number after the request target's last ``/`` picks the test; over 10000 it
  is ``test * 10000 + part`` and ``part`` picks ``<dataPART>``; after a reply
  holding ``swsbounce`` the next request for the same test gets the next part.
  It writes the part and closes the connection (sws keeps some alive; closing
  is what every reply here tolerates and keeps the framing unambiguous).
- ``parse_response`` / ``message_body`` frame a reply as curl does, to say
  which bytes a complete transfer delivers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

HOSTIP = "127.0.0.1"
CURL_VERSION = "8.99.0"  # %VERSION: only in request checks, never in replies
HEAD_LIMIT = 64 * 1024  # a request head larger than this is not one of ours
READ_HEAD_TIMEOUT = 15.0
SWS_PIECE = 20  # sws writes at most 20 bytes per send()

_HEX_PAIR = re.compile(rb"%([0-9A-Fa-f]{2})")
_B64 = re.compile(rb"%b64\[(.*?)\]b64%", re.IGNORECASE)
_HEX = re.compile(rb"%hex\[(.*?)\]hex%", re.IGNORECASE)
_REPEAT = re.compile(rb"%repeat\[(\d+) x (.*?)\]%", re.IGNORECASE)
_PART_TAG = re.compile(rb"^ *<(data|connect)(.*)>")
_PART_END = re.compile(rb"^ *</(data|connect)")
_STATUS_LINE = re.compile(rb"HTTP/(1.1|1.0|2|3) ([1-5]|9)[^\r]*\Z")
_REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|DELETE|CONNECT) \S+ HTTP/\d+(\.\d+)?")
_RTSP_LINE = re.compile(
    rb"(SETUP|GET_PARAMETER|OPTIONS|ANNOUNCE|DESCRIBE) \S+ RTSP/\d+(\.\d+)?"
)
_HEADER_LINE = re.compile(rb"[a-z0-9_-]+: [^\r]*\Z", re.IGNORECASE)
_CURL_ERROR = re.compile(rb"curl: \(\d+\) ")
_CRLF_ONCE = re.compile(rb"\r*\n")
_ATTR = re.compile(rb"""([A-Za-z0-9_-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_SPACE = b" \t\r\n\v\f"


def split_lines(data: bytes) -> list[bytes]:
    """Lines with their ``\\n`` kept, as Perl's ``<FH>`` and C's fgets read them."""
    lines = data.split(b"\n")
    tail = lines.pop()
    out = [line + b"\n" for line in lines]
    if tail:
        out.append(tail)
    return out


def _unhex(data: bytes) -> bytes:
    return _HEX_PAIR.sub(lambda m: bytes([int(m[1], 16)]), data)


# -- runtests' preprocessing --------------------------------------------------


class _NewLines:
    """``subnewlines``: CRLF for HTTP-looking lines, state across lines as in Perl."""

    def __init__(self) -> None:
        self.prev_update = False

    def __call__(self, line: bytes, force: bool) -> bytes:
        if force:
            return _CRLF_ONCE.sub(b"\r\n", line, count=1)
        if (
            _STATUS_LINE.match(line)
            or _REQUEST_LINE.match(line)
            or _RTSP_LINE.match(line)
            or (_HEADER_LINE.match(line) and not _CURL_ERROR.match(line))
        ):
            self.prev_update = True
            return _CRLF_ONCE.sub(b"\r\n", line, count=1)
        if line == b"\n" and self.prev_update:
            line = b"\r\n"
        self.prev_update = False
        return line


def _substitute(line: bytes, variables: dict[bytes, bytes]) -> bytes:
    """``subvariables``, ``subchars`` then ``subbase64``, in runner.pm's order."""
    for name, value in variables.items():
        line = line.replace(b"%" + name, value)
    for name, value in (
        (b"%SP", b" "),
        (b"%TAB", b"\t"),
        (b"%CR", b"\r"),
        (b"%LT", b"<"),
        (b"%GT", b">"),
        (b"%AMP", b"&"),
    ):
        line = line.replace(name, value)
    line = _B64.sub(lambda m: base64.b64encode(_unhex(m[1])), line)
    line = _HEX.sub(lambda m: _unhex(m[1]), line)
    return _REPEAT.sub(lambda m: _unhex(m[2]) * int(m[1]), line)


def preprocess(source: bytes, number: int, port: int) -> bytes:
    """The test file as sws reads it (runtests' ``log/testNUM``)."""
    variables = {  # longest first: %HTTPPORT before a shorter prefix would match
        b"HTTPPORT": str(port).encode(),
        b"HOSTIP": HOSTIP.encode(),
        b"CLIENTIP": HOSTIP.encode(),
        b"TESTNUMBER": str(number).encode(),
        b"VERSION": CURL_VERSION.encode(),
    }
    newlines = _NewLines()
    crlf = ""
    out: list[bytes] = []
    for line in split_lines(source):
        if line.lstrip(b" ").startswith((b"%if", b"%else", b"%endif")):
            msg = f"test{number}: %if blocks are not supported"
            raise ValueError(msg)
        if tag := _PART_TAG.match(line):
            if b'crlf="yes"' in tag[2]:
                crlf = "yes"
            elif b'crlf="headers"' in tag[2]:
                crlf = "headers"
        elif _PART_END.match(line) and crlf:
            crlf = ""
        line = _substitute(line, variables)
        if crlf:
            line = newlines(line, force=crlf == "yes")
        out.append(line)
    return b"".join(out)


# -- reading parts ------------------------------------------------------------


def _tag(line: bytes) -> tuple[bool, bytes, bytes] | None:
    """(closing, name, attributes) when ``line`` is a tag line, as getpart.c sees it."""
    text = line.lstrip(_SPACE)
    if not text.startswith(b"<"):
        return None
    text = text[1:]
    closing = text.startswith(b"/")
    if closing:
        text = text[1:]
    name = re.match(rb"[^\s>]*", text)
    assert name is not None
    rest = text[name.end() :].lstrip(_SPACE)
    return closing, name[0], rest.split(b">", 1)[0]


def attributes(raw: bytes) -> dict[str, str]:
    """``a="x" b='y'`` -> {"a": "x", "b": "y"}."""
    return {
        m[1].decode(): (m[2] if m[2] is not None else m[3]).decode()
        for m in _ATTR.finditer(raw)
    }


def sws_part(prepped: bytes, section: str, part: str) -> bytes | None:
    """What sws sends for ``<section><part>``: getpart.c, nonewline included."""
    state = 0  # getpart.c: 0 outside, 1 in <testcase>, 2 in a section, 3 in a part
    names = [b"", b"", b""]  # the open tag at each level
    wanted: list[bytes] | None = None
    nonewline = is_b64 = False
    for line in split_lines(prepped):
        tag = _tag(line)
        if wanted is not None:
            if tag is not None and tag[0] and tag[1] == names[2]:
                data = b"".join(wanted)
                if is_b64:
                    data = base64.b64decode(data)
                return data[:-1] if nonewline and data else data
            wanted.append(line)
            continue
        if tag is None:
            continue
        closing, name, attrs = tag
        if closing:
            if state and name == names[state - 1]:
                state -= 1
            continue
        if name.startswith((b"!", b"?")) or state == 3:
            continue
        names[state] = name
        state += 1
        if state == 3 and names[1] == section.encode() and name == part.encode():
            wanted = []
            nonewline = b"nonewline=" in attrs
            is_b64 = b"base64=" in attrs
    return None


def perl_part(prepped: bytes, section: str, part: str) -> list[bytes] | None:
    """getpart.pm's ``getpart``: the lines runtests compares against."""
    start = re.compile(rb"^ *<" + section.encode())
    open_part = re.compile(rb"^ *<" + part.encode() + rb"[ >]")
    close_part = re.compile(rb"^ *</" + part.encode() + rb"[ >]")
    end = re.compile(rb"^ *</" + section.encode())
    inside = 0
    found: list[bytes] = []
    for line in split_lines(prepped):
        if not inside and start.match(line):
            inside = 1
        elif inside >= 1 and open_part.match(line):
            if inside > 1:
                found.append(line)
            inside += 1
        elif inside >= 2 and close_part.match(line):
            if inside > 2:
                found.append(line)
            inside -= 1
        elif inside >= 1 and end.match(line):
            return found if inside == 1 and found else None
        elif inside >= 2:
            found.append(line)
    return found or None


def part_attributes(prepped: bytes, section: str, part: str) -> dict[str, str] | None:
    """The attributes of the first ``<part ...>`` inside ``<section>``, or None."""
    inside = False
    for line in split_lines(prepped):
        tag = _tag(line)
        if tag is None:
            continue
        closing, name, attrs = tag
        if name == section.encode():
            inside = not closing
        elif inside and not closing and name == part.encode():
            return attributes(attrs)
    return None


def part_text(prepped: bytes, section: str, part: str) -> str | None:
    """A short text part (``<errorcode>``, ``<command>``), stripped."""
    lines = perl_part(prepped, section, part)
    if lines is None:
        return None
    return b"".join(lines).decode("latin-1").strip()


def curl_output_check(prepped: bytes) -> bytes | None:
    """What runtests compares curl's ``--include`` output with, or None.

    ``<datacheck>`` then ``<datacheck1>``..``4>`` when there is one, else
    ``<data>`` unless it is ``nocheck``; ``nonewline`` chomps the last line.
    """
    pieces: list[bytes] = []
    if part_attributes(prepped, "reply", "datacheck") is not None:
        for suffix in ("", "1", "2", "3", "4"):
            name = "datacheck" + suffix
            lines = perl_part(prepped, "reply", name)
            if not lines:
                continue
            if "nonewline" in (part_attributes(prepped, "reply", name) or {}):
                lines[-1] = lines[-1].removesuffix(b"\n")
            pieces.extend(lines)
        return b"".join(pieces) or None  # an empty datacheck checks nothing
    attrs = part_attributes(prepped, "reply", "data") or {}
    lines = perl_part(prepped, "reply", "data")
    if attrs.get("nocheck") or not lines:
        return None
    if attrs.get("nonewline"):
        lines[-1] = lines[-1].removesuffix(b"\n")
    return b"".join(lines)


# -- framing a reply, as curl does ----------------------------------------------


@dataclass
class Response:
    """One final (non-1xx) response: status, headers in order, bytes after the head."""

    status: int
    headers: list[tuple[str, str]]
    rest: bytes

    def values(self, name: str) -> list[str]:
        """Every value of ``name``, comma lists split, as a recipient combines them."""
        out: list[str] = []
        for key, value in self.headers:
            if key.lower() == name.lower():
                out.extend(v.strip() for v in value.split(","))
        return [v for v in out if v]


def _read_line(data: bytes, pos: int) -> tuple[bytes, int]:
    """(line without CRLF or LF, position after it); curl accepts a bare LF."""
    end = data.find(b"\n", pos)
    if end < 0:
        msg = "the head is not terminated"
        raise ValueError(msg)
    return data[pos:end].removesuffix(b"\r"), end + 1


def parse_response(data: bytes) -> Response:
    """Skip 1xx answers; parse the final head (obs-fold joined). ValueError if bad."""
    pos = 0
    while True:
        line, pos = _read_line(data, pos)
        match = re.fullmatch(rb"HTTP/1\.\d (\d{3})(?: .*)?", line)
        if match is None:
            msg = f"not an HTTP/1.x status line: {line[:60]!r}"
            raise ValueError(msg)
        status = int(match[1])
        headers: list[tuple[str, str]] = []
        while True:
            line, pos = _read_line(data, pos)
            if not line:
                break
            if line[:1] in (b" ", b"\t") and headers:  # obs-fold: joined by SP
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip().decode('latin-1')}")
                continue
            raw_name, sep, raw_value = line.partition(b":")
            if not sep:
                msg = f"header line without a colon: {line[:60]!r}"
                raise ValueError(msg)
            headers.append(
                (raw_name.decode("latin-1"), raw_value.strip().decode("latin-1"))
            )
        if 100 <= status < 200 and status != 101:
            continue
        return Response(status, headers, data[pos:])


def parse_chunked(data: bytes) -> tuple[bytes, list[bytes]]:
    """(payload, trailer lines) of a chunked body; extensions dropped; ValueError."""
    out: list[bytes] = []
    pos = 0
    while True:
        line, pos = _read_line(data, pos)
        size_text = line.split(b";", 1)[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size_text):
            msg = f"bad chunk size line {line[:40]!r}"
            raise ValueError(msg)
        size = int(size_text, 16)
        if size == 0:
            break
        if pos + size > len(data):
            msg = "chunk cut short"
            raise ValueError(msg)
        out.append(data[pos : pos + size])
        pos += size
        terminator, pos = _read_line(data, pos)
        if terminator:
            msg = "chunk data not followed by CRLF"
            raise ValueError(msg)
    trailers: list[bytes] = []
    while True:
        line, pos = _read_line(data, pos)
        if not line:
            return b"".join(out), trailers
        trailers.append(line)


def is_chunked(response: Response) -> bool:
    """Whether ``chunked`` is among the response's transfer codings."""
    return "chunked" in [c.lower() for c in response.values("Transfer-Encoding")]


def message_trailers(response: Response) -> list[bytes]:
    """The trailer lines of a chunked response (none for others)."""
    if response.status in (204, 304) or not is_chunked(response):
        return []
    return parse_chunked(response.rest)[1]


def message_body(response: Response) -> bytes:
    """The body a complete transfer delivers, framed as curl frames it.

    Chunked anywhere in Transfer-Encoding: de-chunked once. Otherwise
    Content-Length (all its values must agree) bounds the bytes after the head;
    without one, the body runs to the close. ValueError when the bytes sent do
    not make a complete body under that framing.
    """
    if response.status in (204, 304):
        return b""  # never a body, whatever the headers say
    if is_chunked(response):
        return parse_chunked(response.rest)[0]
    # curl drops a Content-Length past curl_off_t (http.c: "Overflow
    # Content-Length") and reads to the close.
    lengths = {n for n in map(int, response.values("Content-Length")) if n < 2**63}
    if len(lengths) > 1:
        msg = f"conflicting Content-Length values {sorted(lengths)}"
        raise ValueError(msg)
    if not lengths:
        return response.rest
    (length,) = lengths
    if length > len(response.rest):
        msg = f"Content-Length {length} but only {len(response.rest)} bytes sent"
        raise ValueError(msg)
    return response.rest[:length]


# -- the server ------------------------------------------------------------------


@dataclass
class Served:
    """One request the server answered: its request line and the part sent."""

    request_line: str
    part: str | None
    size: int


def sws_route(target: str) -> tuple[int, int] | None:
    """(test, part) from a request target as sws reads it, or None (a 404)."""
    tail = target[target.rfind("/") + 1 :]
    match = re.match(r"\d+", tail)
    if match is None or int(match[0]) == 0:
        return None
    number = int(match[0])
    if number > 10000:
        return number // 10000, number % 10000
    return number, 0


def servercmd_delay(prepped: bytes) -> float:
    """``writedelay: N`` in ``<servercmd>``: milliseconds after each 20-byte piece."""
    text = part_text(prepped, "reply", "servercmd") or ""
    match = re.search(r"^writedelay:\s*(\d+)", text, re.MULTILINE)
    return int(match[1]) / 1000 if match else 0.0


DOC404 = (
    b"HTTP/1.1 404 Not Found\r\nServer: curl-replay\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


@dataclass
class ReplayServer:
    """sws for one test: raw TCP on 127.0.0.1, one reply per connection, then close.

    ``source`` is the test file as stored; it is preprocessed once the port is
    known (replies may name ``%HTTPPORT``).
    """

    number: int
    source: bytes
    prepped: bytes = b""
    port: int = 0
    served: list[Served] = field(default_factory=list)
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)
    _bounce: bool = field(default=False, init=False, repr=False)
    _prev: tuple[int, int] = field(default=(-1, -1), init=False, repr=False)
    _delay: float = field(default=0.0, init=False, repr=False)

    async def __aenter__(self) -> ReplayServer:
        self._server = await asyncio.start_server(self._handle, HOSTIP, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.prepped = preprocess(self.source, self.number, self.port)
        self._delay = servercmd_delay(self.prepped)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    def part(self, part: int) -> bytes | None:
        """The bytes of ``<dataPART>`` (``<data>`` for 0), or None when absent."""
        return sws_part(self.prepped, "reply", f"data{part}" if part else "data")

    def _pick(self, target: str) -> tuple[str | None, bytes]:
        """Route as sws does, bounce included; (part name, bytes to send)."""
        route = sws_route(target)
        if route is None or route[0] != self.number:
            self._bounce = False
            return None, DOC404
        test, part = route
        if self._bounce:
            if test == self._prev[0]:
                part = self._prev[1] + 1
            else:
                self._bounce, self._prev = False, (-1, -1)
        data = self.part(part) or b""
        self._bounce = b"swsbounce" in data
        self._prev = (test, part)
        return (f"data{part}" if part else "data"), data

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await asyncio.wait_for(_read_head(reader), READ_HEAD_TIMEOUT)
            if head is None:
                return
            request_line = head.split(b"\n", 1)[0].strip().decode("latin-1")
            fields = request_line.split(" ")
            target = fields[1] if len(fields) > 1 else "/"
            name, data = self._pick(target)
            self.served.append(Served(request_line, name, len(data)))
            await _send(writer, data, self._delay)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The request head up to its blank line (CRLF or bare LF), or None at EOF."""
    buffer = b""
    while b"\r\n\r\n" not in buffer and b"\n\n" not in buffer:
        chunk = await reader.read(4096)
        if not chunk or len(buffer) > HEAD_LIMIT:
            return None
        buffer += chunk
    return buffer


async def _send(writer: asyncio.StreamWriter, data: bytes, delay: float) -> None:
    """All of ``data``; with a writedelay, in sws's 20-byte pieces and pauses."""
    if not delay:
        writer.write(data)
        await writer.drain()
        return
    for start in range(0, len(data), SWS_PIECE):
        writer.write(data[start : start + SWS_PIECE])
        await writer.drain()
        await asyncio.sleep(delay)


def corpus_numbers(corpus: Path) -> list[int]:
    """The test numbers of every ``testNUM`` file in ``corpus``, sorted."""
    return sorted(
        int(p.name[4:])
        for p in corpus.iterdir()
        if p.name.startswith("test") and p.name[4:].isdigit()
    )
