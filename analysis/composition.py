"""CD8 state composition per patient and its association with response.

Fractions of a patient's CD8 cells in each state sum to one, so they are
compositional: one state rising forces the others down. Each patient's counts are
therefore turned into **centred log-ratios** (CLR: log of each state's count plus a
pseudocount, minus the mean of those logs over the patient's states) before responders
and non-responders are compared per state with a two-sided Mann-Whitney U test,
Benjamini-Hochberg adjusted over states. Each patient counts once.

The pseudocount (:data:`PSEUDOCOUNT` cells) keeps states a patient lacks finite; half a
cell is the usual choice for count data (it is smaller than any observed count).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.response import NON_RESPONDER, RESPONDER
from analysis.stats import MIN_GROUP, direction_sentence, mann_whitney

PSEUDOCOUNT = 0.5
METHOD = (
    "centred log-ratio of state counts (pseudocount 0.5 cell), two-sided "
    "Mann-Whitney U per state, Benjamini-Hochberg over states; one value per patient"
)


def state_counts(
    patient_codes: np.ndarray,
    state_codes: np.ndarray,
    patient_keys: Sequence[str],
    state_names: Sequence[str],
) -> pd.DataFrame:
    """Cells per patient (rows, ``patient_keys``) and state (columns).

    Cells without a state (code -1) are left out.
    """
    ok = state_codes >= 0
    flat = patient_codes[ok].astype(np.int64) * len(state_names) + state_codes[ok]
    counts = np.bincount(flat, minlength=len(patient_keys) * len(state_names))
    return pd.DataFrame(
        counts.reshape(len(patient_keys), len(state_names)),
        index=pd.Index(list(patient_keys), name="key"),
        columns=list(state_names),
    )


def clr(counts: pd.DataFrame, pseudocount: float = PSEUDOCOUNT) -> pd.DataFrame:
    """Centred log-ratio of each row: ``log(x + pc) - mean(log(x + pc))``."""
    logs = np.log(counts.to_numpy(float) + pseudocount)
    return pd.DataFrame(
        logs - logs.mean(axis=1, keepdims=True),
        index=counts.index,
        columns=counts.columns,
    )


def composition_test(
    counts: pd.DataFrame,
    groups: pd.Series,
    *,
    pseudocount: float = PSEUDOCOUNT,
) -> pd.DataFrame:
    """Responders vs non-responders per state, on CLR values (see module doc).

    Parameters
    ----------
    counts
        From :func:`state_counts` (patients with no cell are ignored).
    groups
        Response group per patient (index as ``counts``; RESPONDER /
        NON_RESPONDER, NA = not evaluable and left out).

    Returns
    -------
    pandas.DataFrame
        One row per state: ``state``, ``n_R``, ``n_NR``, median fraction and median
        CLR in each group, ``U`` (responders), ``p``, ``p_adj`` (BH), rank-biserial
        ``r`` (> 0: lower in responders) and ``direction`` in words.
    """
    from statsmodels.stats.multitest import multipletests

    counts = counts[counts.sum(axis=1) > 0]
    group = groups.reindex(counts.index).astype("string")
    fractions = counts.div(counts.sum(axis=1), axis=0)
    values = clr(counts, pseudocount)
    rows = []
    for state in counts.columns:
        r_vals = values.loc[group == RESPONDER, state]
        nr_vals = values.loc[group == NON_RESPONDER, state]
        test = mann_whitney(r_vals, nr_vals)
        rows.append(
            {
                "state": state,
                "n_R": test.n1,
                "n_NR": test.n2,
                "median_fraction_R": float(
                    fractions.loc[group == RESPONDER, state].median()
                ),
                "median_fraction_NR": float(
                    fractions.loc[group == NON_RESPONDER, state].median()
                ),
                "median_clr_R": float(r_vals.median()),
                "median_clr_NR": float(nr_vals.median()),
                "U": test.u,
                "p": test.p,
                "r": test.r,
                "direction": direction_sentence(
                    test.r, quantity=f"the share of {state} (CLR)"
                ),
            }
        )
    table = pd.DataFrame(rows)
    table["p_adj"] = np.nan
    ok = table["p"].notna().to_numpy()
    if ok.any():
        table.loc[ok, "p_adj"] = multipletests(table.loc[ok, "p"], method="fdr_bh")[1]
    return table


def enough_patients(table: pd.DataFrame) -> bool:
    """At least :data:`analysis.stats.MIN_GROUP` patients in each group."""
    return (
        bool(len(table))
        and int(table["n_R"].min()) >= MIN_GROUP
        and int(table["n_NR"].min()) >= MIN_GROUP
    )
