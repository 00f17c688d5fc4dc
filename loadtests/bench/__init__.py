"""Benchmarks that compare earmark with a baseline in the same run, on the same machine.

Absolute times on a shared 2-core machine say little, so every benchmark here runs its
subject and its baseline in alternating rounds (subject first on even rounds, baseline
first on odd ones, so a warming or cooling machine favours neither), reports the median
of each and the ratio of the medians. Each starts its own throwaway servers on
127.0.0.1 (``tests/support/servers.py``), is bounded in time and cleans up after itself.

    python -m loadtests.bench.run_all [--quick]    # everything, writes docs/benchmarks.*
    python -m loadtests.bench.engine [--quick]     # one benchmark on its own
    python -m loadtests.bench.postgres_rowlock [--quick]
    python -m loadtests.bench.cluster [--quick]
"""
