"""One entry from start to finish: look, take the lock, the tries, the result."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import stat
import time

from .. import _storage as storage
from .._exceptions import (
    DownloadError,
    IntegrityError,
    ResumeRejected,
    StorageError,
    TransferError,
)
from .._integrity import sha256_file
from .._models import Entry, Result
from .._policy import (
    DiskFacts,
    FinalFacts,
    MirrorSet,
    RetryState,
    conditional_headers,
    kept_note,
    plan_entry,
)
from .._storage import FilePaths
from .context import LookAgain, NotModified, RunContext, Tally
from .fetch import FileFetch

log = logging.getLogger(__name__)

LOCK_POLL = 0.05  # seconds between looks at a lock another process holds...
LOCK_POLL_MAX = 1.0  # ...doubling up to this


class FileJob:
    """Gets one entry into place; never raises for a per-file failure."""

    def __init__(self, ctx: RunContext, key: int, entry: Entry) -> None:
        self.ctx = ctx
        self.key = key
        self.entry = entry
        self.began = time.monotonic()

    async def run(self) -> Result:
        """One entry from start to finish; never raises for a per-file failure.

        The file's lock is taken first when there is something on disk to
        work on (a final file to replace, a part to resume); a new file
        takes it only once it writes a part (``FileFetch``), so a new small
        file, published without a part, never takes one.
        """
        entry, ctx = self.entry, self.ctx
        lock: storage.LazyLock | None = None
        try:
            paths = FilePaths.under(ctx.dest, entry.path, ctx.inside)
            found = storage.stat_or_none(paths.final_name)
            done = await self._complete(paths, found)
            kept = done if ctx.settings.refresh else None  # to ask about again
            if done is not None and kept is None:
                return await self._pinned(done, paths)
            lock = storage.LazyLock(paths)
            on_disk = storage.part_size(paths.part_name)
            if found is not None or on_disk >= 0:
                waited = await self._take(lock)
                # Another process may have finished it meanwhile: after a wait,
                # or between the look above and the lock (published, let go).
                again = waited or found is None
                now = storage.stat_or_none(paths.final_name) if again else None
                if now is not None and kept is None:
                    done = await self._complete(paths, now)
                    if done is not None:
                        return await self._pinned(done, paths)
            # Without the lock, the first try can trust this look: no part.
            no_part = on_disk < 0 and not lock.held
            result = await self._tries(paths, lock, no_part=no_part, kept=kept)
            if kept is not None and result.status == "failed":
                # The old copy is untouched (a new one only ever replaces it by
                # rename, once verified): say so, and keep it pinned.
                error = kept_note(result.error or "failed")
                failed = dataclasses.replace(result, error=error, size=kept.size)
                return await self._pinned(failed, paths)
            return result
        except (OSError, StorageError) as exc:
            return _failed(entry, self.began, exc)
        finally:
            if lock is not None:
                lock.release()

    async def _complete(
        self, paths: FilePaths, found: os.stat_result | None
    ) -> Result | None:
        """The "skipped" result when the final file (``found``) is complete."""
        entry, overwrite = self.entry, self.ctx.settings.overwrite
        if found is None:
            return None
        final = FinalFacts(found.st_size, stat.S_ISDIR(found.st_mode))
        plan = plan_entry(DiskFacts(final), entry, overwrite=overwrite)
        if plan.action == "hash":
            assert entry.checksum is not None
            verified = await asyncio.to_thread(entry.checksum.matches_file, paths.final)
            final = dataclasses.replace(final, verified=verified)
            plan = plan_entry(DiskFacts(final), entry, overwrite=overwrite)
        if plan.action == "blocked":
            msg = f"{paths.final} is a directory; move it out of the way"
            raise StorageError(msg)
        if plan.action != "complete":
            return None
        return Result(
            entry,
            "skipped",
            size=found.st_size,
            elapsed_s=time.monotonic() - self.began,
            checksum=str(entry.checksum) if entry.checksum else None,
        )

    async def _pinned(self, result: Result, paths: FilePaths) -> Result:
        """``result`` with the sha256 and validators of the complete file kept.

        Only for a lock file. A checksum verified as sha256 is that file's
        sha256; otherwise it is hashed here. The validators are those the
        previous lock file pinned (a skip asks the server nothing).
        """
        if not self.ctx.want_sha256:
            return result
        checksum = self.entry.checksum
        if checksum is not None and checksum.algorithm == "sha256":
            digest = checksum.hexdigest  # _complete verified it
        else:
            digest = await asyncio.to_thread(sha256_file, paths.final)
        known = self.ctx.known.get(self.entry.path)
        return dataclasses.replace(
            result,
            sha256=digest,
            etag=known.etag if known else None,
            last_modified=known.last_modified if known else None,
        )

    async def _take(self, lock: storage.LazyLock) -> bool:
        """Take the file's lock, waiting while another live process holds it.

        The lock dies with its holder, so the wait ends when that process
        finishes the file (the caller then finds it complete) or dies (its
        part is taken over). Returns whether it had to wait.

        Raises
        ------
        StorageError
            With ``wait_for_others=False``, at once if another process holds it.
        """
        try:
            lock.take()
        except storage.PartBusy as busy:
            await self._wait_for(lock, busy)
            return True
        return False

    async def _wait_for(self, lock: storage.LazyLock, busy: storage.PartBusy) -> None:
        """Poll until the lock another process holds (``busy``) is ours."""
        if not self.ctx.settings.wait_for_others:
            msg = f"{busy}; run again once it has finished"
            raise StorageError(msg) from None
        waiting = getattr(self.ctx.progress, "file_waiting", None)  # older sinks
        if waiting is not None:
            waiting(self.key, self.entry.path, busy.waiting)
        pause = LOCK_POLL
        while True:
            await asyncio.sleep(pause)
            pause = min(pause * 2, LOCK_POLL_MAX)
            try:
                lock.take()
                return
            except storage.PartBusy:
                continue

    async def _tries(
        self,
        paths: FilePaths,
        lock: storage.LazyLock,
        *,
        no_part: bool = False,
        kept: Result | None = None,
    ) -> Result:
        """Try the file until it is in place or has had its tries (``RetryState``).

        ``kept``: a refresh of this complete file, asking only if it changed.
        """
        entry = self.entry
        conditional = None
        if kept is not None:
            conditional = conditional_headers(self.ctx.known.get(entry.path))
        fetch = FileFetch(
            self.ctx,
            self.key,
            entry,
            paths,
            lock,
            no_part=no_part,
            conditional=conditional,
        )
        mirrors = MirrorSet(entry.urls)
        tries = RetryState(self.ctx.settings.retries)
        attempts = 0
        while True:
            attempts += 1
            url = mirrors.current
            try:
                size, verified = await fetch.attempt(url)
                return Result(
                    entry,
                    "downloaded",
                    bytes=fetch.tally.bytes,
                    size=size,
                    elapsed_s=time.monotonic() - self.began,
                    attempts=attempts,
                    checksum=verified,
                    sha256=fetch.sha256,
                    etag=fetch.etag if fetch.sha256 else None,
                    last_modified=fetch.last_modified if fetch.sha256 else None,
                )
            except NotModified:
                assert kept is not None
                unchanged = dataclasses.replace(
                    kept,
                    status="unchanged",
                    elapsed_s=time.monotonic() - self.began,
                    attempts=attempts,
                )
                return await self._pinned(unchanged, paths)
            except (storage.PartBusy, LookAgain) as exc:
                attempts -= 1  # no try: the file turned out to be another's
                done = await self._after_another(paths, lock, exc)
                if done is not None:
                    return done
                continue
            except StorageError as exc:
                error: DownloadError = exc
                break
            except OSError as exc:  # disk trouble not yet named: fail this file only
                error = StorageError(f"{paths.final}: {exc.strerror or exc}")
                break
            except (IntegrityError, TransferError) as exc:
                error = exc
                left = _next_try(exc, url, mirrors, tries, fetch.tally)
                if isinstance(exc, ResumeRejected):
                    log.info("%s: %s; restarting from zero", entry.path, exc)
            if left[0] is None or left[1] is None:
                break
            mirrors, tries = left[0], left[1]
            await self._back_off(tries, error, attempts, url)
        return Result(
            entry,
            "failed",
            bytes=fetch.tally.bytes,
            elapsed_s=time.monotonic() - self.began,
            attempts=attempts,
            error=str(error),
        )

    async def _back_off(
        self, tries: RetryState, error: DownloadError, attempts: int, url: str
    ) -> None:
        """Wait before the next try (at least what the server's Retry-After says)."""
        delay = 0.0
        if tries.wait:
            retry_after = getattr(error, "retry_after", None)
            delay = tries.delay(retry_after, base=self.ctx.settings.retry_wait)
        retrying = getattr(self.ctx.progress, "file_retrying", None)  # older sinks
        if retrying is not None:
            retrying(self.key, attempts, str(error), delay, url)
        if tries.wait:
            log.info("%s: %s; retrying in %.1fs", self.entry.path, error, delay)
            await asyncio.sleep(delay)

    async def _after_another(
        self,
        paths: FilePaths,
        lock: storage.LazyLock,
        exc: storage.PartBusy | LookAgain,
    ) -> Result | None:
        """Another process holds the file (wait for it) or published it (look)."""
        if isinstance(exc, storage.PartBusy):
            await self._wait_for(lock, exc)
        now = storage.stat_or_none(paths.final_name)
        return await self._complete(paths, now)


def _next_try(
    error: IntegrityError | TransferError,
    url: str,
    mirrors: MirrorSet,
    tries: RetryState,
    tally: Tally,
) -> tuple[MirrorSet | None, RetryState | None]:
    """After a failed try at ``url``: the URLs and tries left (None: it failed)."""
    if isinstance(error, ResumeRejected):
        tally.forget()  # the bytes were thrown away: start counting anew
        return mirrors, tries.after_restart()
    if isinstance(error, IntegrityError):
        tally.forget()
        return mirrors, tries.after_failure(progressed=False)
    if not error.retryable:  # final for this URL: straight on to the next mirror
        return mirrors.drop(url), tries.at_once()
    if tally.progressed():  # bytes had before are no progress
        return mirrors, tries.after_failure(progressed=True)
    # a mirror may do better; one that moves is kept
    return mirrors.rotate(), tries.after_failure(progressed=False)


def _failed(entry: Entry, began: float, exc: BaseException) -> Result:
    """A file that failed on the disk side before any try was made."""
    return Result(entry, "failed", elapsed_s=time.monotonic() - began, error=str(exc))
