"""Timing, the results table and the JSON record of a benchmark run.

Every figure is the median of ``runs`` timed calls after ``warmup`` untimed ones. A row
holds the measured value, the target it is held to (if any), the same measurement of
the reference implementations (the naive Dash app, CELLxGENE) and the ratio
reference / ours, so "3.2x" reads "the reference needs 3.2 times as much".
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: how a row's value is compared with its target
OPERATORS = {"<": lambda v, t: v < t, "<=": lambda v, t: v <= t}


@dataclass
class Row:
    """One line of the results table."""

    section: str
    name: str
    value: float | None
    unit: str
    target: tuple[str, float] | None = None
    #: reference name -> its value for the same measurement (same unit)
    references: dict[str, float | None] = field(default_factory=dict)
    note: str = ""
    runs: int = 0
    samples: list[float] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``met`` / ``missed`` against the target, ``-`` without target or value."""
        if self.target is None or self.value is None:
            return "-"
        op, threshold = self.target
        return "met" if OPERATORS[op](self.value, threshold) else "missed"

    def ratio(self, reference: str) -> float | None:
        """Reference value divided by ours (> 1: we need less)."""
        other = self.references.get(reference)
        if other is None or self.value in (None, 0):
            return None
        return other / self.value


def timed(
    fn: Callable[[], object], *, runs: int = 5, warmup: int = 1
) -> tuple[float, list[float], object]:
    """Median wall time in milliseconds of ``runs`` calls after ``warmup`` calls.

    Returns
    -------
    median_ms, samples_ms, last_result
    """
    result = None
    for _ in range(warmup):
        result = fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples), samples, result


def timed_each(
    fns: Sequence[Callable[[], object]], *, warmup: Callable[[], object] | None = None
) -> tuple[float, list[float]]:
    """Median of single calls to different functions (e.g. one cold gene each)."""
    if warmup is not None:
        warmup()
    samples = []
    for fn in fns:
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples), samples


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 0.1 or value == 0:
        text = f"{value:.2f}"
    else:
        text = f"{value:.1g}" if abs(value) < 0.001 else f"{value:.3f}"
    return f"{text} {unit}".strip()


def _fmt_target(target: tuple[str, float] | None, unit: str) -> str:
    if target is None:
        return ""
    op, threshold = target
    return f"{op} {_fmt(threshold, unit)}"


def markdown_table(rows: Iterable[Row], references: Sequence[str]) -> str:
    """The results as a Markdown table: one row per measurement.

    Columns: measurement, ours, target, met/missed, and for each reference its value
    and the ratio reference / ours.
    """
    header = ["measurement", "ours", "target", "status"]
    for ref in references:
        header += [ref, f"{ref} / ours"]
    header.append("note")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for row in rows:
        cells = [
            f"{row.section}: {row.name}" if row.section else row.name,
            _fmt(row.value, row.unit),
            _fmt_target(row.target, row.unit),
            row.status,
        ]
        for ref in references:
            if ref in row.references:
                ratio = row.ratio(ref)
                cells += [
                    _fmt(row.references[ref], row.unit),
                    "n/a" if ratio is None else f"{ratio:.1f}x",
                ]
            else:
                cells += ["", ""]
        cells.append(row.note.replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, object]:
    """Where the numbers were measured."""
    import os

    import psutil

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": os.getloadavg(),
    }


def write_json(path: Path, rows: Sequence[Row], *, meta: dict[str, object]) -> Path:
    """Write the run (meta + rows with every sample) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **meta,
        "rows": [
            {**asdict(row), "status": row.status, "target": row.target} for row in rows
        ],
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
