"""curl's own HTTP test replies, replayed byte for byte against ``downloader get``.

``../shared/curl-corpus`` (beside the checkout) holds ``testNUM`` files from
curl's test suite: the bytes curl's test server sends, the curl command line
and curl's verdict (``<verify><errorcode>``, absent = 0). Each reply is served
as curl's server (sws) serves it (``tests/curl_replay.py``) to a real
``python -m downloader get http://127.0.0.1:PORT/NUM -d DIR --retries 1
--timeout 3 -q``, and a generic oracle judges the run:

1. it ends within ``RUN_TIMEOUT``;
2. no Python traceback in its output;
3. exit 0 only with exactly the expected bytes (sha256) at ``DIR/NUM`` and no
   ``*.part*`` file left under ``DIR``; exit 1 with nothing at ``DIR/NUM`` and
   ``NUM`` named in the output (a ``.part`` may stay: it is what a rerun
   resumes); no other exit (2 is for usage errors, and the usage is valid).

What each reply should give (``expectation``):

- OK, exit 0 required, where curl's errorcode is 0 and the command is a plain
  GET (``-L`` and ``--retry`` allowed: we follow redirects and retry too).
  The expected bytes are the final reply's body after its head (1xx answers
  skipped): de-chunked when ``chunked`` is among its transfer codings,
  trailers dropped; else cut to its Content-Length; else up to the close; none
  for 204/304. Content-Encoding is left alone: we send ``Accept-Encoding:
  identity`` and a file's bytes are what the server sends, so a gzip reply is
  saved gzipped (curl decodes only with ``--compressed``). The final reply is
  ``<data>`` unless ``FINAL_PART`` names the part a redirect or sws's
  ``swsbounce`` leads to.
- FAIL, exit 1 required, where curl's errorcode is not 0, and also where the
  final answer is not 2xx (curl exits 0 on HTTP errors unless ``-f``) or is a
  206 (we sent no Range: a part is never the file).
- ``OVERRIDES``: where curl's verdict comes from an option a plain GET does not
  have, or where the standard lets a client go either way (EITHER: exit 0
  with the expected bytes, or a clean exit 1), each with its reason.

Each expectation is cross-checked against what curl's harness compares:
``<datacheck>`` (or ``<data>``), which is curl's ``--include`` output, must
end with the expected body (plus any trailers; decoded first where the curl
command asked for decoding), and an ``-o`` file in ``<verify>`` must equal it.

All selected cases run at once, a few CLIs in parallel, in one module-scoped
fixture; each parametrized test then judges its own run.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import os
import re
import shlex
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from .curl_replay import (
    ReplayServer,
    Served,
    corpus_numbers,
    curl_output_check,
    message_body,
    message_trailers,
    parse_response,
    part_attributes,
    part_text,
    perl_part,
    sws_part,
)

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "curl-corpus"

if not CORPUS.is_dir():
    pytest.skip(
        f"curl's test replies are not here: {CORPUS} is absent (see the "
        "corpus README: they live beside the checkout, not in it)",
        allow_module_level=True,
    )

NUMBERS = corpus_numbers(CORPUS)
RUN_TIMEOUT = 30.0
PARALLEL = max(2, 2 * (os.cpu_count() or 1))
CLI_OPTIONS = ("--retries", "1", "--timeout", "3", "-q")
_SUMMARY = re.compile(r"^\d+ downloaded, \d+ skipped, \d+ failed;")


class Verdict(enum.Enum):
    """What a run must end with."""

    OK = "exit 0 with the expected bytes"
    FAIL = "exit 1, nothing at the final path"
    EITHER = "exit 0 with the expected bytes, or a clean exit 1"


OK, FAIL, EITHER = Verdict.OK, Verdict.FAIL, Verdict.EITHER

# The part holding the final answer of a plain GET, where it is not <data>.
FINAL_PART = {
    **dict.fromkeys((11, 28, 40, 42, 49, 51, 52, 276, 1031, 1138, 1413), "data2"),
    188: "data1",  # a 301 to itself, then (swsbounce) the 200
    198: "data1",  # a 503, then (swsbounce, our one retry) the 200
    1634: "data1",  # a 429 with Retry-After: 1, then the 200
    1909: "data1",  # a body one byte short, then (our retry) the whole one
    3032: "data3",  # three 301s to itself (swsbounce), then the 200
}

_RFC_FIELD = "a NUL or bare CR in a field: RFC 9110 5.5 says reject or replace by SP"
_HEAD_LIMIT = "beyond a header limit of curl's own choosing; others may choose more"
_BARE_LF = "chunk lines end in a bare LF: RFC 9112 7.1 wants CRLF (2.2: heads only)"
_SAME_LENGTHS = "equal Content-Length values: RFC 9110 8.6 says reject or collapse"

# Where a plain GET of the reply should not end as curl's errorcode says.
OVERRIDES: dict[int, tuple[Verdict, str]] = {
    3: (EITHER, "Content-Length: 0, yet 55 more bytes before the close: which is it"),
    38: (OK, "curl's 33 is -C - meeting a 200; a plain GET's 200 is the file"),
    47: (OK, "curl asks with HTTP/1.0 (-0); the HTTP/1.0 200 answers a GET too"),
    129: (EITHER, "HTTP/1.2: RFC 9112 2.3 says read it as 1.1; curl refuses it"),
    188: (OK, "-C 50 meets a 301 to itself, then a 200: the whole file (no Range)"),
    221: (OK, "curl's 61 comes from --compressed; we keep the gzip bytes as sent"),
    269: (FAIL, "curl passes --ignore-content-length; a GET gets 10 of 677654"),
    334: (EITHER, "a 204 with Transfer-Encoding (RFC 9112 6.1 forbids it): no body"),
    365: (EITHER, "Content-Length and chunked: RFC 9112 6.3 says treat as an error"),
    395: (EITHER, "Content-Length past 2**63: curl drops it and reads to the close"),
    497: (EITHER, _HEAD_LIMIT + " (300 KB of headers)"),
    747: (EITHER, _HEAD_LIMIT + " (5000 headers)"),
    767: (EITHER, _SAME_LENGTHS),
    770: (EITHER, _SAME_LENGTHS),
    772: (EITHER, "curl refuses two Locations even on a 200, which has no redirect"),
    1116: (EITHER, _BARE_LF),
    1122: (FAIL, "Transfer-Encoding gzip, decoded by curl only with --tr-encoding"),
    1124: (FAIL, "Transfer-Encoding gzip, chunked: only with --tr-encoding"),
    1154: (EITHER, _HEAD_LIMIT + " (a 100 KB header line)"),
    1164: (FAIL, "HTTP/0.9 (no status line): curl takes it only with --http0.9"),
    1266: (FAIL, "HTTP/0.9 (no status line): curl takes it only with --http0.9"),
    1267: (FAIL, "HTTP/0.9 (no status line): curl takes it only with --http0.9"),
    1277: (FAIL, "Transfer-Encoding gzip, chunked: only with --tr-encoding"),
    1417: (EITHER, _BARE_LF),
    1473: (EITHER, "whitespace before the first header: RFC 9112 2.2, reject or skip"),
    1482: (EITHER, "chunked twice (RFC 9112 6.1 forbids it): curl de-chunks once"),
    1483: (EITHER, "chunked twice (RFC 9112 6.1 forbids it): curl de-chunks once"),
    1493: (EITHER, "'identity' is no transfer coding (since RFC 7230); curl skips it"),
    1494: (EITHER, "'identity' is no transfer coding (since RFC 7230); curl skips it"),
    2105: (EITHER, _RFC_FIELD),
    2106: (EITHER, _RFC_FIELD + " (here in a trailer)"),
    2305: (OK, "curl's 23 comes from --compressed; we keep the gzip bytes as sent"),
    3035: (FAIL, "its 3rd reply is a 404: curl retries it (--retry-all-errors)"),
}

# curl options that leave a request a plain GET, or only change curl's output.
_PLAIN_OPTIONS = {
    "-L",
    "--location",
    "--retry",
    "--retry-delay",
    "--retry-all-errors",
    "-f",
    "--fail",
    "-s",
    "--silent",
    "-S",
    "-sS",
    "--show-error",
    "-D",
    "-o",
    "-w",
    "--max-redirs",
}
_DECODING_OPTIONS = {"--compressed", "--tr-encoding"}


@dataclass
class Expectation:
    """What the run should end with, and why."""

    verdict: Verdict
    reason: str
    body: bytes | None  # the right bytes (None for FAIL: none are right)


@dataclass
class Outcome:
    """One CLI run against one replayed test."""

    prepped: bytes  # the test file as served (port substituted)
    code: int | None  # None: killed at RUN_TIMEOUT
    output: str  # stdout + stderr
    final: bytes | None  # the file at DIR/NUM
    final_kind: str  # "file", "missing" or "other"
    leftovers: list[str]
    served: list[Served]
    elapsed: float


# -- running ---------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    """The user's environment without proxies or a .netrc that could interfere."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "*"
    env["NETRC"] = os.devnull
    return env


async def _replay(number: int, dest: Path, gate: asyncio.Semaphore) -> Outcome:
    """Serve test ``number`` and run the CLI against it once."""
    source = (CORPUS / f"test{number}").read_bytes()
    async with gate, ReplayServer(number, source) as server:
        url = f"http://127.0.0.1:{server.port}/{number}"
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "downloader",
            "get",
            url,
            "-d",
            str(dest),
            *CLI_OPTIONS,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=PROJECT,
            env=_child_env(),
        )
        code: int | None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
            code = proc.returncode
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            code = None
        elapsed = time.monotonic() - started
    final = dest / str(number)
    kind = "file" if final.is_file() else "missing" if not final.exists() else "other"
    return Outcome(
        prepped=server.prepped,
        code=code,
        output=out.decode(errors="replace") + err.decode(errors="replace"),
        final=final.read_bytes() if kind == "file" else None,
        final_kind=kind,
        leftovers=sorted(
            str(p.relative_to(dest)) for p in dest.rglob("*") if ".part" in p.name
        ),
        served=list(server.served),
        elapsed=elapsed,
    )


async def _replay_all(numbers: list[int], root: Path) -> dict[int, Outcome]:
    gate = asyncio.Semaphore(PARALLEL)
    runs = [_replay(n, root / f"dest{n}", gate) for n in numbers]
    return dict(zip(numbers, await asyncio.gather(*runs), strict=True))


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, Outcome]:
    """Every selected case run once, concurrently: 96 CLIs one by one are slow."""
    selected: list[int] = sorted(
        {
            int(str(item.callspec.params["number"]))
            for item in request.session.items
            if isinstance(item, pytest.Function)
            and item.module is request.module
            and hasattr(item, "callspec")
        }
    )
    root = tmp_path_factory.mktemp("curl-corpus")
    return asyncio.run(_replay_all(selected, root))


# -- judging ---------------------------------------------------------------------


def curl_args(prepped: bytes) -> list[str]:
    """The curl command line of the test, as words."""
    return shlex.split(part_text(prepped, "client", "command") or "")


def expectation(number: int, prepped: bytes) -> Expectation:
    """The verdict for a plain GET of test ``number``, and the bytes it delivers."""
    part = FINAL_PART.get(number, "data")
    reply = sws_part(prepped, "reply", part) or b""
    try:
        response = parse_response(reply)
        body: bytes | None = message_body(response)
        status: int | None = response.status
    except ValueError:
        body = status = None
    if number in OVERRIDES:
        verdict, reason = OVERRIDES[number]
    else:
        errorcode = int(part_text(prepped, "verify", "errorcode") or 0)
        verdict = OK if errorcode == 0 else FAIL
        reason = f"curl's errorcode is {errorcode}"
        if verdict is OK and status is not None and not 200 <= status < 300:
            verdict, reason = FAIL, f"the final answer is {status}, not 2xx"
        elif verdict is OK and status == 206:
            verdict, reason = FAIL, "a 206 to a GET without Range"
        elif verdict is OK:
            unusual = [
                a
                for a in curl_args(prepped)
                if a.startswith("-") and a not in _PLAIN_OPTIONS | _DECODING_OPTIONS
            ]
            if unusual:
                pytest.fail(f"test{number}: curl {unusual}: say in OVERRIDES why")
    if verdict is FAIL:
        return Expectation(verdict, reason, None)
    if body is None:
        pytest.fail(f"test{number}: {verdict.name} but its {part} is no complete reply")
    return Expectation(verdict, reason, body)


def _decoded(body: bytes, prepped: bytes, part: str) -> bytes | None:
    """The body as curl delivered it with --compressed/--tr-encoding, or None."""
    response = parse_response(sws_part(prepped, "reply", part) or b"")
    codings = response.values("Content-Encoding") + [
        c for c in response.values("Transfer-Encoding") if c.lower() != "chunked"
    ]
    if not codings:
        return body
    try:
        for coding in reversed(codings):
            if coding.lower() not in ("gzip", "deflate", "none"):
                return None
            if coding.lower() != "none":
                body = zlib.decompress(body, wbits=47)  # gzip or zlib header
    except zlib.error:
        return None
    return body


def cross_check(number: int, prepped: bytes, expected: Expectation) -> None:
    """Our expected body must be what curl's own test checks for."""
    assert expected.body is not None
    part = FINAL_PART.get(number, "data")
    args = curl_args(prepped)
    body: bytes | None = expected.body
    if _DECODING_OPTIONS & set(args):
        body = _decoded(expected.body, prepped, part)
    check = curl_output_check(prepped)
    if body is not None and check is not None and b"%includetext" not in check:
        response = parse_response(sws_part(prepped, "reply", part) or b"")
        # curl -i shows a chunked reply's trailers after its body, CRLF-ended
        trailers = b"".join(t + b"\r\n" for t in message_trailers(response))
        assert check.endswith(body + trailers), (
            f"test{number}: curl's <datacheck> does not end with the body we expect"
        )
    if "-o" in args and not int(part_text(prepped, "verify", "errorcode") or 0):
        name = args[args.index("-o") + 1]
        for tag in ("file", "file1"):
            attrs = part_attributes(prepped, "verify", tag)
            if attrs is not None and attrs.get("name") == name:
                lines = perl_part(prepped, "verify", tag) or []
                if attrs.get("nonewline") and lines:
                    lines[-1] = lines[-1].removesuffix(b"\n")
                assert b"".join(lines) == expected.body, f"test{number}: <{tag}>"


def _names_file(output: str, name: str) -> bool:
    """``name`` as a word of the output, outside the summary line."""
    word = re.compile(rf"(?<![\w./:-]){re.escape(name)}(?![\w.-])")
    return any(
        word.search(line) for line in output.splitlines() if not _SUMMARY.match(line)
    )


def describe(outcome: Outcome, expected: Expectation) -> str:
    """The facts of a run, for an assertion message."""
    served = ", ".join(f"{s.request_line!r}->{s.part}" for s in outcome.served[:6])
    if len(outcome.served) > 6:
        served += f" and {len(outcome.served) - 6} more"
    final = (
        f"{len(outcome.final)} bytes sha256 {hashlib.sha256(outcome.final).hexdigest()}"
        if outcome.final is not None
        else outcome.final_kind
    )
    want = (
        f"{len(expected.body)} bytes sha256 {hashlib.sha256(expected.body).hexdigest()}"
        if expected.body is not None
        else "-"
    )
    tail = outcome.output.strip()[-1500:]
    return (
        f"\n  expected: {expected.verdict.value} ({expected.reason}); body {want}"
        f"\n  exit {outcome.code} in {outcome.elapsed:.1f}s; final path: {final};"
        f" leftovers {outcome.leftovers}\n  served: {served}\n  output: {tail}"
    )


@pytest.mark.parametrize("number", NUMBERS, ids=str)
def test_curl_reply(number: int, outcomes: dict[int, Outcome]) -> None:
    """The generic oracle: bounded, no trace, right bytes or a clean failure."""
    outcome = outcomes[number]
    expected = expectation(number, outcome.prepped)
    if expected.verdict is not FAIL:
        cross_check(number, outcome.prepped, expected)
    facts = describe(outcome, expected)
    assert outcome.code is not None, f"not finished within {RUN_TIMEOUT}s{facts}"
    assert "Traceback (most recent call last)" not in outcome.output, facts
    assert outcome.code in (0, 1), f"exit {outcome.code} for a valid command{facts}"
    if outcome.code == 0:
        assert expected.body is not None, f"a bad reply was accepted{facts}"
        assert outcome.final is not None, f"exit 0 without a file{facts}"
        assert hashlib.sha256(outcome.final).digest() == (
            hashlib.sha256(expected.body).digest()
        ), f"exit 0 with wrong bytes{facts}"
        assert outcome.leftovers == [], f"partial files left after exit 0{facts}"
    else:
        assert outcome.final_kind == "missing", f"exit 1 but the path exists{facts}"
        assert _names_file(outcome.output, str(number)), f"failure unnamed{facts}"
    if expected.verdict is OK:
        assert outcome.code == 0, f"a complete reply was refused{facts}"
    elif expected.verdict is FAIL:
        assert outcome.code == 1, f"a bad reply was accepted{facts}"
