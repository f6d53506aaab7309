"""Documented gene lists for bulk-expression signature scores, and the scoring rule.

A score is the mean z-score of the signature's genes across the samples of one
import: each gene is centred and scaled across samples (standard deviation with
``ddof=1``), then the genes present are averaged per sample. Scores are relative
within a cohort (0 = cohort average) and are not fractions of cells; they are stored
as ``score_*`` columns and labelled "score, not a fraction" on every figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Signature:
    """A named gene list with its source."""

    column: str
    genes: tuple[str, ...]
    source: str


#: NK-cell markers: CD56 (NCAM1), CD16 (FCGR3A), NKp46 (NCR1), NKp80 (KLRF1),
#: CD94 (KLRD1), and the cytotoxic granule genes NKG7, GNLY, PRF1. NCR1 and KLRF1 are
#: the most NK-specific; NKG7, GNLY and PRF1 are shared with cytotoxic CD8 T cells, so
#: the score also rises with CD8 infiltration (compare with the CD8 score).
NK_SIGNATURE = Signature(
    column="score_NK_signature",
    genes=("NCAM1", "FCGR3A", "NCR1", "KLRF1", "KLRD1", "NKG7", "GNLY", "PRF1"),
    source="NK receptor and cytotoxic granule markers (CD56, CD16, NKp46, NKp80, "
    "CD94, NKG7, granulysin, perforin)",
)
#: CD8 T cells: CD8A and CD8B (the CD8 T-cell set of Rooney et al., Cell 2015).
CD8_SIGNATURE = Signature(
    column="score_CD8_signature",
    genes=("CD8A", "CD8B"),
    source="CD8A, CD8B (Rooney et al., Cell 2015)",
)
SIGNATURES = (NK_SIGNATURE, CD8_SIGNATURE)


def signature_scores(
    expression: pd.DataFrame, signature: Signature
) -> tuple[pd.Series, list[str], list[str]]:
    """Mean z-score of a signature per sample.

    Parameters
    ----------
    expression
        Genes x samples, log scale (e.g. log2 TPM + 1), gene symbols as index.
    signature
        The gene list.

    Returns
    -------
    scores, used, missing
        Score per sample (index = samples; NaN when no gene could be used), the genes
        used, and the genes absent from the matrix or constant across samples.
    """
    present = [g for g in signature.genes if g in expression.index]
    values = expression.loc[present].astype(float)
    sd = values.std(axis=1, ddof=1)
    usable = [g for g in present if np.isfinite(sd[g]) and sd[g] > 0]
    missing = [g for g in signature.genes if g not in usable]
    if not usable:
        return pd.Series(np.nan, index=expression.columns), [], missing
    z = values.loc[usable].sub(values.loc[usable].mean(axis=1), axis=0)
    z = z.div(sd[usable], axis=0)
    return z.mean(axis=0, skipna=True), usable, missing
