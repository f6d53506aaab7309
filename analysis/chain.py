"""Statistics of the mechanism chain, one value per patient (never cells as samples).

* Spearman rho with a 95% CI (Fisher z with the Bonett-Wright standard error
  ``sqrt((1 + rho^2 / 2) / (n - 3))``) and scipy's two-sided p-value;
* partial Spearman: Pearson correlation of the residuals of the *ranks* of x and y
  after a least-squares fit on the ranks of the covariate(s), with a t-test on
  ``n - 2 - k`` degrees of freedom (k covariates) - the rank analogue of the partial
  correlation, checked in the tests against statsmodels OLS t-statistics;
* per-gene patient-level rho (which genes of a program carry an association).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Fewer patients than this: no correlation is reported.
MIN_PATIENTS = 5
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Correlation:
    """A (partial) Spearman correlation over patients.

    ``rho``, ``low``, ``high`` and ``p`` are NaN with a ``message`` when fewer than
    :data:`MIN_PATIENTS` patients have both values (or a value is constant).
    """

    rho: float
    low: float
    high: float
    p: float
    n: int
    message: str = ""

    @property
    def text(self) -> str:
        """``rho = -0.32 (95% CI -0.55 to -0.05), p = 0.021, n = 48``."""
        from analysis.stats import format_p

        if self.message:
            return self.message
        return (
            f"rho = {self.rho:.2f} (95% CI {self.low:.2f} to {self.high:.2f}), "
            f"{format_p(self.p)}, n = {self.n}"
        )


def _none(n: int, why: str) -> Correlation:
    nan = math.nan
    return Correlation(nan, nan, nan, nan, n, why)


def _fisher_ci(rho: float, n: int, k: int = 0) -> tuple[float, float]:
    df = n - 3 - k
    if df <= 0 or not math.isfinite(rho):
        return math.nan, math.nan
    if abs(rho) >= 1:
        return rho, rho
    se = math.sqrt((1 + rho**2 / 2) / df)
    z = math.atanh(rho)
    return math.tanh(z - Z95 * se), math.tanh(z + Z95 * se)


def spearman(x, y) -> Correlation:
    """Spearman rho of paired patient values with a 95% CI and p (NaN pairs dropped).

    Parameters
    ----------
    x, y
        One value per patient, same order.
    """

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < MIN_PATIENTS:
        return _none(n, f"too few patients with both values (n = {n})")
    if np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return _none(n, f"a value is the same for every patient (n = {n})")
    # scipy.stats.spearmanr's own definition (Pearson r of average ranks, p from t
    # on n - 2 df), with pandas' C ranking: scipy's wrappers cost ~5 ms per call and
    # the page makes ~100 calls (checked against spearmanr in the tests)
    rx, ry = _rank(x[ok]), _rank(y[ok])
    rho = float(np.clip(np.corrcoef(rx, ry)[0, 1], -1.0, 1.0))
    p = _t_p(rho, n - 2)
    low, high = _fisher_ci(rho, n)
    return Correlation(rho, low, high, p, n)


def _rank(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as ``scipy.stats.rankdata``."""
    return pd.Series(values).rank(method="average").to_numpy()


def _t_p(r: float, df: int) -> float:
    """Two-sided p of a correlation ``r`` from Student's t on ``df`` degrees."""
    from scipy import stats as sps

    if abs(r) >= 1:
        return 0.0
    t = r * math.sqrt(df / (1 - r**2))
    return float(2 * sps.t.sf(abs(t), df))


def _residual_ranks(values: np.ndarray, design: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ coef


def partial_spearman(x, y, covariates) -> Correlation:
    """Spearman correlation of x and y controlling for ``covariates`` (patients).

    Ranks of x, y and each covariate (average ranks for ties); x and y ranks are
    regressed on an intercept and the covariate ranks; the result is the Pearson
    correlation of the two residual vectors, tested with ``t = r sqrt(df / (1 - r^2))``
    on ``df = n - 2 - k``.

    Parameters
    ----------
    x, y
        One value per patient.
    covariates
        One array (or a 2-D array / sequence of arrays) of per-patient covariates.
    """

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    z = np.asarray(covariates, dtype=float)
    z = z.reshape(-1, 1) if z.ndim == 1 else z.T if z.shape[0] != len(x) else z
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z).all(axis=1)
    n, k = int(ok.sum()), z.shape[1]
    if n < MIN_PATIENTS + k:
        return _none(n, f"too few patients with all values (n = {n})")
    rx, ry = _rank(x[ok]), _rank(y[ok])
    rz = np.column_stack([_rank(col) for col in z[ok].T])
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return _none(n, f"a value is the same for every patient (n = {n})")
    design = np.column_stack([np.ones(n), rz])
    ex, ey = _residual_ranks(rx, design), _residual_ranks(ry, design)
    denom = math.sqrt(float(ex @ ex) * float(ey @ ey))
    if denom == 0:
        return _none(n, "no variation left after adjustment")
    r = float(np.clip(ex @ ey / denom, -1.0, 1.0))
    p = _t_p(r, n - 2 - k)
    low, high = _fisher_ci(r, n, k)
    return Correlation(r, low, high, p, n)


def chain_matrix(
    table: pd.DataFrame,
    variables: Mapping[str, str],
    *,
    covariate: str | None = None,
) -> pd.DataFrame:
    """Pairwise Spearman (and partial Spearman) correlations between patient values.

    Parameters
    ----------
    table
        One row per patient.
    variables
        Column -> label, in chain order.
    covariate
        Column to adjust for (e.g. total CD8 infiltration); ``None``: no partials.

    Returns
    -------
    DataFrame
        One row per ordered pair (``x``, ``y``, labels, ``rho``, ``p``, ``n``,
        ``partial_rho``, ``partial_p``, ``partial_n``); the diagonal has rho = 1.
    """
    rows = []
    columns = list(variables)
    done: dict[tuple[str, str], tuple] = {}
    for a in columns:
        for b in columns:
            if a == b:
                n = int(table[a].notna().sum())
                rows.append((a, b, 1.0, math.nan, n, 1.0, math.nan, n))
                continue
            if (b, a) in done:  # symmetric: computed once per pair
                rows.append((a, b, *done[(b, a)]))
                continue
            c = spearman(table[a], table[b])
            if covariate is not None and covariate not in (a, b):
                pc = partial_spearman(table[a], table[b], table[covariate])
                partial = (pc.rho, pc.p, pc.n)
            else:
                partial = (math.nan, math.nan, 0)
            done[(a, b)] = (c.rho, c.p, c.n, *partial)
            rows.append((a, b, *done[(a, b)]))
    out = pd.DataFrame(
        rows,
        columns=["x", "y", "rho", "p", "n", "partial_rho", "partial_p", "partial_n"],
    )
    out.insert(2, "x_label", out["x"].map(variables))
    out.insert(3, "y_label", out["y"].map(variables))
    return out


def gene_correlations(
    gene_means: pd.DataFrame, target: Sequence[float], *, top: int = 20
) -> pd.DataFrame:
    """Per-gene patient-level Spearman rho with ``target``, strongest ``top`` first.

    Parameters
    ----------
    gene_means
        Patients x genes: each gene's mean expression over the patient's cells.
    target
        One value per patient (same order), e.g. the NK metric.

    Returns
    -------
    DataFrame
        ``gene``, ``rho``, ``low``, ``high``, ``p``, ``n``, sorted by ``|rho|``
        (descending, then gene name); genes without a correlation are dropped.
    """
    target = np.asarray(target, dtype=float)
    rows = []
    for gene in gene_means.columns:
        c = spearman(gene_means[gene].to_numpy(), target)
        if not c.message:
            rows.append((str(gene), c.rho, c.low, c.high, c.p, c.n))
    out = pd.DataFrame(rows, columns=["gene", "rho", "low", "high", "p", "n"])
    if out.empty:
        return out
    out["_abs"] = out["rho"].abs()
    out = out.sort_values(["_abs", "gene"], ascending=[False, True]).drop(
        columns="_abs"
    )
    return out.head(top).reset_index(drop=True)
