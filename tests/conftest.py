"""The suite's fixtures live in tests/support/ and load here, once, for every test:
engines on fakeredis, on a real redis-server and on a real Redis Cluster (backends), the
throwaway PostgreSQL and durable records (durable_fixtures), and the HTTP app (api).

Real servers are throwaway processes on free loopback ports (tests/support/servers.py).
When one cannot be started the test is skipped on a developer machine and FAILS under
CI=true.
"""

pytest_plugins = [
    "tests.support.backends",
    "tests.support.durable_fixtures",
    "tests.support.api",
    "tests.support.webhooks",
]
