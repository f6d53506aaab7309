"""Patient-level summaries of a (filtered) cohort table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import gating
from analysis.nk_metrics import available_metrics, patient_metric
from analysis.nk_response import default_metric, default_response
from analysis.response import DEFINITIONS, assign_response, available_definitions
from data import schema

#: Order in which response categories are shown.
RESPONSE_ORDER = ("CR", "PR", "SD", "PD", "NE", "not reported")


def patient_table(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per patient (``cohort``, ``patient_id``) from a sample-level table.

    Patient fields (tumor type, treatment, RECIST, reported response, survival) are
    taken from the patient's samples, where they agree by construction of a valid
    bundle. Cell fractions are the mean over the patient's pre-treatment samples
    (``NaN`` when there is none). ``n_samples`` and ``timepoints`` describe what was
    measured.

    Parameters
    ----------
    samples
        Typed cohort table (one row per sample), possibly filtered.
    """
    key = list(schema.PATIENT_KEY)
    if samples.empty:
        return pd.DataFrame(columns=[*key, "tumor_type", "treatment", "recist"])
    fields = ["tumor_type", "treatment", "recist"]
    fields += [c for c in schema.OPTIONAL_COLUMNS if c in samples.columns]
    grouped = samples.groupby(key, sort=True, dropna=False)
    table = grouped[fields].first()
    table["n_samples"] = grouped.size()
    order = {t: i for i, t in enumerate(schema.TIMEPOINTS)}
    table["timepoints"] = grouped["timepoint"].agg(
        lambda s: ", ".join(sorted(set(s), key=order.get))
    )
    fractions = [c for c in samples.columns if c.startswith(schema.FRACTION_PREFIX)]
    pre = samples[samples["timepoint"] == "pre"]
    if fractions:
        means = pre.groupby(key, sort=True)[fractions].mean()
        table = table.join(means.add_suffix("_pre"), how="left")
    return table.reset_index()


def response_category(patients: pd.DataFrame) -> pd.Series:
    """RECIST category per patient, ``"not reported"`` where missing."""
    return patients["recist"].astype("string").fillna("not reported")


@dataclass(frozen=True)
class CohortCounts:
    """Headline numbers of a filtered cohort."""

    patients: int
    samples: int
    cohorts: int
    tumor_types: int


def cohort_counts(samples: pd.DataFrame) -> CohortCounts:
    """Count patients (by cohort and id), samples, cohorts and tumor types."""
    if samples.empty:
        return CohortCounts(0, 0, 0, 0)
    return CohortCounts(
        patients=int(samples[list(schema.PATIENT_KEY)].drop_duplicates().shape[0]),
        samples=int(samples["sample_id"].nunique()),
        cohorts=int(samples["cohort"].nunique()),
        tumor_types=int(samples["tumor_type"].nunique()),
    )


# ------------------------------------------------------------ per-patient columns
#: Separator of the patient key ``"<cohort>|<patient_id>"`` shared by every page.
KEY_SEP = "|"
#: Label of patients a response definition cannot place (NE, missing).
NOT_EVALUABLE = "not evaluable"


def patient_keys(frame: pd.DataFrame) -> pd.Series:
    """``"<cohort>|<patient_id>"`` per row (the patient key used in URLs)."""
    return frame["cohort"].astype(str) + KEY_SEP + frame["patient_id"].astype(str)


def split_patient_key(key: str) -> tuple[str, str]:
    """``("SYN-A", "P012")`` from ``"SYN-A|P012"``; ``ValueError`` without a ``|``."""
    cohort, sep, patient = str(key).partition(KEY_SEP)
    if not sep or not cohort or not patient:
        raise ValueError(f"patient key {key!r} is not of the form <cohort>|<patient>")
    return cohort, patient


def cell_patient_codes(
    cell_samples: pd.Series, samples: pd.DataFrame
) -> tuple[np.ndarray, pd.Index]:
    """Which patient of ``samples`` each cell belongs to, through its sample.

    Parameters
    ----------
    cell_samples
        ``sample_id`` of every cell (categorical or strings).
    samples
        Cohort rows (one per sample, possibly filtered) with ``sample_id``,
        ``cohort`` and ``patient_id``.

    Returns
    -------
    codes, keys
        ``codes[i]`` is the position in ``keys`` (sorted patient keys of the
        patients with at least one cell) of cell ``i``'s patient, ``-1`` for cells
        whose sample is not in ``samples``.
    """
    key_of_sample = pd.Series(
        patient_keys(samples).to_numpy(), index=samples["sample_id"].astype(str)
    )
    # work per category, not per cell: a million cells hold a few hundred samples
    categorical = cell_samples
    if not isinstance(categorical.dtype, pd.CategoricalDtype):
        categorical = categorical.astype(str).astype("category")
    category_keys = pd.Series(categorical.cat.categories.astype(str)).map(key_of_sample)
    sample_codes = categorical.cat.codes.to_numpy()
    per_category, uniques = pd.factorize(category_keys, sort=True)
    # keep only patients with at least one cell, numbered in key order; all of it
    # on categories, then one gather over the cells (~10 ms at 10^6 cells)
    cells_per_category = np.bincount(
        sample_codes[sample_codes >= 0], minlength=len(per_category)
    )
    used = np.zeros(len(uniques), dtype=bool)
    used[per_category[(per_category >= 0) & (cells_per_category > 0)]] = True
    renumber = np.full(len(uniques) + 1, -1, dtype=np.int64)  # [-1]: no patient
    renumber[np.flatnonzero(used)] = np.arange(used.sum())
    per_category = renumber[per_category]
    per_category = np.append(per_category, -1)  # category code -1 = missing sample
    codes = per_category[sample_codes]
    return codes, pd.Index(np.asarray(uniques, dtype=object)[used])


def cells_by_patient(
    codes: np.ndarray, keys: pd.Index, in_gate: np.ndarray | None = None
) -> pd.DataFrame:
    """CD8 cells per patient and, with a gate, cells in it and their percentage.

    Parameters
    ----------
    codes, keys
        From :func:`cell_patient_codes`.
    in_gate
        Boolean per cell (same length as ``codes``), or ``None``.

    Returns
    -------
    DataFrame
        Indexed by patient key: ``n_cells`` (the patient's CD8 cells in the
        samples) and, with ``in_gate``, ``n_in_gate`` and ``gate_pct``
        (``100 * n_in_gate / n_cells``). Statistics over patients use these
        per-patient values, never cells.
    """
    gate = np.zeros(len(codes), dtype=bool) if in_gate is None else in_gate
    n_in, n_cells, fraction = gating.patient_fractions(gate, codes, len(keys))
    table = pd.DataFrame(
        {"n_cells": n_cells.astype(int)}, index=pd.Index(keys, name="key")
    )
    if in_gate is not None:
        table["n_in_gate"] = n_in.astype(int)
        table["gate_pct"] = 100 * fraction
    return table


#: Query keys of the overview page (same meaning as on the NK and CD8 pages).
OVERVIEW_KEYS = ("metric", "definition")


def resolve_overview_state(
    samples: pd.DataFrame, state: dict | None
) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """The NK metric and response definition to show, and the values replaced.

    Defaults are the NK page's (:func:`analysis.nk_response.default_metric`,
    :func:`analysis.nk_response.default_response`). A value the data cannot use
    falls back to the default and is reported, never dropped silently.

    Parameters
    ----------
    samples
        Typed cohort rows (filtered).
    state
        ``{"metric": ..., "definition": ...}`` as read from the URL (missing or
        empty values mean the default).

    Returns
    -------
    state, replaced
        The resolved ``{"metric", "definition"}`` and one ``(key, asked, shown)``
        per value that could not be used.
    """
    state = dict(state or {})
    metrics = [m.key for m in available_metrics(samples)]
    definitions = available_definitions(samples) or list(DEFINITIONS)
    defaults = {
        "metric": default_metric(samples),
        "definition": default_response(samples),
    }
    allowed = {"metric": metrics, "definition": definitions}
    resolved: dict[str, str] = {}
    replaced: list[tuple[str, str, str]] = []
    for key in OVERVIEW_KEYS:
        value = state.get(key)
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value in (None, ""):
            resolved[key] = defaults[key]
        elif value in allowed[key]:
            resolved[key] = str(value)
        else:
            resolved[key] = defaults[key]
            replaced.append((key, str(value), defaults[key]))
    return resolved, replaced


def overview_table(
    samples: pd.DataFrame,
    *,
    metric: str | None,
    definition: str,
    cells: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`patient_table` plus the NK metric, response group and gate fraction.

    Parameters
    ----------
    samples
        Typed cohort rows (filtered).
    metric
        NK metric key (:func:`analysis.nk_metrics.available_metrics`); its value is
        the patient's pre-treatment value (ratio of the means of the patient's
        pre-treatment samples, as on the NK page). ``None``: no NK column.
    definition
        Response definition key (:data:`analysis.response.DEFINITIONS`).
    cells
        Output of :func:`cells_by_patient`, or ``None`` (no single-cell data).

    Returns
    -------
    DataFrame
        One row per patient: ``key``, the :func:`patient_table` columns,
        ``nk_value`` and ``nk_n_samples`` (pre-treatment samples averaged; 0 when
        none), ``response_group`` (``"not evaluable"`` where the definition cannot
        place the patient), and with ``cells`` its columns: ``n_cells`` (0 for
        patients without CD8 cells), ``n_in_gate`` and ``gate_pct`` (``NaN``
        without cells).
    """
    table = patient_table(samples)
    table.insert(0, "key", patient_keys(table) if len(table) else pd.Series())
    table["nk_value"] = np.nan
    table["nk_n_samples"] = 0
    if metric and len(table):
        values = patient_metric(samples, metric, timepoint="pre")
        if not values.empty:
            by_key = values.set_index(patient_keys(values))
            table["nk_value"] = table["key"].map(by_key["value"]).astype(float)
            table["nk_n_samples"] = (
                table["key"].map(by_key["n_samples"]).fillna(0).astype(int)
            )
    groups = assign_response(table, definition) if len(table) else pd.Series()
    table["response_group"] = groups.astype(object).where(groups.notna(), NOT_EVALUABLE)
    if cells is not None:
        joined = cells.reindex(table["key"])
        table["n_cells"] = joined["n_cells"].fillna(0).astype(int).to_numpy()
        if "n_in_gate" in joined.columns:
            # a count stays an integer; patients without cells have none (<NA>)
            table["n_in_gate"] = joined["n_in_gate"].astype("Int64").array
            table["gate_pct"] = joined["gate_pct"].to_numpy()
    return table


# ------------------------------------------------------------- one patient's view
@dataclass(frozen=True)
class PatientSummary:
    """What the patient panel shows for one patient.

    Attributes
    ----------
    key, cohort, patient_id
        The patient.
    clinical
        ``(label, value)`` pairs in reading order; values already carry their unit.
    n_samples
        Samples of the patient in the (filtered) cohort rows.
    nk
        One row per timepoint: ``timepoint``, ``n_samples`` and one column per
        available NK metric key (ratio of means over the timepoint's samples).
    states
        ``cd8_state``, ``n_cells`` and ``pct`` (% of the patient's CD8 cells);
        empty when the patient has no CD8 cells.
    n_cells
        The patient's CD8 cells (in the samples).
    """

    key: str
    cohort: str
    patient_id: str
    clinical: tuple[tuple[str, str], ...]
    n_samples: int
    nk: pd.DataFrame
    states: pd.DataFrame
    n_cells: int


def _months(value: object, event: object, event_word: str) -> str:
    if value is None or pd.isna(value):
        return "not reported"
    text = f"{float(value):g} months"
    if event is not None and not pd.isna(event):
        text += f" ({event_word})" if int(event) == 1 else " (censored)"
    return text


def state_mix(states: pd.Series) -> pd.DataFrame:
    """Cells per CD8 state and their % of all the given cells.

    Every category of a categorical ``states`` is listed (0 where absent), so the
    panels of two patients compare line by line; other values in order of count.

    Parameters
    ----------
    states
        ``cd8_state`` of one patient's cells.

    Returns
    -------
    DataFrame
        ``cd8_state``, ``n_cells``, ``pct`` (sums to 100 when there are cells).
    """
    if isinstance(states.dtype, pd.CategoricalDtype):
        counts = states.value_counts(sort=False)
    else:
        counts = states.astype(str).value_counts()
    total = int(counts.sum())
    return pd.DataFrame(
        {
            "cd8_state": counts.index.astype(str),
            "n_cells": counts.to_numpy().astype(int),
            "pct": 100 * counts.to_numpy() / total if total else np.nan,
        }
    )


def patient_summary(
    samples: pd.DataFrame,
    key: str,
    *,
    cell_states: pd.Series | None = None,
) -> PatientSummary:
    """Clinical values, NK metrics per timepoint and CD8 state mix of one patient.

    Parameters
    ----------
    samples
        Typed cohort rows (filtered); the patient's rows are used.
    key
        ``"<cohort>|<patient_id>"``.
    cell_states
        ``cd8_state`` of the patient's CD8 cells (of those samples), or ``None``
        when the dataset has no single-cell data.

    Raises
    ------
    KeyError
        No sample of the patient is in ``samples``.
    """
    cohort, patient_id = split_patient_key(key)
    rows = samples[
        (samples["cohort"].astype(str) == cohort)
        & (samples["patient_id"].astype(str) == patient_id)
    ]
    if rows.empty:
        raise KeyError(f"patient {key!r} has no sample in this view")
    first = rows.iloc[0]

    def field(name: str) -> str:
        value = first.get(name)
        missing = value is None or pd.isna(value) or str(value).strip() == ""
        return "not reported" if missing else str(value)

    clinical = [
        ("Cohort", cohort),
        ("Tumor type", field("tumor_type")),
        ("Treatment", field("treatment")),
        ("RECIST best overall response", field("recist")),
    ]
    if "response" in rows.columns:
        clinical.append(("Reported response (R/NR)", field("response")))
    if "os_months" in rows.columns:
        clinical.append(
            (
                "Overall survival",
                _months(first["os_months"], first.get("os_event"), "died"),
            )
        )
    if "pfs_months" in rows.columns:
        clinical.append(
            (
                "Progression-free survival",
                _months(first["pfs_months"], first.get("pfs_event"), "progressed"),
            )
        )
    metrics = available_metrics(samples)
    nk_rows = []
    for timepoint in schema.TIMEPOINTS:
        at = rows[rows["timepoint"] == timepoint]
        if at.empty:
            continue
        row: dict[str, object] = {"timepoint": timepoint, "n_samples": len(at)}
        for metric in metrics:
            value = patient_metric(at, metric.key, timepoint=timepoint)["value"]
            row[metric.key] = float(value.iloc[0]) if len(value) else np.nan
        nk_rows.append(row)
    nk = pd.DataFrame(
        nk_rows, columns=["timepoint", "n_samples"] + [m.key for m in metrics]
    )
    states = (
        state_mix(cell_states)
        if cell_states is not None
        else pd.DataFrame(columns=["cd8_state", "n_cells", "pct"])
    )
    return PatientSummary(
        key=key,
        cohort=cohort,
        patient_id=patient_id,
        clinical=tuple(clinical),
        n_samples=len(rows),
        nk=nk,
        states=states,
        n_cells=int(states["n_cells"].sum()) if len(states) else 0,
    )
