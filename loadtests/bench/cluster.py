"""Scale-out: the 10,000-SKU workload on a 3-master Redis Cluster against one Redis.

Subject: ``AsyncEngine.from_url(..., cluster=True)`` with ``EngineConfig(partitions=12)``
on a local 3-master cluster. Baselines, with the same callers: one Redis with
``partitions=1``, once with the default coalescing and once with ``coalesce=False``.
The second baseline matters because ``AsyncEngine`` does not coalesce on a cluster
(each call is routed on its own), so cluster-vs-single mixes two effects; cluster vs
single-without-coalescing isolates the one that scale-out is about.

What to expect on a 2-core machine: three redis-server processes and the Python client
share two cores, and the client, not Redis, is the bottleneck (see the engine
benchmark). So the cluster cannot win here; the figure shows what routing costs the
client, not what more Redis capacity would buy on more machines.

    python -m loadtests.bench.cluster [--quick] [--rounds N] [--seconds S] [--processes P]
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import redis.cluster
from tests.support.servers import RedisCluster, RedisServer

from earmark import EngineConfig
from earmark.keys import Keys
from loadtests.bench import store
from loadtests.bench.common import (
    Comparison,
    Sample,
    Settings,
    add_common_args,
    command_line,
    rotate_rounds,
    settings_from,
)
from loadtests.bench.load import WorkSpec, open_earmark, run_load, worker_pool

PREFIX = "scale"
SKUS = 10_000
UNITS = 1_000  # per SKU: ample at any rate a round reaches
CLUSTER_PARTITIONS = 12
CONCURRENCY = 128
_tags = itertools.count()


@dataclass(frozen=True)
class Target:
    """One side: where earmark runs and how the engine is set up."""

    label: str
    url: str
    partitions: int
    cluster: bool
    coalesce: bool

    @property
    def config(self) -> EngineConfig:
        return EngineConfig(prefix=PREFIX, partitions=self.partitions)


def one_redis(url: str, *, coalesce: bool) -> Target:
    label = f"earmark on one Redis, coalesce={coalesce}"
    return Target(label, url, 1, cluster=False, coalesce=coalesce)


def side(pool: ProcessPoolExecutor, target: Target, settings: Settings) -> Callable[[], Sample]:
    """One round: reset the store, run the callers, check every bucket."""
    options = {
        "prefix": PREFIX,
        "partitions": target.partitions,
        "cluster": target.cluster,
        "coalesce": target.coalesce,
    }

    def run() -> Sample:
        store.reset(target.url, target.config, cluster=target.cluster, skus=SKUS, units=UNITS)
        spec = WorkSpec(
            opener=open_earmark,
            target=target.url,
            skus=SKUS,
            concurrency=CONCURRENCY,
            seconds=settings.seconds,
            tag=f"c{next(_tags)}",
            options=options,
        )
        sample = run_load(pool, spec, settings.processes)
        verdict = store.check(
            target.url,
            target.config,
            cluster=target.cluster,
            skus=SKUS,
            units=UNITS,
            accepted=sample.accepted,
        )
        return replace(sample, check=verdict)

    return run


def partitions_per_node(url: str) -> str:
    """How the partitions' hash tags spread over the masters: uneven spread caps the gain."""
    keys = Keys(PREFIX)
    client: Any = redis.cluster.RedisCluster.from_url(url)  # node lookup is untyped
    try:
        nodes = Counter(
            client.get_node_from_key(keys.meta(p)).port for p in range(CLUSTER_PARTITIONS)
        )
    finally:
        client.close()
    return "/".join(str(n) for _, n in sorted(nodes.items()))


def run(settings: Settings) -> list[Comparison]:
    with (
        RedisCluster() as cluster,
        RedisServer() as single,
        worker_pool(settings.processes) as pool,
    ):
        targets = [
            Target(
                "earmark on 3-master cluster, 12 partitions",
                cluster.url,
                CLUSTER_PARTITIONS,
                cluster=True,
                coalesce=False,
            ),
            one_redis(single.url, coalesce=True),
            one_redis(single.url, coalesce=False),
        ]
        spread = partitions_per_node(cluster.url)
        title = f"scale-out: {SKUS:,} SKUs (concurrency {CONCURRENCY})"
        sides = [(t.label, side(pool, t, settings)) for t in targets]
        samples = rotate_rounds(title, settings.rounds, sides)
    notes = (
        f"partitions per master {spread}; AsyncEngine does not coalesce on a cluster; "
        f"{settings.processes} client process(es) and 3 redis-servers share {os.cpu_count()} cores"
    )
    comparisons = []
    for baseline, baseline_samples in zip(targets[1:], samples[1:], strict=True):
        comparison = Comparison(
            benchmark=f"scale-out: {SKUS:,} SKUs",
            subject=targets[0].label,
            baseline=baseline.label,
            command=command_line(),
            concurrency=CONCURRENCY,
            subject_samples=samples[0],
            baseline_samples=baseline_samples,
            notes=notes,
        )
        print(comparison.summary(), flush=True)
        comparisons.append(comparison)
    return comparisons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    comparisons = run(settings_from(parser.parse_args()))
    print("\n=== summary")
    for comparison in comparisons:
        print(comparison.summary())


if __name__ == "__main__":
    main()
