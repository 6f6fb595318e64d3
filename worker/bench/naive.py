"""The worker a user would otherwise write: one message at a time, flushed and committed.

Poll one message, parse it, run the model on one sample, produce the result, flush, commit
synchronously. It reuses the project's decoder, runner and encoder, so the difference to
the worker is the batching and the delivery bookkeeping, not the code that computes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from worker.bench.kafka_io import worker_like_clients
from worker.config import RoutingPolicy
from worker.inference import BundleRunner
from worker.loop import bundle_ref, sample_specs
from worker.routing import route_samples
from worker.wire.decode import Sample, decode_feature, stack_inputs
from worker.wire.encode import Source, encode_batch
from worker.wire.limits import Limits


def naive_msgs_per_s(
    bootstrap: str,
    runner: BundleRunner,
    source: str,
    sink: str,
    n: int,
    progress: Callable[[int], None],
    timeout_s: float = 300.0,
) -> float:
    """Messages per second over ``n`` messages, timed from the first one polled."""
    consumer, producer = worker_like_clients(bootstrap, "naive", **{"enable.auto.commit": False})
    specs, bundle, limits = sample_specs(runner), bundle_ref(runner), Limits()
    policy = RoutingPolicy()
    consumer.subscribe([source])
    done = 0
    started: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while done < n and time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is None or message.error() is not None:
                continue
            started = started or time.perf_counter()
            sample = decode_feature(message.value(), specs, limits)
            if isinstance(sample, Sample):
                result = runner.run(stack_inputs([sample], specs))
                where = Source(
                    message.topic() or "", message.partition() or 0, message.offset() or 0
                )
                routes = route_samples(result, policy)
                (payload,) = encode_batch([sample], [where], result, routes, bundle, time.time())
                producer.produce(sink, payload, message.key())
                producer.flush(10)
            consumer.store_offsets(message)
            consumer.commit(asynchronous=False)
            done += 1
            progress(done)
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        consumer.close()
    return done / elapsed if elapsed > 0 else 0.0
