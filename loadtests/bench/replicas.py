"""The cost of replica acknowledgements (EARMARK_MIN_REPLICAS_ACK): the same hot-SKU
reserve load through ``AsyncEngine`` on a primary with one real replica, with
``min_replicas_ack=1`` (every pipelined batch ends with one WAIT) against ``0``,
alternating rounds on the same servers.

    python -m loadtests.bench.replicas [--quick] [--rounds N] [--seconds S] [--processes P]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tests.support.servers import HOST, RedisServer, replica_in_sync

from earmark import EngineConfig
from loadtests.bench import store
from loadtests.bench.common import (
    Comparison,
    Sample,
    Settings,
    add_common_args,
    alternate,
    command_line,
    settings_from,
)
from loadtests.bench.load import WorkSpec, open_earmark, run_load, worker_pool

PREFIX = "bench"
UNITS = 2_000_000
CONCURRENCY = 128


def round_with(
    pool: object, url: str, settings: Settings, replicas: int, tags: list[int]
) -> Callable[[], Sample]:
    config = EngineConfig(prefix=PREFIX, partitions=1)
    options = {
        "prefix": PREFIX,
        "partitions": 1,
        "cluster": False,
        "coalesce": True,
        "min_replicas_ack": replicas,
    }

    def run() -> Sample:
        store.reset(url, config, cluster=False, skus=1, units=UNITS)
        tags[0] += 1
        spec = WorkSpec(
            opener=open_earmark,
            target=url,
            skus=1,
            concurrency=CONCURRENCY,
            seconds=settings.seconds,
            tag=f"rep{replicas}-{tags[0]}",
            options=options,
        )
        sample = run_load(pool, spec, settings.processes)  # type: ignore[arg-type]
        verdict = store.check(
            url, config, cluster=False, skus=1, units=UNITS, accepted=sample.accepted
        )
        return Sample(**{**sample.__dict__, "check": verdict})

    return run


def run(settings: Settings) -> list[Comparison]:
    with RedisServer() as primary:
        replica = RedisServer(extra_args=["--replicaof", HOST, str(primary.port)])
        with replica:
            replica.start()
            replica_in_sync(replica)
            with worker_pool(settings.processes) as pool:
                comparison = Comparison(
                    benchmark="replica acks: hot SKU, one real replica",
                    subject="earmark min_replicas_ack=1 (WAIT per pipeline)",
                    baseline="earmark min_replicas_ack=0",
                    command=command_line(),
                    concurrency=CONCURRENCY,
                    notes="the ratio is the throughput kept when every write waits for a replica",
                )
                tags = [0]
                acked = round_with(pool, primary.url, settings, 1, tags)
                plain = round_with(pool, primary.url, settings, 0, tags)
                return [alternate(comparison, settings.rounds, acked, plain)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    comparisons = run(settings_from(parser.parse_args()))
    print("\n=== summary")
    for comparison in comparisons:
        print(comparison.summary())


if __name__ == "__main__":
    main()
