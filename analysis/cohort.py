"""Patient-level summaries of a (filtered) cohort table."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

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
