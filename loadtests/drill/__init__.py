"""The launch drill: a flash drop against ``earmark serve``, then a verdict.

* ``locustfile.py``: the Locust scenario (shoppers hold, then commit, release or abandon);
  when the test stops it checks the engine through the API and prints the verdict.
* ``verdict.py``: the invariants and the verdict, plain Python (no Locust, no I/O of its
  own), unit-tested in ``tests/test_drill.py``.
* ``drop.py``: the drop mode (``--drop``): its rules, its tally and its checks.
* ``scenario.py``: the scenario's knobs and choices; ``client.py``: a small stdlib HTTP
  client; ``ledger.py``: reads the durable record in a separate process.
* ``run_local.py``: one bounded local drill (``python -m loadtests.drill.run_local``).

See ``docs/drill.md``. Nothing here imports Locust except ``locustfile.py``: Locust
monkey-patches the process with gevent, so it only ever runs as a subprocess of ours.
"""
