"""Hardening that needs no broker: health during outages, limits, secrets, files, pickles."""

from __future__ import annotations

import ast
import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import KafkaError
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES, REQUIRED_SETTINGS
from worker.cli import main
from worker.config import build_config
from worker.errors import ConfigError
from worker.monitoring.broker import BrokerWatch
from worker.monitoring.metrics import Health, Metrics, serve
from worker.wire.deadletter import MAX_VALUE_BYTES, dead_letter_value
from worker.wire.decode import ErrorCode, Rejection, Sample, SampleSpec, decode_feature
from worker.wire.limits import Limits

REQUIRED = REQUIRED_SETTINGS
SPEC = (SampleSpec("input_0", (4,), np.dtype(np.float32)),)
WORKER = Path(__file__).parent.parent / "worker"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stats(rx: int, at_s: float, state: str = "UP") -> str:
    brokers = {"b:9092/1": {"state": state, "rx": rx}}
    return json.dumps({"ts": int(at_s * 1e6), "brokers": brokers, "topics": {}})


class TestHealthDuringOutage:
    """Liveness stays up through a broker outage (a restart cannot fix it); readiness fails."""

    def test_outage_explains_no_progress(self) -> None:
        clock = Clock()
        health = Health(stall_timeout_s=5, clock=clock)
        health.bundle_loaded, health.assigned = True, 3
        watch = BrokerWatch(health, Metrics())
        watch.on_stats(stats(10, 100))
        assert health.readiness()[0]
        health.beat(progressed=False, work_waiting=True)
        watch.on_stats(stats(10, 102))  # a quiet moment is not an outage
        assert health.readiness()[0]
        watch.on_stats(stats(10, 105))  # nothing answered for 5 s
        clock.now = 60
        health.beat(progressed=False, work_waiting=True)
        live, body = health.liveness()
        assert live and body["broker_connected"] is False and body["seconds_broker_down"] == 60
        assert "no broker answered for 5 s" in body["broker_error"]
        assert not health.readiness()[0]
        watch.on_stats(stats(11, 106))
        assert health.readiness()[0] and health.liveness()[1]["broker_error"] is None

    def test_a_stall_with_a_healthy_broker_still_fails_liveness(self) -> None:
        clock = Clock()
        health = Health(stall_timeout_s=5, clock=clock)
        watch = BrokerWatch(health, None)
        watch.on_stats(stats(1, 0))
        for second in range(1, 10):
            clock.now = second
            watch.on_stats(stats(1 + second, second))
            health.beat(progressed=False, work_waiting=True)
        assert not health.liveness()[0]

    def test_all_brokers_down_is_immediate_and_counted(self) -> None:
        health, metrics = Health(), Metrics()
        watch = BrokerWatch(health, metrics)
        watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        watch.on_error(KafkaError(KafkaError._TRANSPORT, "connection refused"))
        assert health.broker_error == "_ALL_BROKERS_DOWN: 1/1 brokers are down"
        text = metrics_text(metrics)
        assert "scm_broker_up 0.0" in text
        assert 'scm_broker_errors_total{code="_TRANSPORT"} 1.0' in text

    def test_a_connected_but_silent_broker_is_down(self) -> None:
        """A blackhole keeps the connection UP; only the received count tells."""
        health = Health()
        watch = BrokerWatch(health, None)
        watch.on_stats(stats(5, 10))
        watch.on_stats(stats(5, 12))
        assert health.broker_connected is True
        watch.on_stats(stats(5, 15))
        assert health.broker_connected is False

    def test_server_binds_the_configured_address(self) -> None:
        server = serve(0, Metrics(), Health(), host="127.0.0.1")
        try:
            assert server.server_address[0] == "127.0.0.1"
        finally:
            server.shutdown()
            server.server_close()
        config = build_config(
            {**REQUIRED, "metrics_port": 9100}, {"SCM_WORKER_METRICS_HOST": "::1"}, {}
        )
        assert config.metrics_host == "::1"
        assert build_config(REQUIRED, {}, {}).metrics_host == "0.0.0.0"


def metrics_text(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


class TestConfigurableLimits:
    """Limits come from flags, environment or file, and the decoder enforces those values."""

    def test_flags_reach_the_decoder(self) -> None:
        config = build_config(
            {**REQUIRED, "max_id_length": 8, "max_elements": 3},
            {"SCM_WORKER_MAX_DEPTH": "2"},
            {"max_context_bytes": 20},
        )
        limits = config.limits()
        assert limits == Limits(1_048_576, 20, 8, 3, 2)
        spec = (SampleSpec("input_0", (None,), np.dtype(np.float32)),)

        def code(doc: dict[str, Any]) -> ErrorCode | None:
            body = {"message_id": "m", "device_id": "d", "inputs": {"input_0": [1, 2]}, **doc}
            out = decode_feature(json.dumps(body).encode(), spec, limits)
            return out.code if isinstance(out, Rejection) else None

        assert code({}) is None
        assert code({"message_id": "123456789"}) == ErrorCode.INVALID_MESSAGE
        assert code({"inputs": {"input_0": [1, 2, 3, 4]}}) == ErrorCode.TOO_LARGE
        assert code({"context": {"k": "x" * 30}}) == ErrorCode.TOO_LARGE

    @pytest.mark.parametrize("name", ["max_elements", "max_depth", "max_id_length"])
    def test_nonsense_limits_are_refused(self, name: str) -> None:
        with pytest.raises(ConfigError, match=name.replace("_", "-")):
            build_config({**REQUIRED, name: 0}, {}, {})

    def test_limits_are_checked_before_large_allocations(self) -> None:
        """Over the element limit: nothing is allocated beyond the JSON parse itself.

        The parse is bounded by the byte limit, which is checked before parsing.
        """
        value = json.dumps(
            {"message_id": "m", "device_id": "d", "inputs": {"input_0": [0.5] * 200_000}}
        ).encode()
        tracemalloc.start()
        try:
            orjson.loads(value)
            _, parse_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            out = decode_feature(value, SPEC, Limits(max_elements=1000))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert isinstance(out, Rejection) and out.code == ErrorCode.TOO_LARGE
        assert peak < parse_peak * 1.05 + 64 * 1024, (peak, parse_peak)
        oversized = b" " * 2_000_000
        tracemalloc.start()
        try:
            out = decode_feature(oversized, SPEC, Limits())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert isinstance(out, Rejection) and out.code == ErrorCode.TOO_LARGE
        assert peak < 64 * 1024, "the size is checked before anything is parsed"


ids = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=140
)


class TestHostileDecoding:
    """Property tests at the decoder: anything becomes a sample or a rejection with a reason."""

    @settings(max_examples=300, deadline=None)
    @given(ids, ids)
    def test_control_and_unicode_ids(self, message_id: str, device_id: str) -> None:
        value = orjson.dumps(
            {"message_id": message_id, "device_id": device_id, "inputs": {"input_0": [1, 2, 3, 4]}}
        )
        out = decode_feature(value, SPEC, Limits())
        if len(message_id) <= 128 and len(device_id) <= 128:
            assert isinstance(out, Sample) and out.message_id == message_id
        else:
            assert isinstance(out, Rejection) and out.code == ErrorCode.INVALID_MESSAGE

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(["message_id", "device_id", "inputs", "input_0"]), st.data())
    def test_duplicate_keys_decide_once(self, key: str, data: st.DataObject) -> None:
        """Duplicate keys: the last wins on both parsers (orjson and the NaN-token fallback)."""
        junk = data.draw(st.sampled_from(['"x"', "7", "[1,2,3,4]", "null", '{"a":1}']))
        nan = data.draw(st.booleans())
        vector = "[NaN,2,3,4]" if nan else "[1,2,3,4]"
        if key == "input_0":
            inputs = f'{{"input_0":{junk},"input_0":{vector}}}'
            text = f'{{"message_id":"m","device_id":"d","inputs":{inputs}}}'
        else:
            good = {"message_id": '"m"', "device_id": '"d"', "inputs": f'{{"input_0":{vector}}}'}
            fields = [f'"{key}":{junk}'] + [f'"{k}":{v}' for k, v in good.items()]
            text = "{" + ",".join(fields) + "}"
        out = decode_feature(text.encode(), SPEC, Limits())
        assert isinstance(out, Sample), out

    @settings(max_examples=100, deadline=None)
    @given(st.integers(4097, 2_000_000))
    def test_enormous_context(self, size: int) -> None:
        body = {"message_id": "m", "device_id": "d", "inputs": {"input_0": [1, 2, 3, 4]}}
        value = orjson.dumps({**body, "context": {"blob": "x" * size}})
        out = decode_feature(value, SPEC, Limits())
        assert isinstance(out, Rejection) and out.code == ErrorCode.TOO_LARGE and out.reason


class TestDeadLetterSize:
    def test_values_over_the_record_limit_are_cut_and_marked(self) -> None:
        value, headers = dead_letter_value(b"x" * (MAX_VALUE_BYTES + 5))
        assert value is not None and len(value) == MAX_VALUE_BYTES
        assert headers == [("scm-value-truncated", str(MAX_VALUE_BYTES + 5).encode())]
        assert dead_letter_value(b"small") == (b"small", [])
        assert dead_letter_value(None) == (None, [])


class TestNothingUnpickled:
    """No pickle anywhere: not imported, and every np.load refuses object arrays."""

    def test_source(self) -> None:
        for path in WORKER.rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                    assert not {"pickle", "dill", "joblib", "shelve", "cloudpickle"} & {
                        n.split(".")[0] for n in names
                    }, path
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and getattr(node.func.value, "id", "") == "np"
                ):
                    flag = {k.arg: k.value for k in node.keywords}.get("allow_pickle")
                    assert isinstance(flag, ast.Constant) and flag.value is False, path

    def test_pickled_inputs_are_refused(self, tmp_path: Path) -> None:
        np.savez(tmp_path / "in.npz", input_0=np.array([{"evil": 1}], dtype=object))
        bundle = FIXTURES / "v061_reference_robotics_seed7" / "bundle"
        code = main(
            [
                "bundle",
                "run",
                str(bundle),
                "--inputs",
                str(tmp_path / "in.npz"),
                "--out",
                str(tmp_path / "o.npz"),
            ]
        )
        assert code != 0 and not (tmp_path / "o.npz").exists()


class TestIdsAreNeverPaths:
    """Device and message ids reach the file system only hashed (calibrator store)."""

    def test_no_id_reaches_a_path_constructor(self) -> None:
        offenders = []
        for path in WORKER.rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                # file_id is sha256(device_id)[:16], checked against the id when a store loads.
                if (
                    ("device_id" in line or "message_id" in line)
                    and ("Path(" in line or "open(" in line or " / " in line)
                    and "file_id" not in line
                ):
                    offenders.append(f"{path.relative_to(WORKER)}:{number}: {line.strip()}")
        assert not offenders, offenders
