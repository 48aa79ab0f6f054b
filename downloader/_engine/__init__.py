"""The run: a bounded queue fed from the manifest, a pool of workers, retries.

- ``downloader.py``  Downloader: the session's life, the queue and the workers
- ``job.py``         FileJob: one entry from start to finish (look, lock, tries)
- ``fetch.py``       FileFetch: one try at one URL, carrying out ``plan_part``
- ``segments.py``    SegmentedDownload: one file over several ranged connections
- ``ranges.py``      Segment geometry, and the opener of each range request
- ``budget.py``      ConnectionBudget: connection slots per host and in all
- ``flight.py``      FileSlots: how many files are in flight (policy.FlightLimit)
- ``gate.py``        ResizableGate: the semaphore both of those resize
- ``ratelimit.py``   RateLimiter: --limit-rate over all transfers
"""

from __future__ import annotations

from .downloader import Downloader

__all__ = ["Downloader"]
