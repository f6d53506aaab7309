"""Many datasets at once: which ones can answer, their filtered samples, the result.

The ``/evidence`` page and ``cli.py evidence`` both call :func:`evidence`, so they
report the same numbers. Results are cached per view (datasets with their file
stamps, filter, metric, definition, timepoint) in each process; the cache holds
frozen results only and nobody mutates them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from analysis import meta
from analysis.nk_metrics import available_metrics
from analysis.response import DEFINITIONS, available_definitions
from data.errors import DataError
from data.registry import _stamp, get_bundle, list_datasets, resolve_dataset

#: Global filter fields that apply across datasets (cohort names do not).
FILTER_KEYS = ("tumor_type", "treatment", "timepoint")
TIMEPOINTS = ("pre", "on", "post")
DEFAULT_METRIC = "nk_lymphocytes"
DEFAULT_DEFINITION = "objective"


@dataclass(frozen=True)
class Source:
    """One dataset's filtered samples."""

    name: str
    title: str
    synthetic: bool
    samples: pd.DataFrame


def answering_datasets(data_dir: Path) -> list[str]:
    """Datasets in ``data_dir`` with an NK estimate and a response (the default)."""
    names = []
    for entry in list_datasets(data_dir):
        if entry.error:
            continue
        try:
            cohort = get_bundle(entry.name, data_dir).cohort
        except DataError:  # an invalid bundle is listed on /data, not here
            continue
        if available_metrics(cohort) and available_definitions(cohort):
            names.append(entry.name)
    return names


def _normal(value: object) -> str:
    return str(value).strip().casefold()


def filter_samples(
    samples: pd.DataFrame, filters: Mapping[str, object]
) -> pd.DataFrame:
    """Keep rows whose tumor type, treatment and timepoint are among the chosen.

    Values match ignoring case. A dataset without a chosen value contributes
    nothing (it is not left unfiltered).
    """
    keep = pd.Series(True, index=samples.index)
    for key in FILTER_KEYS:
        chosen = filters.get(key) or ()
        if isinstance(chosen, str):
            chosen = (chosen,)
        wanted = {_normal(v) for v in chosen if v not in (None, "")}
        if wanted:
            keep &= samples[key].astype(str).str.strip().str.casefold().isin(wanted)
    return samples.loc[keep]


def describe_filters(filters: Mapping[str, object]) -> str:
    """'tumor type: melanoma; timepoint: pre' or 'no filter'."""
    parts = []
    for key in FILTER_KEYS:
        chosen = filters.get(key) or ()
        if isinstance(chosen, str):
            chosen = (chosen,)
        if chosen:
            parts.append(f"{key.replace('_', ' ')}: {', '.join(map(str, chosen))}")
    return "; ".join(parts) if parts else "no filter (all samples)"


def _key(filters: Mapping[str, object]) -> tuple:
    out = []
    for key in FILTER_KEYS:
        chosen = filters.get(key) or ()
        if isinstance(chosen, str):
            chosen = (chosen,)
        out.append((key, tuple(sorted(str(v) for v in chosen))))
    return tuple(out)


def load_sources(
    datasets: Sequence[str], data_dir: Path, filters: Mapping[str, object]
) -> list[Source]:
    """Each dataset's filtered samples (DataError for an unknown dataset)."""
    out = []
    for name in datasets:
        bundle = get_bundle(name, data_dir)
        out.append(
            Source(
                bundle.meta.name,
                bundle.meta.title,
                bool(bundle.meta.synthetic),
                filter_samples(bundle.cohort, filters),
            )
        )
    return out


def metric_label(sources: Sequence[Source], metric: str) -> str:
    """The metric's label from the first dataset that has it."""
    for source in sources:
        for m in available_metrics(source.samples):
            if m.key == metric:
                return m.short
    return metric


def stamps(datasets: Sequence[str], data_dir: Path) -> tuple:
    """Dataset names with file stamps: a re-imported dataset is a new cache key."""
    return tuple((name, _stamp(resolve_dataset(name, data_dir))) for name in datasets)


def evidence(
    datasets: Sequence[str],
    data_dir: Path,
    *,
    metric: str = DEFAULT_METRIC,
    definition: str = DEFAULT_DEFINITION,
    timepoint: str = "pre",
    filters: Mapping[str, object] | None = None,
) -> meta.EvidenceResult:
    """Per-cohort effects over ``datasets`` and their pooled answer.

    Parameters
    ----------
    datasets
        Dataset names in ``data_dir``.
    metric
        NK metric key (``frac_nk``, ``nk_lymphocytes``, ..., ``score_*``); a
        dataset without it contributes cohorts with a message.
    definition
        Binary response definition key.
    timepoint
        ``pre``, ``on`` or ``post``.
    filters
        Global filter choices (tumor type, treatment, timepoint).
    """
    filters = dict(filters or {})
    return _evidence_cached(
        stamps(datasets, data_dir), str(data_dir), metric, definition, timepoint,
        _key(filters),
    )  # fmt: skip


@lru_cache(maxsize=32)
def _evidence_cached(
    stamped: tuple, data_dir: str, metric: str, definition: str, timepoint: str,
    filter_key: tuple,
) -> meta.EvidenceResult:  # fmt: skip
    filters = dict(filter_key)
    datasets = [name for name, _ in stamped]
    sources = load_sources(datasets, Path(data_dir), filters)
    cohorts: list[meta.CohortEffect] = []
    notes: list[str] = []
    for source in sources:
        keys = {m.key for m in available_metrics(source.samples)}
        if source.samples.empty:
            notes.append(f"{source.name}: no samples match the filters.")
            continue
        if metric not in keys:
            notes.append(f"{source.name}: has no metric {metric!r}; not included.")
            continue
        cohorts += meta.cohort_effects(
            source.samples,
            dataset=source.name,
            metric=metric,
            definition=definition,
            timepoint=timepoint,
            synthetic=source.synthetic,
        )
    return meta.analyze(
        cohorts,
        metric=metric,
        metric_label=metric_label(sources, metric),
        definition=definition,
        timepoint=timepoint,
        datasets=datasets,
        filters=describe_filters(filters),
        notes=notes,
    )


def definition_label(key: str) -> str:
    """The response definition's label."""
    return DEFINITIONS[key].label if key in DEFINITIONS else key
