"""Redis's own refusals, as our errors: every way Redis declines to serve for now (down,
out of memory, a replica, busy, loading, a primary without its replicas) becomes a typed
``StoreUnavailable`` that the service answers with 503 and ``Retry-After``, never a 500.

A script's own ``error()`` (an impossible state: a bug) is not among them and stays a
server error.
"""

from __future__ import annotations

import redis.exceptions

from earmark.errors import (
    EarmarkError,
    StoreBusy,
    StoreFull,
    StoreLoading,
    StoreReadOnly,
    StoreUnavailable,
)

# Replies that start with these words (redis-py leaves some as plain ResponseError).
PREFIXES: dict[str, type[StoreUnavailable]] = {
    "OOM": StoreFull,
    "READONLY": StoreReadOnly,
    "BUSY": StoreBusy,
    "LOADING": StoreLoading,
    "MASTERDOWN": StoreUnavailable,
    "NOREPLICAS": StoreUnavailable,
    "CLUSTERDOWN": StoreUnavailable,
    "TRYAGAIN": StoreUnavailable,
}


def store_error(error: BaseException) -> EarmarkError | None:
    """Our error for a Redis failure that means "not now"; None for anything else."""
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return StoreReadOnly(f"Redis answered as a replica: {error}")
    if isinstance(error, redis.exceptions.BusyLoadingError):
        return StoreLoading(f"Redis is loading its data: {error}")
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        return StoreFull(f"Redis is out of memory: {error}")
    if isinstance(
        error,
        redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | redis.exceptions.ClusterDownError
        | redis.exceptions.TryAgainError
        | redis.exceptions.MasterDownError,
    ):
        return StoreUnavailable(f"Redis did not serve the request: {type(error).__name__}: {error}")
    if isinstance(error, redis.exceptions.ResponseError):
        word = str(error).split(" ", 1)[0].upper()
        kind = PREFIXES.get(word)
        if kind is not None:
            return kind(f"Redis refused the request: {error}")
    return None
