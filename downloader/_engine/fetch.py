"""One try at one file: resume or restart, one stream or segments, verify, publish."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping

from .. import _storage as storage
from .._exceptions import (
    ConnectionLost,
    HTTPStatusError,
    ResumeRejected,
    TransferError,
)
from .._http.stream import Stream, open_stream
from .._integrity import Digests, hash_file, hash_range, sha256_file
from .._models import Entry
from .._policy import (
    Answer,
    CallerHeaders,
    Plan,
    Pushback,
    announced_mismatch,
    cut_short,
    expected_total,
    host_key,
    html_page,
    integrity_error,
    is_etag,
    plan_part,
    resume_headers,
    resume_offset,
    splittable,
    unsatisfiable_resume,
    with_server_digest,
)
from .._storage import FilePaths, ResumeState
from .._storage.commit import NoTmpfile, publish_fresh, publish_small
from .._storage.writer import BackgroundFlush, PartWriter
from .context import FileClaim, NotModified, RunContext, Tally
from .ranges import RangeOpener, Segment
from .segments import SegmentedDownload

SMALL_FILE = 1024 * 1024  # bodies up to this size are held, then written at once


class FileFetch:
    """Tries to get one entry into place; each ``attempt`` is one try at one URL.

    The file's lock (``claim``) is taken before a part is read or written;
    a new small body is published without one. A try raises ``PartBusy``
    when another process holds it, ``LookAgain`` when another process
    published the file meanwhile: the caller waits or looks, then tries again.
    """

    def __init__(
        self,
        ctx: RunContext,
        key: int,
        entry: Entry,
        paths: FilePaths,
        lock: storage.LazyLock,
        *,
        no_part: bool = False,
        conditional: Mapping[str, str] | None = None,
    ) -> None:
        """``no_part``: the caller just found no part (the first try need not look).
        ``conditional``: a refresh's If-None-Match / If-Modified-Since, sent
        when no part is there (a 304 raises ``NotModified``)."""
        self.ctx = ctx
        self.key = key
        self.given = entry  # as the manifest has it
        self.entry = entry  # as this try checks it (a server's digest added)
        self.paths = paths
        self.claim = FileClaim(lock, paths)
        self._no_part = no_part
        self.tally = Tally()
        # Off after a server botched a ranged answer.
        self.may_split = ctx.settings.split > 1
        self._asked = entry.url  # the URL of the try under way (entry or mirror)
        self._conditional = dict(conditional or {})
        # For a lock file (ctx.want_sha256): the file published, and how it came.
        self.sha256: str | None = None
        self.etag: str | None = None
        self.last_modified: str | None = None

    async def attempt(self, url: str) -> tuple[int, str | None]:
        """One try, holding a connection slot for the host; (size, checksum)."""
        self._asked = url
        self.entry = self.given
        async with self.ctx.budget.slot(url) as slot:
            try:
                done = await self._attempt_in_slot(url)
            except TransferError as exc:
                kind = slot.refused(exc)  # the host may want fewer requests
                if kind is not None:
                    self._tell_throttled(url, exc, kind)
                raise
            except NotModified:
                slot.ok()
                raise
            slot.ok()
            return done

    def _tell_throttled(self, url: str, exc: TransferError, kind: Pushback) -> None:
        """Tell the progress sink that the host pushed back (``policy.pushed_back``)."""
        throttled = getattr(self.ctx.progress, "file_throttled", None)  # older sinks
        if throttled is not None:
            status = exc.status if isinstance(exc, HTTPStatusError) else None
            retry_after = exc.retry_after if isinstance(exc, HTTPStatusError) else None
            throttled(self.key, host_key(url), status, kind, str(exc), retry_after)

    async def _attempt_in_slot(self, url: str) -> tuple[int, str | None]:
        self.sha256 = None
        on_disk, state, plan = self._look()
        if state is not None:  # what the bytes on disk came with
            self._learn(
                state.validator if is_etag(state.validator) else None,
                None if is_etag(state.validator) else state.validator,
            )
        if plan.action == "resume" and plan.kind != "stream":
            assert state is not None
            if plan.kind == "split":
                return await self._segmented(state, None, url)
            return await self._finish(plan.have, None, url)  # killed before rename
        have = plan.have if plan.action == "resume" else 0
        try:
            return await self._stream(url, have, state, had_part=on_disk >= 0)
        except HTTPStatusError as exc:
            if exc.status == 304 and not have and self._conditional:
                raise NotModified from exc
            if exc.status == 416 and have:  # nothing after our bytes: why not?
                await asyncio.to_thread(storage.forget, self.paths)
                announced = state.size if state is not None else None
                raise unsatisfiable_resume(
                    have, announced, exc.complete_length, url=url
                ) from exc
            raise

    def _learn(self, etag: str | None, last_modified: str | None) -> None:
        self.etag, self.last_modified = etag, last_modified

    def _look(self) -> tuple[int, ResumeState | None, Plan]:
        """The part as it is now (-1: none), its state, and what to do with it."""
        paths = self.paths
        # -1: no part, so no state either. The caller's look an instant ago
        # holds for the first try: a part begun since then is another
        # process's, and _claim meets its lock before this try writes a part
        # (a small body is published under no name, whoever else is at work).
        on_disk = -1 if self._no_part else storage.part_size(paths.part_name)
        self._no_part = False
        if on_disk >= 0 and not self.claim.held:  # it appeared since the first look
            self.claim.take()
            on_disk = storage.part_size(paths.part_name)  # as the holder left it
        state = storage.load_state(paths.state) if on_disk > 0 else None
        checksum = self.entry.checksum is not None
        return on_disk, state, plan_part(on_disk, state, checksum=checksum)

    async def _stream(
        self, url: str, have: int, state: ResumeState | None, *, had_part: bool
    ) -> tuple[int, str | None]:
        """One GET from byte ``have``: a small body, one stream, or a split."""
        paths, ctx = self.paths, self.ctx
        validator = state.validator if (have and state) else None
        extra = resume_headers(have, validator)
        if not have and not had_part:
            extra |= self._conditional  # a refresh: only if it changed
        async with open_stream(
            ctx.session, url, self._caller(url), extra, ctx.env
        ) as stream:
            answer = stream.answer
            self._learn(answer.etag, answer.last_modified)
            if answer.quota is not None:
                ctx.budget.learn(url, answer.quota)
            try:
                offset = resume_offset(
                    have,
                    answer.status,
                    answer.content_range,
                    size=state.size if state is not None else None,
                )
            except ResumeRejected:
                await asyncio.to_thread(storage.forget, paths)
                raise
            total = expected_total(offset, answer.content_length, answer.content_range)
            page = html_page(self.given, answer.content_type, total, answer.url)
            if page is not None:  # never written: not even a .part
                raise page
            whole = answer.status == 200
            self.entry = with_server_digest(
                self.given, answer.digests, whole_body=whole
            )
            mismatch = announced_mismatch(self.entry, total, url)
            if mismatch is not None:
                raise mismatch
            if offset == 0 and total is not None and total <= SMALL_FILE:
                return await self._small(stream, total, had_part=had_part)
            self.claim.take()  # a part will be written
            if total is not None and self._splittable(answer, offset, total):
                state = await asyncio.to_thread(
                    storage.start_split, paths, url, answer, total
                )
                return await self._segmented(state, stream, url)
            size, digest = await self._one_stream(stream, offset, total)
        if total is not None and size != total:
            raise cut_short(size, total, url)
        return await self._finish(size, digest, url)

    async def _one_stream(
        self, stream: Stream, offset: int, total: int | None
    ) -> tuple[int, str | None]:
        """Append the body at ``offset``, hashing as it passes."""
        entry, paths = self.entry, self.paths
        if offset == 0:
            await asyncio.to_thread(
                storage.start_fresh, paths, self._asked, stream.answer, total
            )
        elif total is not None:  # a resume: room for the rest
            await asyncio.to_thread(storage.check_room, paths, total - offset)
        digests = Digests(entry.checksum, want_sha256=self.ctx.want_sha256)
        hasher = digests.hasher
        if hasher is not None and offset:
            await asyncio.to_thread(hash_range, paths.part, hasher, 0, offset)
        self.ctx.progress.file_started(self.key, entry.path, total, offset)
        self.tally.start(offset)
        flusher = BackgroundFlush(paths.part, offset)
        try:
            inline = hasher is None and self._in_memory()
            writer_cm = PartWriter(paths.part, offset, hasher, inline=inline)
            async with writer_cm as writer:
                try:
                    async for chunk in stream.chunks():
                        await self._count(len(chunk))
                        await writer.write(chunk)
                        flusher.wrote_up_to(writer.saved)
                except ConnectionLost as exc:
                    raise cut_short(writer.position, total, stream.answer.url) from exc
                size = writer.position
        finally:
            await flusher.close()
        self.sha256 = digests.sha256()
        return size, digests.entry_digest()

    async def _count(self, n: int) -> None:
        """Every chunk: the rate limit, the tally, the progress bar."""
        if self.ctx.limiter is not None:
            await self.ctx.limiter.acquire(n)
        self.tally.bytes += n
        self.tally.reached += n
        self.ctx.progress.file_advanced(self.key, n)

    def _splittable(self, answer: Answer, offset: int, total: int) -> bool:
        return splittable(
            answer,
            offset,
            total,
            allowed=self.may_split,
            min_split_size=self.ctx.settings.min_split_size,
            checksum=self.entry.checksum is not None,
        )

    def _in_memory(self) -> bool:
        """Is the file on a memory filesystem (where the loop writes it itself)?"""
        return self.ctx.syncs.filesystems.in_memory(self.paths.folder_name)

    def _caller(self, url: str) -> CallerHeaders:
        """The caller's headers for a try at ``url`` (the entry's URL or a mirror)."""
        return CallerHeaders(url, self.ctx.settings.headers, self.entry.headers)

    async def _segmented(
        self, state: ResumeState, first: Stream | None, url: str
    ) -> tuple[int, str | None]:
        """Fetch the missing segments over several connections, then verify.

        Ranges go where ``url`` redirected this try (learned from each answer),
        never to a target saved by an earlier run: presigned targets expire. A
        target that stops answering sends the range back through ``url`` once.
        """
        assert state.size is not None
        assert state.segments is not None
        ctx, entry, validator = self.ctx, self.entry, state.validator
        where = first.answer.url if first is not None else url
        opener = RangeOpener(
            ctx.session, ctx.env, url, self._caller(url), validator, target=where
        )
        segments = [Segment(a, b, c, b) for a, b, c in state.segments]
        done = sum(seg.saved - seg.start for seg in segments)
        if first is None:  # a resume: room for what is missing
            await asyncio.to_thread(storage.check_room, self.paths, state.size - done)
        ctx.progress.file_started(self.key, entry.path, state.size, done)
        self.tally.start(done)
        download = SegmentedDownload(
            self.paths,
            segments,
            url=url,
            size=state.size,
            validator=validator,
            split=ctx.settings.split,
            min_size=ctx.settings.min_split_size,
            budget=ctx.budget,
            open_range=opener,
            on_chunk=self._count,
            checksum=entry.checksum,
            inline=self._in_memory(),
        )
        try:
            digest = await download.run(first)
        except ResumeRejected:
            self.may_split = False  # restart on one stream: ranges cannot be trusted
            await asyncio.to_thread(storage.forget, self.paths)
            raise
        return await self._finish(state.size, digest, url)

    async def _small(
        self, stream: Stream, total: int, *, had_part: bool
    ) -> tuple[int, str | None]:
        """A small body: gather it, then hash, write, sync (in a group) and rename.

        If the body breaks off, what arrived is kept as an ordinary part file with
        its state, so the next try resumes like any other file.
        """
        entry, url = self.entry, stream.answer.url
        self.ctx.progress.file_started(self.key, entry.path, total, 0)
        self.tally.start(0)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in stream.chunks():
                await self._count(len(chunk))
                chunks.append(chunk)
                size += len(chunk)
        except TransferError as exc:
            if chunks and self.claim.take_if_free():
                await asyncio.to_thread(
                    storage.keep_partial,
                    self.paths,
                    self._asked,
                    stream.answer,
                    total,
                    chunks,
                )
            if isinstance(exc, ConnectionLost):
                raise cut_short(size, total, url) from exc
            raise
        if size != total:
            raise cut_short(size, total, url)
        early = integrity_error(entry, size, None, url)  # size, before any write
        if early is not None:
            raise early
        digest = await self._publish(chunks, had_part=had_part)
        error = integrity_error(entry, size, digest, url)
        if error is not None:
            raise error
        if self.ctx.want_sha256:  # published: pin it (a small body, on the loop)
            same = entry.checksum is not None and entry.checksum.algorithm == "sha256"
            self.sha256 = digest if same else _sha256_of(chunks)
        return size, str(entry.checksum) if entry.checksum else None

    async def _publish(self, chunks: list[bytes], *, had_part: bool) -> str | None:
        """Without a lock where the system allows it (a new name), else with one."""
        checksum, syncs = self.entry.checksum, self.ctx.syncs
        if not self.claim.held:
            try:
                return await publish_fresh(self.paths, chunks, checksum, syncs)
            except NoTmpfile:
                self.claim.take()
        return await publish_small(
            self.paths, chunks, checksum, syncs, had_part=had_part
        )

    async def _finish(
        self, size: int, digest: str | None, url: str
    ) -> tuple[int, str | None]:
        """Verify size and checksum, then publish; a mismatch throws the bytes away."""
        checksum, paths = self.entry.checksum, self.paths
        if checksum is not None and digest is None:
            digest = (
                await asyncio.to_thread(hash_file, paths.part, checksum)
            ).hexdigest()
        error = integrity_error(self.entry, size, digest, url)
        if error is not None:
            await asyncio.to_thread(storage.forget, paths)
            raise error
        if self.ctx.want_sha256 and self.sha256 is None:  # split, or a whole part
            same = checksum is not None and checksum.algorithm == "sha256"
            self.sha256 = (
                digest if same else await asyncio.to_thread(sha256_file, paths.part)
            )
        await asyncio.to_thread(storage.publish, paths)
        return size, str(checksum) if checksum else None


def _sha256_of(chunks: list[bytes]) -> str:
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()
