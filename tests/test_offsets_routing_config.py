"""Pure pieces of the worker: offset bookkeeping, routing, configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REQUIRED_SETTINGS
from worker.config import RoutingPolicy, build_config, kafka_from_env
from worker.errors import ConfigError
from worker.inference.decode import strict_decode
from worker.offsets import OffsetTracker
from worker.routing import route_samples

P0 = ("features", 0)
P1 = ("features", 1)


class TestOffsetTracker:
    """Offsets become committable only behind a contiguous, fully acknowledged prefix."""

    def test_out_of_order_acks_hold_back_the_partition(self) -> None:
        """A later message acknowledged first does not move the position past an earlier one."""
        tracker = OffsetTracker()
        first, second = tracker.add(P0, 10, 2), tracker.add(P0, 11, 1)
        tracker.ack(second)
        assert tracker.ready() == {}
        tracker.ack(first)
        assert tracker.ready() == {}
        tracker.ack(first)
        assert tracker.ready() == {P0: 12}
        assert tracker.in_flight == 0

    @given(st.permutations(list(range(20))))
    def test_any_ack_order_ends_at_the_end(self, order: list[int]) -> None:
        """Whatever the acknowledgement order, the final position is last offset + 1."""
        tracker = OffsetTracker()
        pending = [tracker.add(P0, offset, 1) for offset in range(20)]
        positions = []
        for index in order:
            tracker.ack(pending[index])
            positions.extend(tracker.ready().values())
        assert positions == sorted(positions)
        assert positions[-1] == 20

    def test_forget_drops_unfinished(self) -> None:
        """Revoked partitions leave the tracker; their messages will be redelivered."""
        tracker = OffsetTracker()
        tracker.add(P0, 1, 1)
        assert tracker.forget({P0}) == 1
        assert tracker.in_flight == 0

    def test_a_late_acknowledgement_of_a_forgotten_entry_counts_nothing(self) -> None:
        """Revoked while its outputs were in flight: their reports arrive after forget()."""
        tracker = OffsetTracker()
        late, other = tracker.add(P0, 1, 2), tracker.add(P1, 1, 1)
        assert tracker.forget({P0}) == 1 and tracker.in_flight == 1
        late.delivered(None, None)
        tracker.ack(late)
        assert tracker.in_flight == 1  # still the other partition's message, not 0 or -1
        other.delivered(None, None)
        assert tracker.in_flight == 0 and tracker.ready() == {P1: 2}


def _result(p: list[list[float]], q: list[list[float]]) -> object:
    return strict_decode(np.array(p, np.float32), np.array(q, np.float32), 1e-3, 1e-1)


class TestRouting:
    """Bottoms go where the policy says; fault wins over semantic; gaps follow on_gap."""

    ROWS = (
        [[1.0, 1.0], [np.nan, 1.0], [1.0, 1.0], [1.0, 1.0]],
        [[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.05, 1.0]],
    )

    @pytest.mark.parametrize(
        ("policy", "expected"),
        [
            (RoutingPolicy(), ["accept", "solver", "solver", "accept"]),
            (RoutingPolicy(on_bottom="reject"), ["accept", "reject", "reject", "accept"]),
            (RoutingPolicy(on_fault="reject"), ["accept", "reject", "solver", "accept"]),
            (RoutingPolicy(on_gap="solver"), ["accept", "solver", "solver", "solver"]),
            (
                RoutingPolicy(on_gap="reject", on_bottom="reject", on_fault="solver"),
                ["accept", "solver", "reject", "reject"],
            ),
        ],
    )
    def test_policy(self, policy: RoutingPolicy, expected: list[str]) -> None:
        """Accepted, fault, semantic and gap samples, under each policy."""
        assert route_samples(_result(*self.ROWS), policy) == expected  # type: ignore[arg-type]

    def test_unavailable_provenance_is_fault(self) -> None:
        """Without real provenance every bottom follows on_fault (fail closed)."""
        result = dataclasses.replace(_result(*self.ROWS), provenance_available=False)  # type: ignore[type-var]
        routes = route_samples(result, RoutingPolicy(on_bottom="solver", on_fault="reject"))
        assert routes == ["accept", "reject", "reject", "accept"]


BASE = REQUIRED_SETTINGS


class TestConfig:
    """Flags over environment over file; secrets never shown."""

    def test_precedence(self) -> None:
        """A flag beats the environment, which beats the file."""
        config = build_config(
            {**BASE, "max_batch": 7},
            {"SCM_WORKER_MAX_BATCH": "9", "SCM_WORKER_MAX_WAIT_MS": "3"},
            {"max_wait_ms": 50, "on_gap": "reject"},
        )
        assert (config.max_batch, config.max_wait_ms, config.policy.on_gap) == (7, 3, "reject")
        assert config.policy.fault_action == "solver"

    def test_environment_alone(self) -> None:
        """Every flag can come from SCM_WORKER_<FLAG>."""
        env = {f"SCM_WORKER_{k.upper()}": v for k, v in BASE.items()}
        env["SCM_WORKER_EXACTLY_ONCE"] = "true"
        assert build_config({}, env, {}).exactly_once is True

    def test_secrets_are_redacted(self) -> None:
        """librdkafka values are SecretStr: logs see keys, never values."""
        config = build_config({**BASE, "kafka_config": {"sasl.password": "hunter2"}}, {}, {})
        assert "hunter2" not in repr(config) and "hunter2" not in str(config.redacted())
        assert config.kafka_overrides()["sasl.password"] == "hunter2"

    def test_kafka_from_environment(self) -> None:
        """SCM_WORKER_KAFKA_<PROP> and SCM_WORKER_KAFKA_CONFIG both reach librdkafka."""
        env = {
            "SCM_WORKER_KAFKA_SASL_MECHANISMS": "PLAIN",
            "SCM_WORKER_KAFKA_CONFIG": "security.protocol=SASL_SSL,linger.ms=1",
        }
        assert kafka_from_env(env) == {
            "sasl.mechanisms": "PLAIN",
            "security.protocol": "SASL_SSL",
            "linger.ms": "1",
        }

    @pytest.mark.parametrize(
        ("override", "flag"),
        [
            ({"max_batch": 0}, "--max-batch"),
            ({"on_gap": "maybe"}, "--on-gap"),
            ({"dlq_topic": "in"}, "--config"),
        ],
    )
    def test_bad_values_name_the_flag(self, override: dict[str, object], flag: str) -> None:
        """A bad value is one ConfigError that names the setting."""
        with pytest.raises(ConfigError, match=flag):
            build_config({**BASE, **override}, {}, {})

    def test_missing_required(self, tmp_path: Path) -> None:
        """A missing required setting names its flag."""
        with pytest.raises(ConfigError, match="--bundle"):
            build_config({k: v for k, v in BASE.items() if k != "bundle"}, {}, {})


def test_inference_threads_reach_onnx_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """--inference-threads sets ONNX Runtime's intra-op pool; bad values are refused at start."""
    import onnxruntime as ort

    from worker.bundle import verify_bundle
    from worker.cli.demo_cmd import default_bundle_path
    from worker.inference import BundleRunner

    seen: list[int] = []
    real = ort.InferenceSession

    def spy(*args: Any, sess_options: ort.SessionOptions, **kwargs: Any) -> Any:
        seen.append(sess_options.intra_op_num_threads)
        return real(*args, sess_options=sess_options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    BundleRunner(verify_bundle(default_bundle_path()), intra_op_threads=3)
    assert seen == [3]
    config = build_config({**BASE, "inference_threads": "2"}, {}, {})
    assert config.inference_threads == 2
    with pytest.raises(ConfigError, match="--inference-threads"):
        build_config({**BASE, "inference_threads": 0}, {}, {})
