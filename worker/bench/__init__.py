"""``scm-worker bench``: the worker's throughput, latency and memory against its ceilings.

Each phase is a module of its own; :mod:`worker.bench.suite` runs them in order and
:mod:`worker.bench.report` turns the figures into a table and JSON.
"""

# Every phase, in the order they run.
PHASES = ("ort", "passthrough", "worker", "naive", "latency", "memory")
