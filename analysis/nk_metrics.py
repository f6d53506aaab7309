"""NK metrics and one value per patient.

Raw NK fraction of CD45+ cells tracks overall immune infiltration, so the page offers
normalized metrics too and names the chosen one everywhere. Metrics are computed from
the patient's mean fractions at a timepoint (ratio of means), so several samples of a
patient at one timepoint count once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data import schema

LYMPHOCYTE_COLUMNS = ("frac_nk", "frac_cd8", "frac_cd4", "frac_b")
#: Added to NK and CD8 fractions by ``log2_nk_cd8_pseudo`` so that samples with
#: NK or CD8 = 0 keep a value: 0.01 = 1% of the cells, about the detection limit
#: of CIBERSORT and of small flow gates (a value at or below it is "not detected").
PSEUDOCOUNT = 0.01
_SHORT = {"frac_nk": "NK", "frac_cd8": "CD8", "frac_cd4": "CD4", "frac_b": "B"}


@dataclass(frozen=True)
class Metric:
    """An NK metric available for a table.

    Attributes
    ----------
    key
        Stable id (``frac_nk``, ``nk_lymphocytes``, ``nk_over_nk_cd8``, ``log2_nk_cd8``
        or a ``score_*`` column name).
    label
        Axis label naming what is measured (and the denominator).
    kind
        ``"fraction"``, ``"ratio"``, ``"log-ratio"`` or ``"score"``.
    """

    key: str
    label: str
    kind: str
    short_label: str = ""

    @property
    def short(self) -> str:
        """A name for sentences and cut-offs ("NK among lymphocytes")."""
        return self.short_label or _SHORT_LABELS.get(self.key, self.label)


_SHORT_LABELS = {
    "frac_nk": "NK fraction of CD45+ cells",
    "nk_lymphocytes": "NK among lymphocytes",
}


def lymphocyte_denominator(columns) -> list[str]:
    """The lymphocyte fractions present among NK, CD8, CD4 and B."""
    return [c for c in LYMPHOCYTE_COLUMNS if c in columns]


def fraction_basis(table: pd.DataFrame) -> str | None:
    """What the ``frac_*`` values of ``table`` are fractions of, from its
    ``fraction_source`` column ("fraction of LM22 immune cells (CIBERSORT
    relative)"); ``None`` when not recorded (the bundle default: CD45+ cells)."""
    if schema.FRACTION_SOURCE not in table.columns:
        return None
    found = sorted(
        {str(v) for v in table[schema.FRACTION_SOURCE].dropna() if str(v)}
        & set(schema.FRACTION_SOURCES)
    )
    if not found:
        return None
    if len(found) == 1:
        return schema.FRACTION_SOURCES[found[0]]
    return "fraction of mixed sources: " + "; ".join(
        schema.FRACTION_SOURCES[f] for f in found
    )


def has_zero_nk_or_cd8(table: pd.DataFrame) -> bool:
    """True when some sample has NK or CD8 = 0 (log2(NK / CD8) undefined)."""
    return bool(
        ((table["frac_nk"] == 0) | (table["frac_cd8"] == 0)).any()
        if {"frac_nk", "frac_cd8"} <= set(table.columns)
        else False
    )


def available_metrics(table: pd.DataFrame) -> list[Metric]:
    """Metrics computable from the columns of ``table``, in menu order.

    The raw NK label names what the fractions are of (``fraction_source``), and
    the pseudocount variant of log2(NK / CD8) is offered when NK or CD8 is 0 in
    some sample.
    """
    columns = set(table.columns)
    metrics = []
    basis = fraction_basis(table)
    if "frac_nk" in columns:
        if basis is None:
            metrics.append(
                Metric("frac_nk", "NK cells, fraction of CD45+ cells", "fraction")
            )
        else:
            short = "NK " + basis.split(" (")[0]
            metrics.append(Metric("frac_nk", f"NK cells, {basis}", "fraction", short))
    if {"frac_nk", "frac_cd8"} <= columns:
        parts = " + ".join(_SHORT[c] for c in lymphocyte_denominator(columns))
        metrics += [
            Metric(
                "nk_lymphocytes", f"NK among lymphocytes, NK / ({parts})", "fraction"
            ),
            Metric("nk_over_nk_cd8", "NK / (NK + CD8)", "ratio"),
            Metric("log2_nk_cd8", "log2(NK / CD8)", "log-ratio"),
        ]
        if has_zero_nk_or_cd8(table):
            metrics.append(
                Metric(
                    "log2_nk_cd8_pseudo",
                    f"log2((NK + {PSEUDOCOUNT:g}) / (CD8 + {PSEUDOCOUNT:g})), "
                    "keeps NK or CD8 = 0",
                    "log-ratio",
                    "log2 NK/CD8 with pseudocount",
                )
            )
    for column in sorted(
        c
        for c in columns
        # program scores (issue 15) are not NK estimates
        if c.startswith(schema.SCORE_PREFIX) and not c.startswith("score_program_")
    ):
        name = column.removeprefix(schema.SCORE_PREFIX).replace("_", " ")
        metrics.append(Metric(column, f"{name} (score, not a fraction)", "score"))
    return metrics


def get_metric(table: pd.DataFrame, key: str) -> Metric:
    """The metric ``key`` for this table, or ``ValueError`` naming the choices."""
    for metric in available_metrics(table):
        if metric.key == key:
            return metric
    choices = ", ".join(m.key for m in available_metrics(table)) or "none"
    raise ValueError(
        f"NK metric {key!r} is not available here; choose one of {choices}"
    )


def metric_values(table: pd.DataFrame, key: str) -> pd.Series:
    """The metric per row of ``table`` (samples or patient means).

    Undefined values (0 / 0, log of 0) are ``NaN``, never ``inf``.
    """
    get_metric(table, key)
    if key == "frac_nk" or key.startswith(schema.SCORE_PREFIX):
        return table[key].astype(float)
    nk = table["frac_nk"].astype(float)
    cd8 = table["frac_cd8"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if key == "nk_lymphocytes":
            columns = lymphocyte_denominator(table.columns)
            # min_count: a sample missing any lymphocyte fraction gets NaN, not a
            # smaller denominator
            total = table[columns].astype(float).sum(axis=1, min_count=len(columns))
            total = total.where(table[columns].notna().all(axis=1))
            values = nk / total
        elif key == "nk_over_nk_cd8":
            values = nk / (nk + cd8)
        elif key == "log2_nk_cd8_pseudo":
            values = np.log2((nk + PSEUDOCOUNT) / (cd8 + PSEUDOCOUNT))
        else:
            values = np.log2(nk / cd8)
    return values.replace([np.inf, -np.inf], np.nan)


def patient_metric(
    samples: pd.DataFrame, key: str, *, timepoint: str | None = "pre"
) -> pd.DataFrame:
    """One row per patient at ``timepoint`` with the metric and patient fields.

    Fractions of a patient's samples at the timepoint are averaged first, then the
    metric is computed (ratio of means). ``n_samples`` says how many samples were
    averaged.

    Parameters
    ----------
    samples
        Typed cohort rows (filtered).
    key
        Metric key (see :func:`available_metrics`).
    timepoint
        ``pre``, ``on``, ``post``; ``None`` uses all samples.

    Returns
    -------
    DataFrame
        ``cohort``, ``patient_id``, patient fields, ``n_samples`` and ``value``.
    """
    get_metric(samples, key)
    rows = samples if timepoint is None else samples[samples["timepoint"] == timepoint]
    key_cols = list(schema.PATIENT_KEY)
    patient_fields = ["tumor_type", "treatment", "recist"] + [
        c for c in schema.OPTIONAL_COLUMNS if c in rows.columns
    ]
    numeric = [
        c
        for c in rows.columns
        if c.startswith(schema.FRACTION_PREFIX) or c.startswith(schema.SCORE_PREFIX)
    ]
    if rows.empty:
        return pd.DataFrame(columns=[*key_cols, *patient_fields, "n_samples", "value"])
    grouped = rows.groupby(key_cols, sort=True)
    table = grouped[patient_fields].first()
    table["n_samples"] = grouped.size()
    table = table.join(grouped[numeric].mean())
    table["value"] = metric_values(table, key)
    return table.reset_index()


def split_cutoffs(values: pd.Series, *, method: str = "median") -> tuple[float, ...]:
    """The cut-off value(s) of :func:`split_by_metric` for these values.

    Median: ``(median,)``; NK-low is ``<= median``. Tertiles: the 1/3 and 2/3
    quantiles (linear interpolation); NK-low ``<= q1 <`` NK-mid ``<= q2 <`` NK-high.
    Empty when no value is present.
    """
    values = values.astype(float).dropna()
    if values.empty:
        return ()
    if method == "median":
        return (float(values.median()),)
    if method == "tertile":
        # numpy's linear interpolation lands exactly on a value when (n - 1) x q
        # is a whole number (n = 940: q2 is the 627th value); pandas' lerp was off
        # by one ulp there, which put the patient AT the cut-off above it
        low, high = np.quantile(values.to_numpy(), [1 / 3, 2 / 3])
        return (float(low), float(high))
    raise ValueError(f"split method must be 'median' or 'tertile', not {method!r}")


def split_by_metric(values: pd.Series, *, method: str = "median") -> pd.Series:
    """Label each value ``NK-low``/``NK-high`` (median) or by tertile.

    The median split puts values equal to the median in the low group. Tertiles
    give ``NK-low``, ``NK-mid``, ``NK-high``. ``NaN`` stays ``NA``. The cut-offs
    are :func:`split_cutoffs`.
    """
    values = values.astype(float)
    labels = pd.Series(pd.NA, index=values.index, dtype="string")
    cuts = split_cutoffs(values, method=method)
    ok = values.notna()
    if not cuts:
        return labels
    if method == "median":
        labels[ok] = np.where(values[ok] <= cuts[0], "NK-low", "NK-high")
    else:
        labels[ok] = np.select(
            [values[ok] <= cuts[0], values[ok] <= cuts[1]],
            ["NK-low", "NK-mid"],
            "NK-high",
        )
    return labels
