"""Numbers out of samples: percentiles, rows, the targets of issue 7, the printed table."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.loadgen import Samples


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass(slots=True)
class Row:
    workload: str
    system: str
    label: str
    requests: int
    seconds: float
    rps: float
    p50: float
    p95: float
    p99: float
    errors: int


@dataclass(slots=True)
class Cpu:
    """CPU used during a workload, in cores (CPU seconds per wall second)."""

    seconds: float
    server: float
    postgres: float
    loadgen: float
    machine: float
    steal: float = 0.0
    """Of `machine`: what the host took for its other guests (a slower machine)."""
    requests: int = 0

    @property
    def others(self) -> float:
        """What the rest of the machine (other jobs on it) used meanwhile."""
        return max(0.0, self.machine - self.server - self.postgres - self.loadgen - self.steal)

    def per_request_ms(self, cores: float) -> float:
        """CPU milliseconds per request: unlike throughput, barely moved by other jobs."""
        return cores * self.seconds * 1000 / self.requests if self.requests else 0.0


@dataclass(slots=True)
class Target:
    name: str
    measured: str
    goal: str
    passed: bool | None
    """None: not measured in this run."""


def _key(workload: str, system: str) -> str:
    """How the report names a workload's run on a system (`cpu_cores`, `error_samples`)."""
    return f"{workload} / {system}"


@dataclass(slots=True)
class Report:
    meta: dict[str, Any]
    config: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    cpu: dict[str, Cpu] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    error_samples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, workload: str, system: str, samples: Samples, cpu: Cpu | None = None) -> None:
        seconds = max(samples.ended - samples.started, 1e-9)
        labels = list(samples.latencies) + [e for e in samples.errors if e not in samples.latencies]
        for label in labels:
            values = samples.latencies.get(label, [])
            self.rows.append(
                Row(
                    workload,
                    system,
                    label,
                    len(values),
                    round(seconds, 2),
                    round(len(values) / seconds, 1),
                    round(percentile(values, 50), 2),
                    round(percentile(values, 95), 2),
                    round(percentile(values, 99), 2),
                    samples.errors.get(label, 0),
                )
            )
        all_values = [v for values in samples.latencies.values() for v in values]
        if len(samples.latencies) > 1:
            self.rows.append(
                Row(
                    workload,
                    system,
                    "(all requests)",
                    len(all_values),
                    round(seconds, 2),
                    round(len(all_values) / seconds, 1),
                    round(percentile(all_values, 50), 2),
                    round(percentile(all_values, 95), 2),
                    round(percentile(all_values, 99), 2),
                    sum(samples.errors.values()),
                )
            )
        if samples.error_samples:
            self.error_samples[_key(workload, system)] = samples.error_samples
        if cpu is not None:
            cpu.requests = len(all_values)
            self.cpu[_key(workload, system)] = cpu

    def cpu_of(self, workload: str, system: str) -> Cpu:
        """The CPU a workload's run on a system was measured to take."""
        return self.cpu[_key(workload, system)]

    def row(self, workload: str, system: str, label: str) -> Row | None:
        for row in self.rows:
            if (row.workload, row.system, row.label) == (workload, system, label):
                return row
        return None

    @property
    def errors(self) -> int:
        return sum(row.errors for row in self.rows if row.label != "(all requests)")

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "config": self.config,
            "results": [asdict(row) for row in self.rows],
            "cpu_cores": {
                name: asdict(cpu)
                | {
                    "others": round(cpu.others, 2),
                    "server_ms_per_request": round(cpu.per_request_ms(cpu.server), 3),
                    "postgres_ms_per_request": round(cpu.per_request_ms(cpu.postgres), 3),
                }
                for name, cpu in self.cpu.items()
            },
            **self.extra,
            "targets": [asdict(target) for target in self.targets],
            "errors": self.errors,
            "error_samples": self.error_samples,
        }

    def write(self, directory: Path, stamp: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"bench-{stamp}.json"
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        (directory / "latest.json").write_text(path.read_text())
        return path


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def render(report: Report) -> str:
    parts = [
        _table(
            ["workload", "system", "request", "n", "req/s", "p50 ms", "p95 ms", "p99 ms", "err"],
            [
                [
                    r.workload,
                    r.system,
                    r.label,
                    str(r.requests),
                    f"{r.rps:.0f}",
                    f"{r.p50:.1f}",
                    f"{r.p95:.1f}",
                    f"{r.p99:.1f}",
                    str(r.errors),
                ]
                for r in report.rows
            ],
        )
    ]
    if report.extra.get("ratios"):
        parts.append(
            _table(
                ["throughput", "scim-platform", "floor", "peer", "x floor", "x peer"],
                [
                    [
                        name,
                        f"{v['service']:.0f}/s",
                        f"{v['floor']:.0f}/s" if v.get("floor") else "-",
                        f"{v['peer']:.0f}/s" if v.get("peer") else "-",
                        f"{v['x_floor']:.2f}" if v.get("x_floor") else "-",
                        f"{v['x_peer']:.1f}" if v.get("x_peer") else "-",
                    ]
                    for name, v in report.extra["ratios"].items()
                ],
            )
        )
    if report.extra.get("role_mapping"):
        mapping = report.extra["role_mapping"]
        parts.append(
            _table(
                ["steady mix, one tenant", "no role mapping", "every group mapped", "x"],
                [
                    [
                        "requests/s",
                        f"{mapping['rps_without']:.0f}",
                        f"{mapping['rps_with']:.0f}",
                        "-" if mapping["x_without"] is None else f"{mapping['x_without']:.2f}",
                    ]
                ],
            )
        )
    if report.extra.get("tenant_scale"):
        parts.append(
            _table(
                [
                    "tenants",
                    "added in s",
                    "tenants/s",
                    "vacuum s",
                    "checkpoint s",
                    "p50 ms",
                    "p99 ms",
                    "req/s",
                    "paced p50",
                    "paced p95",
                    "paced p99",
                    "late",
                    "probe ms",
                    "spread p50",
                    "spread p99",
                    "RSS MB",
                    "migrate s",
                ],
                [
                    [
                        str(s["tenants"]),
                        f"{s['create_seconds']:.1f}",
                        f"{s['tenants_per_second']:.0f}",
                        "-" if s.get("vacuum_seconds") is None else f"{s['vacuum_seconds']:.1f}",
                        "-"
                        if s.get("checkpoint_seconds") is None
                        else f"{s['checkpoint_seconds']:.1f}",
                        f"{s['p50']:.1f}",
                        f"{s['p99']:.1f}",
                        f"{s['rps']:.0f}",
                        f"{s['paced_p50']:.1f}",
                        f"{s['paced_p95']:.1f}",
                        f"{s['paced_p99']:.1f}",
                        str(s["paced_late"]),
                        f"{s['probe_ms']:.1f}",
                        f"{s['spread_p50']:.1f}",
                        f"{s['spread_p99']:.1f}",
                        f"{s['rss_mb']:.0f}",
                        f"{s['migrate_seconds']:.2f}",
                    ]
                    for s in report.extra["tenant_scale"]
                ],
            )
        )
    if report.extra.get("idle"):
        parts.append(
            _table(
                ["idle (no requests)", "tenants", "seconds", "service ms/s", "postgres ms/s"],
                [
                    [
                        w["what"],
                        str(w["tenants"]),
                        f"{w['seconds']:.0f}",
                        f"{w['server_ms_per_second']:.1f}",
                        "-"
                        if w["postgres_ms_per_second"] is None
                        else f"{w['postgres_ms_per_second']:.1f}",
                    ]
                    for w in report.extra["idle"]
                ],
            )
        )
    if report.cpu:
        parts.append(
            _table(
                [
                    "CPU (cores of 2)",
                    "server",
                    "postgres",
                    "load gen",
                    "others",
                    "steal",
                    "server ms/req",
                    "postgres ms/req",
                ],
                [
                    [
                        name,
                        f"{c.server:.2f}",
                        f"{c.postgres:.2f}",
                        f"{c.loadgen:.2f}",
                        f"{c.others:.2f}",
                        f"{c.steal:.2f}",
                        f"{c.per_request_ms(c.server):.2f}",
                        f"{c.per_request_ms(c.postgres):.2f}",
                    ]
                    for name, c in report.cpu.items()
                ],
            )
        )
    parts.append(
        _table(
            ["target", "measured", "goal", "result"],
            [
                [
                    t.name,
                    t.measured,
                    t.goal,
                    "n/a" if t.passed is None else ("PASS" if t.passed else "FAIL"),
                ]
                for t in report.targets
            ],
        )
    )
    for name, samples in report.error_samples.items():
        parts.append(f"errors in {name}:\n  " + "\n  ".join(samples))
    return "\n\n".join(parts)
