"""Assembly: turn a validated config into a running worker with its monitoring attached."""

from __future__ import annotations

import gc

import structlog
from confluent_kafka import KafkaException, Producer

from worker.bundle import verify_bundle
from worker.calibration.stage import DirectionSettings, DirectionStage, build_stage
from worker.config import WorkerConfig
from worker.errors import ConfigError
from worker.inference import BundleRunner
from worker.kafka.clients import make_clients, producer_config
from worker.loop import Worker
from worker.monitoring.broker import BrokerWatch
from worker.monitoring.drift import DriftSettings
from worker.monitoring.metrics import Health, Metrics, serve
from worker.monitoring.observer import MonitorSettings, Observer
from worker.monitoring.sinks import FanOut, JsonlSink, KafkaEventSink, Sink
from worker.policy.check import check_bundle, direction_settings
from worker.policy.model import read_policy
from worker.policy.watch import PolicyWatcher

log = structlog.get_logger("worker.app")

# The hot path allocates tens of thousands of short-lived containers a second (parsed
# documents, tuples, records); reference counting frees them, so the cycle collector's
# young-generation passes every 700 net allocations find almost nothing and cost ~6 % of the
# loop's instructions (callgrind). The young count rises with objects that stay alive, so
# cyclic garbage is still collected, once at most ~20,000 such objects have piled up.
GC_YOUNG_THRESHOLD = 20_000


def settle_gc() -> None:
    """Once the worker is built: keep what lives for the whole run out of every collection
    (modules, the ONNX session, metrics: ``gc.freeze``) and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def monitor_settings(config: WorkerConfig) -> MonitorSettings:
    """Drift and reference-event settings from the flags."""
    return MonitorSettings(
        drift=DriftSettings(
            window_s=config.drift_window_s,
            accept_threshold=config.drift_threshold,
            fault_threshold=config.fault_threshold,
            accept_baseline=config.drift_baseline,
            fault_baseline=config.fault_baseline,
            alpha=config.drift_alpha,
            min_samples=config.drift_min_samples,
        ),
        reference_drift_threshold=config.reference_drift_threshold,
    )


def _events_producer(config: WorkerConfig) -> Producer:
    # A producer of its own: events must flow even when outputs go through transactions.
    props = producer_config(config.model_copy(update={"exactly_once": False}))
    try:
        return Producer(props)
    except KafkaException as exc:
        raise ConfigError(f"kafka events producer: {exc.args[0].str()}") from exc


def config_direction(config: WorkerConfig) -> DirectionSettings | None:
    """The direction head as configured (flags over policy), or None."""
    if config.direction_head is None:
        return None
    return DirectionSettings(
        head=config.direction_head,
        input_name=config.direction_head_input,
        head_sha256=config.direction_head_sha256,
        labels=config.direction_labels,
        store=config.calibrator_store,
        threshold=config.direction_reject_threshold,
        device_thresholds=dict(config.direction_device_thresholds),
    )


def build_worker(config: WorkerConfig) -> Worker:
    """Verify the bundle, build clients, sinks, metrics and health, and wire the loop."""
    bundle = verify_bundle(
        config.bundle,
        allow_unverified_legacy=config.allow_unverified_legacy,
        expected_digest=config.expect_digest,
    )
    runner = BundleRunner(bundle, intra_op_threads=config.inference_threads)
    for warning in runner.warnings:
        log.warning("bundle.warning", detail=warning)
    sinks: list[Sink] = []
    if config.monitor_jsonl is not None:
        sinks.append(JsonlSink(config.monitor_jsonl, max_bytes=config.monitor_jsonl_max_bytes))
    if config.events_topic is not None:
        sinks.append(KafkaEventSink(_events_producer(config), config.events_topic))
    metrics = health = None
    watch: BrokerWatch | None = None
    if config.metrics_port is not None:
        metrics = Metrics()
        health = Health(stall_timeout_s=config.stall_timeout_s)
        health.bundle_loaded = True
        watch = BrokerWatch(health, metrics)
        server = serve(config.metrics_port, metrics, health, host=config.metrics_host)
        log.info(
            "worker.metrics_listening",
            host=server.server_address[0],
            port=server.server_address[1],
        )
    observer = Observer(
        bundle.digest, monitor_settings(config), FanOut(sinks) if sinks else None, metrics, health
    )
    settings = config_direction(config)
    direction: DirectionStage | None = None
    if settings is not None:
        direction = build_stage(settings, runner.inputs, bundle.digest)
    watcher = policy = None
    if config.policy_file is not None:
        loaded_policy, digest = read_policy(config.policy_file)
        check_bundle(loaded_policy, bundle, str(config.policy_file))
        policy = {"name": loaded_policy.name, "revision": loaded_policy.revision, "sha256": digest}
        # A head given by flags survives reloads; the policy's own head is re-read each time.
        from_policy = direction_settings(loaded_policy, config.policy_file)
        watcher = PolicyWatcher(
            config.policy_file,
            digest,
            config.policy_poll_s,
            fallback_direction=settings if settings != from_policy else None,
            inference_threads=config.inference_threads,
        )
    consumer, producer = make_clients(
        config,
        stats_cb=watch.on_stats if watch is not None else None,
        error_cb=watch.on_error if watch is not None else None,
    )
    log.info(
        "worker.starting",
        config=config.redacted(),
        bundle_id=bundle.digest,
        adapter=runner.adapter.name,
        direction_store=direction.store_id if direction is not None else None,
    )
    return Worker(
        config,
        runner,
        consumer,
        producer,
        observer=observer,
        watcher=watcher,
        policy_ref=policy,
        direction=direction,
    )
