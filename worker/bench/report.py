"""Figures -> ratios, target verdicts, a table for people and JSON for machines (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.bench.latency import Latency

MB = 1024 * 1024

# (figure, comparison, bound) from issue 8; ratios come from one run, so they compare.
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("worker_vs_passthrough", ">=", 0.5),
    ("worker_vs_naive", ">=", 100.0),
    ("latency_p99_ms_at_50pct", "<=", 50.0),
    ("peak_rss_mb", "<", 500.0),
)


@dataclass
class Figures:
    """What the phases measured; None for a phase that did not run."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    ort_samples_per_s: float | None = None
    passthrough_msgs_per_s: float | None = None
    worker_msgs_per_s: float | None = None
    # The same drain with one worker process, when worker_msgs_per_s ran with more.
    worker_1p_msgs_per_s: float | None = None
    naive_msgs_per_s: float | None = None
    latency: list[Latency] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    memory_drain_msgs_per_s: float | None = None
    # Every round's rate per phase; the figures above are their medians.
    rounds: dict[str, list[float]] = field(default_factory=dict)
    # Cores per process ("worker", "broker", "bench") during the worker's drains (mean of
    # the rounds) and the memory phase's; latency levels carry their own.
    cores: dict[str, dict[str, float]] = field(default_factory=dict)


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def _key(share: float) -> str:
    return f"at_{share * 100:.0f}pct"


def _level_key(level: Latency) -> str:
    """``at_50pct`` (the default one-process worker), ``processes_2_at_50pct``, or
    ``broker_hop_at_50pct`` for the floor."""
    if level.hop:
        return "broker_hop_" + _key(level.share)
    prefix = f"processes_{level.processes}_" if level.processes > 1 else ""
    return prefix + _key(level.share)


def _level_label(key: str) -> str:
    share = key.rpartition("at_")[2].replace("pct", "%")
    if key.startswith("broker_hop"):
        return f"1 broker hop {share}"
    if key.startswith("processes_"):
        return f"latency {share}, {key.split('_')[1]} processes"
    return f"latency {share}"


def as_json(figures: Figures) -> dict[str, Any]:
    """The JSON document: every figure, the two ratios and the target verdicts."""
    latency = {
        _level_key(level): {
            "share_of_capacity": level.share,
            "offered_msgs_per_s": level.rate_msgs_per_s,
            "achieved_msgs_per_s": level.achieved_msgs_per_s,
            "count": level.count,
            "p50": level.p50_ms,
            "p99": level.p99_ms,
            "max": level.max_ms,
            "cores": level.cores,
            "processes": level.processes,
            "window_s": level.window_s,
            "p99_by_window": list(level.p99_by_window_ms),
            "cores_by_window": list(level.cores_by_window),
        }
        for level in figures.latency
    }
    peak_mb = figures.peak_rss_bytes / MB if figures.peak_rss_bytes is not None else None
    doc: dict[str, Any] = {
        "machine": figures.machine,
        "settings": figures.settings,
        "ort_samples_per_s": figures.ort_samples_per_s,
        "passthrough_msgs_per_s": figures.passthrough_msgs_per_s,
        "worker_msgs_per_s": figures.worker_msgs_per_s,
        "worker_1p_msgs_per_s": figures.worker_1p_msgs_per_s,
        "naive_msgs_per_s": figures.naive_msgs_per_s,
        "latency_ms": latency,
        "peak_rss_mb": peak_mb,
        "memory_drain_msgs_per_s": figures.memory_drain_msgs_per_s,
        "rounds_msgs_per_s": figures.rounds,
        "cores": figures.cores,
        "worker_vs_passthrough": _ratio(figures.worker_msgs_per_s, figures.passthrough_msgs_per_s),
        "worker_vs_naive": _ratio(figures.worker_msgs_per_s, figures.naive_msgs_per_s),
        "worker_1p_vs_passthrough": _ratio(
            figures.worker_1p_msgs_per_s, figures.passthrough_msgs_per_s
        ),
        "worker_1p_vs_naive": _ratio(figures.worker_1p_msgs_per_s, figures.naive_msgs_per_s),
    }
    doc["targets"] = verdicts(doc)
    return doc


def verdicts(doc: Mapping[str, Any]) -> dict[str, bool | None]:
    """Each target met (True), missed (False) or not measured (None)."""
    p99 = doc["latency_ms"].get(_key(0.5), {}).get("p99")
    values = {**doc, "latency_p99_ms_at_50pct": p99}
    out: dict[str, bool | None] = {}
    for name, op, bound in TARGETS:
        value = values.get(name)
        label = f"{name} {op} {bound:g}"
        if value is None:
            out[label] = None
        else:
            out[label] = (
                value >= bound if op == ">=" else value <= bound if op == "<=" else (value < bound)
            )
    return out


RATIOS = (
    "worker_vs_passthrough",
    "worker_vs_naive",
    "worker_1p_vs_passthrough",
    "worker_1p_vs_naive",
)


def _processes(settings: Mapping[str, Any]) -> str:
    processes = int(settings.get("worker_processes", 1))
    return f" --processes {processes}" if processes > 1 else ""


def _rate(value: float | None, unit: str) -> str:
    return "not run" if value is None else f"{value:,.0f} {unit}"


def _of(doc: Mapping[str, Any], phase: str) -> str:
    """ ", median of 3: 41,000 / 43,000 / 47,000" when the phase ran more than once."""
    rates = doc.get("rounds_msgs_per_s", {}).get(phase, [])
    if len(rates) < 2:
        return ""
    return f", median of {len(rates)}: " + " / ".join(f"{r:,.0f}" for r in rates)


def table(doc: Mapping[str, Any]) -> str:
    """The report as people read it: machine, figures, ratios, targets."""
    machine, settings = doc["machine"], doc["settings"]
    load = " ".join(str(x) for x in machine.get("load_average_start", []))
    rows = [
        (
            "ONNX Runtime alone",
            _rate(doc["ort_samples_per_s"], "samples/s"),
            f"session.run at batch {settings['max_batch']}",
        ),
        (
            "passthrough",
            _rate(doc["passthrough_msgs_per_s"], "msg/s"),
            f"consume + re-produce, no parsing, {settings['messages']:,} messages"
            + _of(doc, "passthrough"),
        ),
        (
            "worker",
            _rate(doc["worker_msgs_per_s"], "msg/s"),
            f"scm-worker run{_processes(settings)}, everything on, {settings['messages']:,} "
            f"messages{_of(doc, 'worker')}",
        ),
        (
            "naive loop",
            _rate(doc["naive_msgs_per_s"], "msg/s"),
            f"one message at a time, {settings['naive_messages']:,} messages{_of(doc, 'naive')}",
        ),
    ]
    for key, level in doc["latency_ms"].items():
        rows.append(
            (
                ("floor: " if key.startswith("broker_hop") else "") + _level_label(key),
                f"{level['p50']:.1f} / {level['p99']:.1f} / {level['max']:.1f} ms",
                f"p50 / p99 / max at {level['achieved_msgs_per_s']:,.0f} msg/s "
                f"({level['count']:,} results)",
            )
        )
        if len(level.get("p99_by_window", [])) > 1:
            rows.append(("", "", _windows(level)))
    if doc.get("worker_1p_msgs_per_s") is not None:
        rows.insert(
            3,
            (
                "worker, 1 process",
                _rate(doc["worker_1p_msgs_per_s"], "msg/s"),
                f"scm-worker run, the same drain{_of(doc, 'worker_1p')}",
            ),
        )
    peak = doc["peak_rss_mb"]
    rows.append(
        (
            "worker peak RSS",
            "not run" if peak is None else f"{peak:,.0f} MB",
            f"one worker process draining a backlog of {settings['backlog']:,} messages"
            + (
                f" at {doc['memory_drain_msgs_per_s']:,.0f} msg/s"
                if doc["memory_drain_msgs_per_s"]
                else ""
            ),
        )
    )
    for name in RATIOS:
        value = doc.get(name)
        if value is None and name.startswith("worker_1p"):
            continue  # only measured next to a run with more processes
        rows.append((name, "not run" if value is None else f"{value:,.2f}", "ratio of the rates"))
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    lines = [
        f"scm-worker bench on {machine['cpu_model']}, {machine['cores']} cores, "
        f"load average {load} at start",
        f"  bundle {settings['bundle_name']} ({settings['adapter']}), max batch "
        f"{settings['max_batch']}, max wait {settings['max_wait_ms']} ms, "
        f"broker {settings['broker']}" + (", quick mode" if settings["quick"] else ""),
        "",
    ]
    lines += [f"  {a:<{width}}  {b:>{vwidth}}  {c}" for a, b, c in rows]
    lines.append("")
    lines += _cores_lines(doc)
    for label, met in doc["targets"].items():
        verdict = "not measured" if met is None else "met" if met else "MISSED"
        lines.append(f"  target {label}: {verdict}")
    return "\n".join(lines)


ROLES = ("worker", "broker", "bench")


def _windows(level: Mapping[str, Any]) -> str:
    """A level's p99 window by window, and the broker's cores in each, as one line."""
    p99 = " / ".join(f"{value:.0f}" for value in level["p99_by_window"])
    line = f"  p99 by {level['window_s']:g}-s window: {p99} ms"
    broker = [cores["broker"] for cores in level.get("cores_by_window", []) if "broker" in cores]
    if broker:
        line += "; broker cores " + " / ".join(f"{value:.2f}" for value in broker)
    return line


def _cores_lines(doc: Mapping[str, Any]) -> list[str]:
    """Cores per process in each phase that measured them (nothing if none did)."""
    phases = [(label, doc.get("cores", {}).get(key)) for key, label in _CORE_PHASES[:2]]
    for key, level in doc["latency_ms"].items():
        phases.append((_level_label(key), level.get("cores")))
    phases += [(label, doc.get("cores", {}).get(key)) for key, label in _CORE_PHASES[2:]]
    measured = [(label, cores) for label, cores in phases if cores]
    if not measured:
        return []
    width = max(len(label) for label, _ in measured)
    cores_total = doc["machine"].get("cores", "?")
    head = f"  {'cores used (of ' + str(cores_total) + ')':<{width + 2}}"
    lines = [head + "".join(f"{role:>8}" for role in ROLES)]
    for label, cores in measured:
        cells = "".join(f"{cores[role]:>8.2f}" if role in cores else f"{'-':>8}" for role in ROLES)
        lines.append(f"    {label:<{width}}{cells}")
    lines.append("")
    return lines


_CORE_PHASES = (
    ("worker", "worker drain"),
    ("worker_1p", "worker drain, 1 process"),
    ("memory", "memory drain"),
)
