"""The reference solver: the damped-least-squares formula, the answers, and the service on Kafka."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kafka_support import any_broker, committed, produce, read_all
from worker.arm import damped_least_squares, jacobian
from worker.kafka.embedded import create_topics
from worker.solver.answer import RequestRef, SolverSettings, answer_batch
from worker.solver.service import SolverConfig, SolverService

REF = RequestRef("solver-requests", 0, 0)


def svd_dls(row: np.ndarray, damping: float) -> np.ndarray:
    """The same answer by another road: V diag(s / (s^2 + damping^2)) U^T dx."""
    jac = jacobian(np.array([row[0]]), np.array([row[1]]))[0]
    u, s, vt = np.linalg.svd(jac)
    return vt.T @ np.diag(s / (s**2 + damping**2)) @ u.T @ row[2:]


class TestFormula:
    """Known configurations, exactly singular ones included."""

    def test_stretched_arm_moves_only_along_the_regular_direction(self) -> None:
        """theta2 = 0, theta1 = 0: the Jacobian is [[0, 0], [2, 1]]; a step along x (the
        singular direction) gets no answer, a step along y the damped pseudo-inverse."""
        along_x, along_y = damped_least_squares(np.array([[0, 0, 0.1, 0], [0, 0, 0, 0.1]]))
        np.testing.assert_allclose(along_x, [0.0, 0.0], atol=1e-15)
        # J J^T = [[0, 0], [0, 5]]: u = 0.1 / (5 + 1e-4); dtheta = J^T u = (2u, u)
        u = 0.1 / (5 + 1e-4)
        np.testing.assert_allclose(along_y, [2 * u, u], rtol=1e-12)

    def test_folded_arm_is_solvable_and_bounded(self) -> None:
        """theta2 = pi: the links cancel; J = [[0, -s1], [0, c1]] at theta1 = t."""
        t = 0.3
        step = damped_least_squares(np.array([[t, np.pi, 0.01, 0.02]]))[0]
        assert np.isfinite(step).all()
        np.testing.assert_allclose(step, svd_dls(np.array([t, np.pi, 0.01, 0.02]), 0.01), atol=1e-9)

    def test_regular_pose_is_the_inverse_for_small_damping(self) -> None:
        """Far from singularities DLS approaches J^-1 dx as damping goes to 0."""
        row = np.array([0.4, 1.2, 0.03, -0.02])
        jac = jacobian(row[:1], row[1:2])[0]
        exact = np.linalg.solve(jac, row[2:])
        np.testing.assert_allclose(damped_least_squares(row[None], 1e-8)[0], exact, rtol=1e-9)

    @settings(max_examples=300, deadline=None)
    @given(
        st.floats(-np.pi, np.pi),
        st.floats(-np.pi, np.pi),
        st.floats(-1, 1),
        st.floats(-1, 1),
        st.floats(1e-3, 1.0),
    )
    def test_closed_form_equals_svd_form(
        self, t1: float, t2: float, dx: float, dy: float, damping: float
    ) -> None:
        """The closed-form 2x2 inverse (zeroproofml's) equals the SVD form everywhere."""
        row = np.array([t1, t2, dx, dy])
        np.testing.assert_allclose(
            damped_least_squares(row[None], damping)[0], svd_dls(row, damping), atol=1e-9
        )


def request(message_id: str, reading: list[float | None] | None) -> bytes:
    inputs = {} if reading is None else {"input_0": reading}
    source = {"topic": "features", "partition": 0, "offset": 7}
    return orjson.dumps(
        {"message_id": message_id, "device_id": "arm-1", "inputs": inputs, "source": source}
    )


class TestAnswers:
    """One answer per request, in order, whatever the request holds."""

    def test_every_request_gets_one_answer(self) -> None:
        values = [
            request("a", [0.1, np.pi, 0.01, 0.0]),
            request("b", [0.1, None, 0.01, 0.0]),
            b"\xff not json",
            request("c", None),
            request("d", [0.1, 0.2, 0.3]),
            request("e", [0.0, 0.0, 0.0, 0.1]),
        ]
        answers = answer_batch(values, [REF] * len(values), SolverSettings(), now=5.0)
        records = [orjson.loads(a.payload) for a in answers]
        assert [r["message_id"] for r in records] == ["a", "b", None, "c", "d", "e"]
        assert [a.status for a in answers] == [
            "solved", "unsolvable", "unsolvable", "unsolvable", "unsolvable", "solved"
        ]  # fmt: skip
        assert [r["status"] for r in records] == [a.status for a in answers]
        assert "null" in records[1]["reason"] and "JSON" in records[2]["reason"]
        np.testing.assert_allclose(
            records[0]["answer"], damped_least_squares(np.array([[0.1, np.pi, 0.01, 0.0]]))[0]
        )
        assert records[0]["method"] == "damped_least_squares" and records[0]["damping"] == 0.01
        assert records[0]["source"] == {"topic": "features", "partition": 0, "offset": 7}
        assert all(r["answer"] is None for r in records[1:5])


@pytest.fixture(scope="module", name="bootstrap")
def _bootstrap() -> Iterator[str]:
    with any_broker() as servers:
        yield servers


@pytest.mark.kafka
def test_service_answers_every_request_and_commits(bootstrap: str) -> None:
    """What an independent reader sees: one answer per request, keyed alike, offsets at the end."""
    tag = np.random.default_rng().integers(1 << 30)
    requests_topic, answers_topic, group = f"req-{tag}", f"ans-{tag}", f"solver-{tag}"
    create_topics(bootstrap, [requests_topic, answers_topic])
    rng = np.random.default_rng(1)
    rows = np.column_stack([rng.uniform(-np.pi, np.pi, (300, 2)), rng.normal(0, 0.05, (300, 2))])
    rows[::50, 1] = 0.0  # exactly stretched
    records = [
        (f"arm-{i % 5}".encode(), request(f"m{i}", row.tolist())) for i, row in enumerate(rows)
    ]
    records.append((b"arm-x", b"garbage"))
    produce(bootstrap, requests_topic, records)
    config = SolverConfig(
        bootstrap_servers=bootstrap,
        group_id=group,
        requests_topic=requests_topic,
        answers_topic=answers_topic,
    )
    stop = threading.Event()
    service = SolverService(config)
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    try:
        answers = read_all(bootstrap, answers_topic, len(records), timeout_s=60)
    finally:
        stop.set()
        thread.join(30)
    assert len(answers) == len(records)
    by_id = {}
    for message in answers:
        body = orjson.loads(message.value())
        by_id[body["message_id"]] = (message.key(), body)
    expected = damped_least_squares(rows)
    for i in range(len(rows)):
        key, body = by_id[f"m{i}"]
        assert key == f"arm-{i % 5}".encode() and body["status"] == "solved"
        np.testing.assert_allclose(body["answer"], expected[i], rtol=1e-12)
    assert by_id[None][1]["status"] == "unsolvable" and by_id[None][0] == b"arm-x"
    assert committed(bootstrap, group, requests_topic, 1) == {0: len(records)}


def test_answers_fit_the_published_schema() -> None:
    """Every answer, solved or not, validates against the wire model behind the schema."""
    from worker.wire.models import SolverAnswer

    values = [request("a", [0.1, 0.2, 0.0, 0.1]), request("b", [None, 0, 0, 0]), b"{"]
    for answer in answer_batch(values, [REF] * 3, SolverSettings(), now=1.0):
        SolverAnswer.model_validate_json(answer.payload)
