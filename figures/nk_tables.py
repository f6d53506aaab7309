"""The tables behind the NK page's survival panels (no Dash).

An export writes each panel's table as CSV next to its figure: for a Kaplan-Meier
panel that is every drawn step of every curve with its 95% band, the censoring
marks and the number-at-risk table, so the figure can be redrawn from the CSV.
"""

from __future__ import annotations

import pandas as pd

from analysis.survival import KMResult

COLUMNS = ["part", "group", "time", "survival", "ci_low", "ci_high", "at_risk"]


def km_table(km: KMResult) -> pd.DataFrame:
    """Every drawn point of a Kaplan-Meier figure, one row each.

    Parameters
    ----------
    km
        The curves, censoring and number at risk of one endpoint.

    Returns
    -------
    pandas.DataFrame
        ``part`` is ``curve`` (a step of the estimate: ``time``, ``survival``,
        ``ci_low``, ``ci_high``), ``censored`` (a censoring mark) or ``at risk``
        (``at_risk`` patients at ``time``); ``group`` names the NK group.
    """
    rows = []
    for curve, counts in zip(km.curves, km.at_risk, strict=True):
        bands = len(curve.ci_low) == len(curve.times)
        for i, (time, survival) in enumerate(
            zip(curve.times, curve.survival, strict=True)
        ):
            rows.append(
                {
                    "part": "curve",
                    "group": curve.group,
                    "time": time,
                    "survival": survival,
                    "ci_low": curve.ci_low[i] if bands else None,
                    "ci_high": curve.ci_high[i] if bands else None,
                }
            )
        rows += [
            {"part": "censored", "group": curve.group, "time": t, "survival": s}
            for t, s in zip(curve.censor_times, curve.censor_survival, strict=True)
        ]
        rows += [
            {"part": "at risk", "group": curve.group, "time": t, "at_risk": n}
            for t, n in zip(km.risk_times, counts, strict=True)
        ]
    return pd.DataFrame(rows, columns=COLUMNS)
