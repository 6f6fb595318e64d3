"""Direction of bottoms: zeroproofml's reference classes, the reject gate, the calibrator store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES
from worker.calibration.calibrators import Identity, Isotonic, Temperature, softmax
from worker.calibration.direction import (
    DirectionPolicy,
    censored_3way,
    decide,
    gate,
    head_class_ids,
)
from worker.calibration.store import device_file_id, load_store, write_store
from worker.errors import ConfigError
from worker.inference.result import StrictResult

HELPERS = FIXTURES / "runtime_helpers_example" / "helpers_cases.npz"
# Every decode_strict_censored_3way option combination the reference file holds.
VARIANTS = {
    "plain": (),
    "logits": ("direction_logits",),
    "orientation": ("orientation_signal",),
    "logits_and_provenance": ("direction_logits", "bottom_provenance"),
    "logits_orientation_provenance": (
        "direction_logits",
        "orientation_signal",
        "bottom_provenance",
    ),
    "provenance_only": ("bottom_provenance",),
    "fault_mask_only": ("fault_mask",),
}


class TestReferenceClasses:
    """Class ids equal zeroproofml's for every combination, at threshold 0."""

    @pytest.mark.parametrize("variant", sorted(VARIANTS))
    def test_matches_helpers_cases(self, variant: str) -> None:
        """decoded, bottom_mask and class_id as the reference, with the gate at 0."""
        with np.load(HELPERS) as data:
            cases = {k: data[k] for k in data.files}
        options = {name: cases[f"pat_in__{name}"] for name in VARIANTS[variant]}
        head_accepted = None
        if "direction_logits" in options:
            _, _, head_accepted = gate(softmax(options["direction_logits"]), 0.0)
        decoded, bottom, classes = censored_3way(
            cases["pat_in__P"],
            cases["pat_in__Q"],
            tau_infer=1e-3,
            head_accepted=head_accepted,
            **options,
        )
        assert np.array_equal(classes, cases[f"pat_{variant}__class_id"])
        assert np.array_equal(bottom, cases[f"pat_{variant}__bottom_mask"])
        expected = cases[f"pat_{variant}__decoded"]
        assert decoded.dtype == expected.dtype
        assert np.array_equal(decoded, expected, equal_nan=True)

    def test_gate_turns_head_decisions_into_unknown(self) -> None:
        """Above 0.731 (softmax of [0, 1]) every head-decided bottom becomes class 1."""
        with np.load(HELPERS) as data:
            p, q = data["pat_in__P"], data["pat_in__Q"]
            logits = data["pat_in__direction_logits"]
        _, _, accepted = gate(softmax(logits), 0.8)
        _, bottom, classes = censored_3way(
            p, q, tau_infer=1e-3, direction_logits=logits, head_accepted=accepted
        )
        assert (classes[bottom] == 1).all() and (classes[~bottom] == 1).all()


def result_of(bottom: list[bool], fault: list[bool], semantic: list[bool], available: bool = True):
    b = np.array(bottom)
    f, s = np.array(fault) & b, np.array(semantic) & b
    return StrictResult(
        decoded=np.where(b, np.nan, 1.0).astype(np.float32),
        bottom_mask=b,
        gap_mask=np.zeros_like(b),
        fault_mask=f,
        semantic_bottom_mask=s,
        bottom_provenance=(f.astype(np.int64) + 2 * s.astype(np.int64)),
        provenance_available=available,
    )


class TestDecide:
    """The worker's rule on a strict result."""

    def test_semantic_fault_and_accepted(self) -> None:
        """Head on semantic and mixed bottoms; fault bottoms and accepted samples are 1."""
        result = result_of(
            [False, True, True, True, True],
            [False, True, False, True, False],
            [False] * 3 + [True] * 2,
        )
        probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.95, 0.05], [0.6, 0.4]])
        classes, confidence = decide(result, probs, head_class_ids(("below", "above")), 0.7)
        # row 2: bottom with neither flag counts as semantic; row 4: 0.6 < 0.7 -> unknown.
        assert classes.tolist() == [1, 1, 2, 0, 1]
        np.testing.assert_allclose(confidence, [0.9, 0.9, 0.8, 0.95, 0.6])

    def test_equality_accepts_nan_never(self) -> None:
        """confidence == threshold passes; a NaN row never does, even at threshold 0."""
        result = result_of([True, True], [False, False], [True, True])
        probs = np.array([[0.25, 0.75], [np.nan, np.nan]])
        classes, confidence = decide(result, probs, head_class_ids(("below", "above")), 0.75)
        assert classes.tolist() == [2, 1] and np.isnan(confidence[1])
        classes, _ = decide(result, probs, head_class_ids(("below", "above")), 0.0)
        assert classes.tolist() == [2, 1]

    def test_no_provenance_head_applies_to_all_bottoms(self) -> None:
        """Provenance unavailable: faults get the head's class too (section 10)."""
        result = result_of([True, True], [True, True], [False, False], available=False)
        probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]])
        classes, _ = decide(result, probs, head_class_ids(("below", "in_range", "above")), 0.5)
        assert classes.tolist() == [0, 2]

    def test_columns_follow_labels(self) -> None:
        """Columns labelled (above, below) map column 0 to class 2."""
        assert head_class_ids(("above", "below")).tolist() == [2, 0]
        with pytest.raises(ValueError, match="labels"):
            head_class_ids(("below", "below"))


BUNDLE = "a" * 64
HEAD = "b" * 64
CLASSES = ["below", "above"]


def make_store(tmp_path: Path, devices: dict[str, object] | None = None) -> Path:
    manifest = {
        "bundle_digest": BUNDLE,
        "head_sha256": HEAD,
        "classes": CLASSES,
        "method": "temperature",
        "route": "probabilities",
        "created_at": "2026-11-23T00:00:00+00:00",
        "eligibility": {"min_samples": 200, "min_days": 3, "min_distinct_labels": 2},
    }
    return write_store(
        tmp_path / "store", manifest, Temperature(2.0), devices or {"arm-1": Temperature(0.5)}
    )


def load(path: Path, **overrides: object):
    args = {"bundle_digest": BUNDLE, "head_sha256": HEAD, "classes": CLASSES, **overrides}
    return load_store(path, **args)  # type: ignore[arg-type]


class TestStore:
    """Layout, binding, validation of every file, device ids never paths."""

    def test_round_trip_and_lookup(self, tmp_path: Path) -> None:
        """The device gets its own calibrator; an unknown device gets the global one."""
        store = load(make_store(tmp_path))
        own, scope = store.lookup("arm-1")
        assert scope == "device" and own == Temperature(0.5)
        other, scope = store.lookup("arm-9")
        assert scope == "global" and other == Temperature(2.0)
        assert len(store.store_id) == 64

    def test_records_carry_scope(self, tmp_path: Path) -> None:
        """Rows of one batch are calibrated per device; the scope is reported per row."""
        policy = DirectionPolicy(("below", "above"), load(make_store(tmp_path)), 0.0)
        result = result_of([True, True], [False, False], [True, True])
        logits = np.array([[0.0, 2.0], [0.0, 2.0]])
        records = policy.records(result, logits, ["arm-1", "arm-2"])
        assert [r["calibrator"] for r in records] == ["device", "global"]
        assert [r["label"] for r in records] == ["above", "above"]
        sharp, flat = records[0]["confidence"], records[1]["confidence"]
        assert sharp == pytest.approx(Temperature(0.5).apply(softmax([0.0, 2.0]))[1])
        assert flat == pytest.approx(Temperature(2.0).apply(softmax([0.0, 2.0]))[1])

    def test_without_store_identity(self) -> None:
        """No store: raw softmax, scored by the global (identity) calibrator."""
        policy = DirectionPolicy(("below", "above"))
        result = result_of([True], [False], [True])
        (record,) = policy.records(result, np.array([[1.0, 0.0]]), ["x"])
        assert record == {
            "class_id": 0,
            "label": "below",
            "confidence": pytest.approx(softmax([1.0, 0.0])[0]),
            "calibrator": "global",
        }

    def test_hostile_device_ids_never_become_paths(self, tmp_path: Path) -> None:
        """'../x' and 'a/b' are stored under hashed names inside devices/."""
        path = make_store(tmp_path, {"../escape": Temperature(0.5), "a/b": Temperature(3.0)})
        files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        assert files == sorted(
            ["store.json", "global.json"]
            + [f"devices/{device_file_id(d)}.json" for d in ("../escape", "a/b")]
        )
        assert not (tmp_path / "escape.json").exists()
        assert load(path).lookup("a/b")[0] == Temperature(3.0)

    def test_never_overwrites(self, tmp_path: Path) -> None:
        """An existing output directory is refused: stores are immutable."""
        make_store(tmp_path)
        with pytest.raises(ConfigError, match="immutable"):
            make_store(tmp_path)

    @pytest.mark.parametrize(
        ("override", "needle"),
        [
            ({"bundle_digest": "c" * 64}, "fitted for another bundle"),
            ({"head_sha256": "c" * 64}, "fitted for another head"),
            ({"classes": ["below", "in_range", "above"]}, "classes"),
        ],
    )
    def test_binding_refused(self, tmp_path: Path, override: dict, needle: str) -> None:  # type: ignore[type-arg]
        """Another bundle, another head or another class list: refused with the reason."""
        with pytest.raises(ConfigError, match=needle):
            load(make_store(tmp_path), **override)

    @pytest.mark.parametrize(
        ("file", "edit", "needle"),
        [
            ("store.json", lambda d: d.update(extra=1), "extra"),
            ("store.json", lambda d: d.update(device_count=5), "device_count"),
            ("store.json", lambda d: d["devices"].update({"arm-1": "0" * 16}), "file id"),
            (
                "store.json",
                lambda d: d["devices"].update({"arm-2": device_file_id("arm-2")}),
                "readable file",
            ),
            ("global.json", lambda d: d.update(temperature="2.0"), "temperature"),
            ("global.json", lambda d: d.update(temperature=-1.0), "temperature"),
            ("global.json", lambda d: d.update(type="isotonic"), "type"),
            ("global.json", lambda d: d.pop("type"), "type"),
            ("global.json", lambda d: d.update(classes=["above", "below"]), "classes"),
            ("device", lambda d: d.update(route="logits"), "route"),
        ],
    )
    def test_bad_files_refused(self, tmp_path: Path, file: str, edit, needle: str) -> None:  # type: ignore[no-untyped-def]
        """Every file is validated at load; the message names the file."""
        path = make_store(tmp_path)
        target = (
            path / "devices" / f"{device_file_id('arm-1')}.json"
            if file == "device"
            else path / file
        )
        data = json.loads(target.read_text())
        edit(data)
        if file == "store.json" and "arm-2" in data["devices"]:
            data["device_count"] = 2  # listed and counted, but its file is missing
        target.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=needle) as caught:
            load(path)
        named = device_file_id("arm-2") if "arm-2" in data.get("devices", {}) else target.name
        assert named in str(caught.value)

    def test_missing_global_refused(self, tmp_path: Path) -> None:
        """global.json missing: refused, never identity."""
        path = make_store(tmp_path)
        (path / "global.json").unlink()
        with pytest.raises(ConfigError, match=r"global\.json"):
            load(path)

    def test_isotonic_store(self, tmp_path: Path) -> None:
        """Isotonic knots survive the round trip exactly."""
        iso = Isotonic((((0.0, 0.5, 1.0), (0.0, 0.4, 1.0)), ((0.0, 1.0), (0.1, 0.9))))
        manifest = {
            "bundle_digest": BUNDLE,
            "head_sha256": HEAD,
            "classes": CLASSES,
            "method": "isotonic",
            "created_at": "2026-11-23T00:00:00+00:00",
        }
        path = write_store(tmp_path / "iso", manifest, iso, {})
        assert load(path).global_calibrator == iso
        assert not (path / "devices").exists()
        shutil.rmtree(path)

    def test_identity_store(self, tmp_path: Path) -> None:
        """An identity global is written and read back (explicitly, never from '{}')."""
        manifest = {
            "bundle_digest": BUNDLE,
            "head_sha256": HEAD,
            "classes": CLASSES,
            "method": "identity",
            "created_at": "2026-11-23T00:00:00+00:00",
        }
        path = write_store(tmp_path / "id", manifest, Identity(2), {})
        assert load(path).global_calibrator.kind == "identity"
        (path / "global.json").write_text("{}")
        with pytest.raises(ConfigError, match=r"global\.json"):
            load(path)
