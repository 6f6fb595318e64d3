"""The reference solver service: consume solver requests, answer, produce, then commit.

At-least-once, like the worker: a batch's request offsets are committed only after the broker
acknowledged every answer of the batch, so a crash answers some requests twice (same
``request`` coordinates) and never none.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, start_http_server
from pydantic import Field

from worker.config import ServiceConfig
from worker.errors import ConfigError
from worker.kafka.produce import produce_waiting
from worker.solver.answer import RequestRef, SolverSettings, answer_batch

log = structlog.get_logger("worker.solver")

MAX_BATCH = 1000
FLUSH_TIMEOUT_S = 30.0


class SolverConfig(ServiceConfig):
    """``scm-worker solver`` settings."""

    group_id: str = Field(default="scm-solver", min_length=1)
    requests_topic: str = Field(min_length=1)
    answers_topic: str = Field(min_length=1)
    damping: float = Field(default=0.01, gt=0)
    input_name: str = Field(default="input_0", min_length=1)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    def settings(self) -> SolverSettings:
        """The pure solver's view of the configuration."""
        return SolverSettings(damping=self.damping, input_name=self.input_name)


def _clients(config: SolverConfig) -> tuple[Consumer, Producer]:
    common: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "client.id": f"scm-solver-{socket.gethostname()}",
    }
    consumer_props = {
        **common,
        "group.id": config.group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,  # committed by hand once the batch's answers are acked
        "session.timeout.ms": 6000,
        "isolation.level": "read_committed",
        **config.kafka_overrides(),
    }
    producer_props = {
        **common,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        **config.kafka_overrides(),
    }
    producer_props.pop("group.id", None)
    try:
        return Consumer(consumer_props), Producer(producer_props)
    except KafkaException as exc:
        raise ConfigError(f"kafka client configuration: {exc.args[0].str()}") from exc


class SolverService:
    """One consumer-group member answering requests batch by batch."""

    def __init__(self, config: SolverConfig) -> None:
        self.config = config
        self.settings = config.settings()
        self.consumer, self.producer = _clients(config)
        self.registry = CollectorRegistry()
        self.answers = Counter(
            "scm_solver_answers",
            "Solver answers published, by status",
            ["status"],
            registry=self.registry,
        )
        self.answered = 0

    def run(self, stop: threading.Event) -> int:
        """Answer until ``stop`` is set; returns the number of answers published."""
        if self.config.metrics_port is not None:
            start_http_server(self.config.metrics_port, registry=self.registry)
        self.consumer.subscribe([self.config.requests_topic])
        log.info(
            "solver.started", config=self.config.model_dump(mode="json", exclude={"kafka_config"})
        )
        try:
            while not stop.is_set():
                messages = self.consumer.consume(MAX_BATCH, 0.2)
                usable = [m for m in messages if not self._is_error(m)]
                if usable:
                    self._answer(usable)
        finally:
            self.consumer.close()
            log.info("solver.stopped", answered=self.answered)
        return self.answered

    def _answer(self, messages: list[Message]) -> None:
        refs = [RequestRef(m.topic() or "", m.partition() or 0, m.offset() or 0) for m in messages]
        answers = answer_batch([m.value() for m in messages], refs, self.settings, time.time())
        failures: list[str] = []

        def delivered(err: KafkaError | None, _: Message) -> None:
            if err is not None:
                failures.append(err.str())

        for message, answer in zip(messages, answers, strict=True):
            produce_waiting(
                self.producer,
                self.config.answers_topic,
                answer.payload,
                message.key(),
                on_delivery=delivered,
            )
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        if failures or remaining:
            # Not committing is the retry: seek back so the whole batch is answered again.
            log.warning(
                "solver.produce_failed", reason=failures[0] if failures else None, unacked=remaining
            )
            for tp in self._first_offsets(messages):
                self.consumer.seek(tp)
            return
        self.consumer.commit(offsets=self._next_offsets(messages), asynchronous=False)
        for answer in answers:
            self.answers.labels(answer.status).inc()
        self.answered += len(answers)

    @staticmethod
    def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            last[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
        return [TopicPartition(t, p, o) for (t, p), o in last.items()]

    @staticmethod
    def _first_offsets(messages: list[Message]) -> list[TopicPartition]:
        first: dict[tuple[str, int], int] = {}
        for m in messages:
            first.setdefault((m.topic() or "", m.partition() or 0), m.offset() or 0)
        return [TopicPartition(t, p, o) for (t, p), o in first.items()]

    @staticmethod
    def _is_error(message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("solver.consume_error", code=error.name(), reason=error.str())
        return True
