"""Limits on the requests sent to object stores, passed down as a value."""

from __future__ import annotations

from dataclasses import dataclass

from artifact_gc.storage.s3 import STRATEGY_RANGE


@dataclass(frozen=True)
class RequestLimits:
    """``--max-requests-per-second`` and how S3 keys are found.

    Given explicitly to every backend and listing that talks to an object store; no
    module keeps a default of its own.
    """

    max_requests_per_second: float | None = None
    s3_strategy: str = STRATEGY_RANGE
