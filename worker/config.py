"""Worker configuration: one frozen model, read from flags, environment and file in one place.

Precedence, highest first: command-line flags, ``SCM_WORKER_<FLAG>`` environment variables,
the ``--config`` file (TOML or JSON), defaults. librdkafka properties come from repeatable
``--kafka-config key=value`` flags, ``SCM_WORKER_KAFKA_CONFIG`` (comma- or newline-separated
``key=value``) and ``SCM_WORKER_KAFKA_<PROPERTY>`` with underscores for dots
(``SCM_WORKER_KAFKA_SASL_PASSWORD`` is ``sasl.password``). Their values are kept as
``SecretStr``: configs are logged with keys only.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from worker.errors import ConfigError
from worker.wire.limits import Limits

ENV_PREFIX = "SCM_WORKER_"
KAFKA_ENV_PREFIX = "SCM_WORKER_KAFKA_"
Settings = TypeVar("Settings", bound=BaseModel)

BottomAction = Literal["solver", "reject"]
GapAction = Literal["accept", "reject", "solver"]


class RoutingPolicy(BaseModel):
    """What happens to a sample that is bottom, fault, or in the gap band."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    on_bottom: BottomAction = "solver"
    on_fault: BottomAction | None = None  # None: follow on_bottom
    on_mixed: BottomAction | None = None  # None: follow the fault action
    on_gap: GapAction = "accept"

    @property
    def fault_action(self) -> BottomAction:
        """The action for fault (and provenance-unavailable) bottoms."""
        return self.on_fault or self.on_bottom

    @property
    def mixed_action(self) -> BottomAction:
        """The action for bottoms that are both fault and semantic."""
        return self.on_mixed or self.fault_action


class KafkaClientSettings(BaseModel):
    """librdkafka pass-through properties: kept as secrets, handed to the clients only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_config: dict[str, SecretStr] = Field(default_factory=dict)

    def kafka_overrides(self) -> dict[str, str]:
        """librdkafka properties with their secret values, for the clients only."""
        return {key: value.get_secret_value() for key, value in self.kafka_config.items()}


class WorkerConfig(KafkaClientSettings):
    """Everything ``scm-worker run`` needs; validated once at start, then immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bundle: Path
    policy_file: Path | None = None
    bootstrap_servers: str = Field(min_length=1)
    group_id: str = Field(min_length=1)
    input_topic: str = Field(min_length=1)
    results_topic: str = Field(min_length=1)
    solver_topic: str = Field(min_length=1)
    dlq_topic: str = Field(min_length=1)
    policy: RoutingPolicy = RoutingPolicy()
    max_batch: int = Field(default=512, ge=1, le=100_000)
    max_wait_ms: int = Field(default=5, ge=0, le=60_000)
    # None: ONNX Runtime's default, one thread per core of the machine; under a container CPU
    # limit that oversubscribes, so deployments set it to the limit.
    inference_threads: int | None = Field(default=None, ge=1, le=256)
    commit_interval_ms: int = Field(default=1000, ge=10, le=600_000)
    # Worker processes in the group (one Python thread bounds each); see worker/supervisor.py.
    processes: int = Field(default=1, ge=1, le=64)
    max_in_flight: int = Field(default=50_000, ge=1)
    allow_unverified_legacy: bool = False
    expect_digest: str | None = Field(default=None, pattern=r"^\s*[0-9a-fA-F]{64}\s*$")
    exactly_once: bool = False
    transactional_id: str | None = None
    max_message_bytes: int = Field(default=1_048_576, ge=64)
    max_elements: int = Field(default=65_536, ge=1)
    max_depth: int = Field(default=16, ge=1, le=512)
    max_id_length: int = Field(default=128, ge=1)
    max_context_bytes: int = Field(default=4096, ge=2)
    monitor_jsonl: Path | None = None
    monitor_jsonl_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    events_topic: str | None = None
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # All interfaces: kubelet probes and Prometheus reach a pod on its own address. The
    # endpoints are read-only and carry no secrets; outside containers prefer 127.0.0.1.
    metrics_host: str = Field(default="0.0.0.0", min_length=1)  # noqa: S104
    drift_window_s: float = Field(default=60.0, gt=0)
    drift_threshold: float = Field(default=0.1, gt=0, le=1)
    drift_baseline: float | None = Field(default=None, ge=0, le=1)
    fault_threshold: float = Field(default=0.05, gt=0, le=1)
    fault_baseline: float | None = Field(default=None, ge=0, le=1)
    drift_alpha: float = Field(default=1e-6, gt=0, lt=1)
    drift_min_samples: int = Field(default=30, ge=1)
    reference_drift_threshold: float | None = Field(default=None, ge=0)
    policy_poll_s: float = Field(default=1.0, gt=0)
    direction_head: Path | None = None
    direction_head_input: str | None = None
    direction_head_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    direction_labels: tuple[str, ...] | None = None
    calibrator_store: Path | None = None
    direction_reject_threshold: float = Field(default=0.0, ge=0, le=1)
    direction_device_thresholds: dict[str, float] = Field(default_factory=dict)
    stall_timeout_s: float = Field(default=30.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _topics_differ(self) -> WorkerConfig:
        topics = [self.input_topic, self.results_topic, self.solver_topic, self.dlq_topic]
        if len(set(topics)) != len(topics):
            raise ValueError(f"topics must all differ, found {topics}")
        return self

    @model_validator(mode="after")
    def _ports_fit(self) -> WorkerConfig:
        # with --processes N, process i serves metrics on metrics_port + i
        if self.metrics_port and self.metrics_port + self.processes - 1 > 65535:
            raise ValueError(
                f"metrics_port: expected room for {self.processes} ports up to 65535, "
                f"found {self.metrics_port}"
            )
        return self

    @model_validator(mode="after")
    def _direction_needs_head(self) -> WorkerConfig:
        if self.direction_head is None and self.calibrator_store is not None:
            raise ValueError("calibrator_store: expected --direction-head as well, found none")
        return self

    def redacted(self) -> dict[str, Any]:
        """The config for logs: librdkafka values hidden, only their keys shown."""
        data = self.model_dump(mode="json", exclude={"kafka_config"})
        data["kafka_config_keys"] = sorted(self.kafka_config)
        return data

    def limits(self) -> Limits:
        """The per-message limits the decoder enforces before any large allocation."""
        return Limits(
            max_message_bytes=self.max_message_bytes,
            max_context_bytes=self.max_context_bytes,
            max_id_length=self.max_id_length,
            max_elements=self.max_elements,
            max_depth=self.max_depth,
        )


def parse_kafka_pairs(pairs: list[str], source: str) -> dict[str, str]:
    """``key=value`` strings into a dict; a pair without '=' is a ConfigError."""
    out: dict[str, str] = {}
    for pair in pairs:
        pair = pair.strip()
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: expected key=value, found {pair!r}")
        out[key.strip()] = value.strip()
    return out


def kafka_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """librdkafka properties from the environment."""
    out = parse_kafka_pairs(
        environ.get(f"{KAFKA_ENV_PREFIX}CONFIG", "").replace("\n", ",").split(","),
        f"{KAFKA_ENV_PREFIX}CONFIG",
    )
    for name, value in environ.items():
        if name.startswith(KAFKA_ENV_PREFIX) and name != f"{KAFKA_ENV_PREFIX}CONFIG":
            out[name.removeprefix(KAFKA_ENV_PREFIX).lower().replace("_", ".")] = value
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML or JSON file with the same keys as the flags (underscores)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--config {path}: expected a readable file, found {exc}") from exc
    try:
        data: Any = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: expected TOML or JSON, found {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a table/object, found {type(data).__name__}")
    return data


POLICY_KEYS = ("on_bottom", "on_fault", "on_mixed", "on_gap")


def merge_sources(
    flags: Mapping[str, Any], environ: Mapping[str, str], file_values: Mapping[str, Any]
) -> dict[str, Any]:
    """Flags over environment over file, as one unvalidated mapping (routing nested)."""
    merged: dict[str, Any] = dict(file_values)
    fields = set(WorkerConfig.model_fields) | set(POLICY_KEYS)
    for name in fields - {"kafka_config", "policy"}:
        env_value = environ.get(f"{ENV_PREFIX}{name.upper()}")
        if env_value is not None:
            merged[name] = env_value
    merged.update({k: v for k, v in flags.items() if v is not None})
    kafka = {**dict(file_values.get("kafka_config", {})), **kafka_from_env(environ)}
    kafka.update(flags.get("kafka_config") or {})
    merged["kafka_config"] = kafka
    policy = dict(merged.pop("policy", {}) or {})
    for key in POLICY_KEYS:
        if key in merged:
            policy[key] = merged.pop(key)
    merged["policy"] = policy
    return merged


def explicit_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str], file_values: Mapping[str, Any]
) -> dict[str, Any]:
    """What the operator set explicitly, flat (to report what overrides a policy)."""
    merged = merge_sources(flags, environ, file_values)
    routing = merged.pop("policy")
    merged.pop("kafka_config")
    return {**merged, **routing}


def build_config(
    flags: Mapping[str, Any], environ: Mapping[str, str], file_values: Mapping[str, Any]
) -> WorkerConfig:
    """Merge the three sources and validate; errors name the setting and what was wrong."""
    return validated(WorkerConfig, merge_sources(flags, environ, file_values))


def validated(model: type[Settings], merged: Mapping[str, Any]) -> Settings:
    """Validate merged settings; the first error names the flag, its variable and the value."""
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["loc"] and first["loc"][0] == "kafka_config":
            # librdkafka values are secrets: name the property, never echo what was found.
            key = ".".join(str(p) for p in first["loc"][1:2]) or "kafka_config"
            raise ConfigError(
                f"--kafka-config {key}: {first['msg']} (value hidden; "
                f"--kafka-config, {KAFKA_ENV_PREFIX}* or kafka_config in --config)"
            ) from None
        where = ".".join(str(p) for p in first["loc"]) or "config"
        flag = "--" + where.split(".")[-1].replace("_", "-")
        found = first.get("input")
        raise ConfigError(
            f"{flag}: {first['msg']}, found {found!r} "
            f"(flag, {ENV_PREFIX}{where.split('.')[-1].upper()} or --config)"
        ) from exc


class ServiceConfig(KafkaClientSettings):
    """Settings shared by the companion services (solver, fleet simulator): a Kafka client."""

    bootstrap_servers: str = Field(min_length=1)


def build_service_config(
    model: type[Settings], flags: Mapping[str, Any], environ: Mapping[str, str]
) -> Settings:
    """A companion service's settings: flags over ``SCM_WORKER_<FLAG>``, like the worker's."""
    merged: dict[str, Any] = {}
    for name in set(model.model_fields) - {"kafka_config"}:
        env_value = environ.get(f"{ENV_PREFIX}{name.upper()}")
        if env_value is not None:
            merged[name] = env_value
    merged.update({k: v for k, v in flags.items() if v is not None and k != "kafka_config"})
    merged["kafka_config"] = {**kafka_from_env(environ), **(flags.get("kafka_config") or {})}
    return validated(model, merged)
