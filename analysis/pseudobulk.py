"""Pseudobulk differential expression between two cell sets, patients as replicates.

Cells are never the unit of a test. For each patient and each set, the raw counts of
the patient's cells in that set are summed into one pseudobulk sample; PyDESeq2 then
tests set A against set B over those samples (Squair et al., Nat Commun 2021; the
scverse single-cell best-practices book):

* **design** - ``~ group`` when the two sets come from different patients (responders
  vs non-responders); ``~ patient + group`` (paired) when they come from the same
  patients (gate+ vs gate- cells), which compares the sets *within* each patient.
  Patients with a sample in only one set are then dropped (counted as unpaired).
  Optional patient covariates (cohort, tumor type ...) join an unpaired design;
  in a paired design the patient term already absorbs them.
* **minimum cells** - a patient's sample in a set needs at least
  :data:`MIN_CELLS` cells; smaller ones are dropped and counted.
* **gene filter** - a gene is tested when it has at least :data:`MIN_COUNT` counts in
  at least as many samples as the smaller group has (the idea of edgeR's
  ``filterByExpr``); filtered genes are counted, not shown.
* **size factors** - DESeq2's *poscounts* estimator (``size_factors_fit_type=
  "poscounts"``): pseudobulks of small sets hold many zeros, where the
  median-of-ratios estimator fails when no gene is non-zero in every sample.
* log2 fold changes are set A over set B (positive: higher in A), MLE without
  shrinkage; p-values are Wald tests with DESeq2's Cook's-distance and independent
  filtering, adjusted by Benjamini-Hochberg.

Without raw counts (no ``layers["counts"]``, no integer ``.raw``) the module falls back,
and says so, to a test of **per-patient means** of the log-normalized expression: a
Welch t-test between patient groups (a paired t-test for paired sets), BH adjusted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: minimum cells of one set in one patient for a pseudobulk sample
MIN_CELLS = 10
#: a tested gene has at least this many counts in enough samples (see module doc)
MIN_COUNT = 10
#: rows read per chunk from the h5ad (bounded memory at a million cells)
CHUNK_ROWS = 100_000
SET_LABELS = ("A", "B")
GENE_FILTER_TEXT = (
    f"genes with at least {MIN_COUNT} counts in at least as many pseudobulk samples "
    "as the smaller group has"
)
FALLBACK_FILTER_TEXT = (
    "genes detected (mean log-normalized expression > 0) in at least as many "
    "patient samples as the smaller group has"
)
METHOD_DESEQ2 = (
    "pseudobulk (raw counts summed per patient and set), PyDESeq2 Wald test, "
    "poscounts size factors, Benjamini-Hochberg"
)
METHOD_FALLBACK = (
    "FALLBACK without raw counts: per-patient mean of log-normalized expression, "
    "{test} on patient means, Benjamini-Hochberg (log2FC = difference of means / ln 2)"
)

Progress = Callable[[float, str], None]


class DEError(ValueError):
    """The comparison cannot be run; the message says why and what to change."""


# ------------------------------------------------------------------ reading counts
def counts_source(h5ad_path: Path | str) -> str | None:
    """Where the h5ad keeps raw counts: ``"layers/counts"``, ``"raw/X"`` or ``None``.

    ``.raw`` counts only when its values are whole numbers (``.raw`` often holds
    log-normalized values instead).
    """
    import h5py

    with h5py.File(h5ad_path, "r") as handle:
        if "layers" in handle and "counts" in handle["layers"]:
            return "layers/counts"
        if "raw" in handle and "X" in handle["raw"]:
            element = handle["raw/X"]
            data = element["data"] if isinstance(element, h5py.Group) else element
            sample = np.asarray(data[: min(10_000, data.shape[0])]).ravel()
            if sample.size and np.allclose(sample, np.round(sample)):
                return "raw/X"
    return None


def _gene_names(handle, key: str) -> pd.Index:
    import anndata

    var_key = "raw/var" if key == "raw/X" else "var"
    return pd.Index(anndata.io.read_elem(handle[var_key]).index.astype(str))


def _row_chunks(handle, key: str, rows: np.ndarray):
    """Yield (positions into ``rows``, CSR block of those rows) in row order."""
    import anndata
    import h5py
    import scipy.sparse as sp

    element = handle[key]
    dense = isinstance(element, h5py.Dataset)
    matrix = element if dense else anndata.io.sparse_dataset(element)
    n_obs = matrix.shape[0]
    for start in range(0, n_obs, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n_obs)
        lo, hi = np.searchsorted(rows, [start, stop])
        if lo == hi:
            continue
        block = matrix[start:stop]
        block = sp.csr_matrix(block)
        yield np.arange(lo, hi), block[rows[lo:hi] - start]


@dataclass(frozen=True)
class Pseudobulk:
    """Per patient x set sums, before any sample or gene is dropped.

    Attributes
    ----------
    samples
        One row per candidate sample: ``sample`` id, ``key`` (patient), ``set``
        (``A``/``B``), ``n_cells``.
    counts
        Samples x genes summed raw counts (``None`` without raw counts).
    lognorm_sum, detected
        Samples x genes: sum of log-normalized expression, and number of cells with
        expression > 0.
    genes
        Gene names (columns of the three matrices).
    counts_source
        ``layers/counts``, ``raw/X`` or ``None``.
    n_overlap
        Cells in both sets.
    """

    samples: pd.DataFrame
    counts: np.ndarray | None
    lognorm_sum: np.ndarray
    detected: np.ndarray
    genes: pd.Index
    counts_source: str | None
    n_overlap: int = 0


def pseudobulk(
    h5ad_path: Path | str,
    cells: np.ndarray,
    patient_keys: Sequence[str],
    patient_codes: np.ndarray,
    mask_a: np.ndarray,
    mask_b: np.ndarray,
    *,
    use_counts: bool = True,
    progress: Progress | None = None,
) -> Pseudobulk:
    """Sum counts (and log-normalized expression) per patient x set.

    Parameters
    ----------
    h5ad_path
        The ``cd8_cells.h5ad``.
    cells
        Sorted row indices (into the h5ad) of the cells the masks refer to.
    patient_keys
        Patient key per patient code.
    patient_codes
        Patient code of each cell in ``cells``.
    mask_a, mask_b
        Membership of each cell in set A / set B (a cell may be in both).
    use_counts
        Read raw counts when the file has them (``False``: the fallback only).

    Returns
    -------
    Pseudobulk
        Candidate samples are every patient x set with at least one cell.
    """
    import h5py
    import scipy.sparse as sp

    report = progress or (lambda _f, _m: None)
    cells = np.asarray(cells)
    if np.any(np.diff(cells) <= 0):
        raise ValueError("cells must be sorted and unique")
    n_patients = len(patient_keys)
    source = counts_source(h5ad_path) if use_counts else None
    sample_of = []
    for offset, mask in enumerate((mask_a, mask_b)):
        code = np.where(mask, patient_codes + offset * n_patients, -1)
        sample_of.append(code)
    n_cells = np.zeros(2 * n_patients, dtype=np.int64)
    for code in sample_of:
        n_cells += np.bincount(code[code >= 0], minlength=2 * n_patients)

    def indicator(positions: np.ndarray):
        rows, cols = [], []
        for code in sample_of:
            sub = code[positions]
            keep = sub >= 0
            rows.append(sub[keep])
            cols.append(np.flatnonzero(keep))
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        return sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float64), (rows, cols)),
            shape=(2 * n_patients, len(positions)),
        )

    with h5py.File(h5ad_path, "r") as handle:
        genes = _gene_names(handle, "X")
        lognorm_sum = np.zeros((2 * n_patients, len(genes)))
        detected = np.zeros((2 * n_patients, len(genes)))
        counts = None
        for positions, block in _row_chunks(handle, "X", cells):
            ind = indicator(positions)
            lognorm_sum += np.asarray((ind @ block).todense())
            nonzero = block.copy()
            nonzero.data = (nonzero.data > 0).astype(np.float64)
            detected += np.asarray((ind @ nonzero).todense())
            report(0.1 + 0.3 * positions[-1] / len(cells), "summing expression")
        if source is not None:
            count_genes = _gene_names(handle, source)
            where = count_genes.get_indexer(genes)
            counts = np.zeros((2 * n_patients, len(genes)))
            for positions, block in _row_chunks(handle, source, cells):
                summed = np.asarray((indicator(positions) @ block).todense())
                counts[:, where >= 0] += summed[:, where[where >= 0]]
                report(0.4 + 0.2 * positions[-1] / len(cells), "summing raw counts")
            counts = np.rint(counts).astype(np.int64)
    samples = pd.DataFrame(
        {
            "key": list(patient_keys) * 2,
            "set": np.repeat(SET_LABELS, n_patients),
            "n_cells": n_cells,
        }
    )
    samples["sample"] = samples["set"] + ":" + samples["key"]
    keep = samples["n_cells"].to_numpy() > 0
    return Pseudobulk(
        samples=samples[keep].reset_index(drop=True),
        counts=None if counts is None else counts[keep],
        lognorm_sum=lognorm_sum[keep],
        detected=detected[keep],
        genes=genes,
        counts_source=source,
        n_overlap=int(np.sum(mask_a & mask_b)),
    )


# ------------------------------------------------------------------ the test
@dataclass
class DEResult:
    """A finished comparison (everything the page, the CSV and ``cli.py de`` show).

    ``table`` has one row per tested gene: ``gene``, ``log2FC`` (A over B), ``lfcSE``,
    ``stat``, ``pvalue``, ``padj``, ``baseMean`` (mean of normalized counts; NaN in the
    fallback), ``pct_A``/``pct_B`` (% of the set's cells with expression > 0) and
    ``mean_A``/``mean_B`` (mean log-normalized expression of the set's cells), sorted
    by p-value.
    """

    table: pd.DataFrame
    method: str
    design: str
    paired: bool
    n_patients: dict[str, int]
    n_cells: dict[str, int]
    dropped: list[dict]
    gene_filter: str
    n_genes_in_data: int
    covariates: list[str]
    notes: list[str]
    patient_means: pd.DataFrame
    samples: pd.DataFrame
    counts: pd.DataFrame | None = None
    metadata: pd.DataFrame | None = None
    fallback: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self, *, top: int | None = None) -> dict:
        """JSON-ready summary and genes (all, or the ``top`` first)."""
        from analysis.stats import to_jsonable

        genes = self.table if top is None else self.table.head(top)
        return to_jsonable(
            {
                "method": self.method,
                "fallback": self.fallback,
                "design": self.design,
                "paired": self.paired,
                "sets": self.labels,
                "n_patients": self.n_patients,
                "n_cells": self.n_cells,
                "dropped": self.dropped,
                "gene_filter": self.gene_filter,
                "n_genes_in_data": self.n_genes_in_data,
                "n_genes_tested": len(self.table),
                "covariates": self.covariates,
                "notes": self.notes,
                "genes": genes.to_dict(orient="records"),
            }
        )


def _drop_small(samples: pd.DataFrame, min_cells: int) -> tuple[np.ndarray, list]:
    keep = samples["n_cells"].to_numpy() >= min_cells
    dropped = [
        {
            "patient": r.key,
            "set": r.set,
            "n_cells": int(r.n_cells),
            "reason": f"fewer than {min_cells} cells in the set",
        }
        for r in samples[~keep].itertuples()
    ]
    return keep, dropped


def _pairing(samples: pd.DataFrame, keep: np.ndarray) -> tuple[bool, np.ndarray, list]:
    """Paired when a patient has kept samples in both sets; unpaired ones dropped."""
    kept = samples[keep]
    both = set(kept.loc[kept["set"] == "A", "key"]) & set(
        kept.loc[kept["set"] == "B", "key"]
    )
    if not both:
        return False, keep, []
    unpaired = keep & ~samples["key"].isin(both).to_numpy()
    dropped = [
        {
            "patient": r.key,
            "set": r.set,
            "n_cells": int(r.n_cells),
            "reason": "no sample in the other set (paired design)",
        }
        for r in samples[unpaired].itertuples()
    ]
    return True, keep & ~unpaired, dropped


def _covariate_columns(
    meta: pd.DataFrame,
    patients: pd.DataFrame | None,
    covariates: Sequence[str],
    paired: bool,
) -> tuple[list[str], list[str]]:
    """Covariates that can enter the design, and notes on those that cannot."""
    used, notes = [], []
    if not covariates:
        return used, notes
    if paired:
        return [], [
            "covariates "
            + ", ".join(covariates)
            + " not added: the paired design's patient term already accounts for "
            "everything constant within a patient"
        ]
    table = patients.set_index("key") if patients is not None else pd.DataFrame()
    for name in covariates:
        if name not in table.columns:
            raise DEError(
                f"covariate {name!r} is not a patient field; use one of "
                + ", ".join(c for c in ("cohort", "tumor_type", "treatment"))
            )
        values = meta["key"].map(table[name]).astype("string")
        if values.isna().any():
            notes.append(f"covariate {name} not added: missing for some patients")
            continue
        if values.nunique() < 2:
            notes.append(
                f"covariate {name} not added: one value only ({values.iloc[0]})"
            )
            continue
        codes = pd.factorize(values, sort=True)[0]
        meta[name] = [f"L{c}" for c in codes]
        design = pd.get_dummies(meta[["group", *used, name]], drop_first=True)
        design.insert(0, "intercept", 1)
        if np.linalg.matrix_rank(design.to_numpy(float)) < design.shape[1]:
            meta.drop(columns=name, inplace=True)
            notes.append(
                f"covariate {name} not added: it is confounded with the sets "
                "(or with another covariate) in these patients"
            )
            continue
        used.append(name)
    return used, notes


def compare(
    pb: Pseudobulk,
    *,
    patients: pd.DataFrame | None = None,
    covariates: Sequence[str] = (),
    min_cells: int = MIN_CELLS,
    labels: dict[str, str] | None = None,
    n_cpus: int = 1,
    progress: Progress | None = None,
) -> DEResult:
    """Test set A against set B over the pseudobulk samples (see module doc).

    Parameters
    ----------
    pb
        From :func:`pseudobulk`.
    patients
        Patient table (``key`` and covariate columns) for covariates.
    covariates
        Patient fields to adjust for (unpaired designs only).
    min_cells
        Minimum cells of a set in a patient.
    labels
        Names of the sets (``{"A": ..., "B": ...}``), for the result.
    n_cpus
        Processes PyDESeq2 may use.

    Raises
    ------
    DEError
        Fewer than two patients (pairs) per group remain, or no gene passes the
        filter.
    """
    report = progress or (lambda _f, _m: None)
    samples = pb.samples
    keep, dropped = _drop_small(samples, min_cells)
    paired, keep, unpaired = _pairing(samples, keep)
    dropped += unpaired
    kept = samples[keep].reset_index(drop=True)
    n_patients = {s: int((kept["set"] == s).sum()) for s in SET_LABELS}
    # cells in the kept samples (those the test uses)
    n_cells = {s: int(kept.loc[kept["set"] == s, "n_cells"].sum()) for s in SET_LABELS}
    if min(n_patients.values()) < 2:
        what = "pairs of samples" if paired else "patients"
        raise DEError(
            f"too few {what} to compare: set A has {n_patients['A']}, set B "
            f"{n_patients['B']} patients with at least {min_cells} cells (need 2 or "
            "more each); widen the sets or the filter"
        )
    notes = []
    if pb.n_overlap:
        notes.append(
            f"{pb.n_overlap:,} cells are in both sets and count in both pseudobulks"
        )
    smaller = min(n_patients.values())
    meta = pd.DataFrame(
        {
            "group": kept["set"].to_numpy(),
            "patient": [f"p{c}" for c in pd.factorize(kept["key"])[0]],
            "key": kept["key"].to_numpy(),
        },
        index=pd.Index(kept["sample"].to_numpy(), name="sample"),
    )
    n_in_set = kept["n_cells"].to_numpy()[:, None]
    means = pb.lognorm_sum[keep] / n_in_set
    by_set = {s: (kept["set"] == s).to_numpy() for s in SET_LABELS}
    pct = {
        s: 100 * pb.detected[keep][m].sum(0) / max(n_in_set[m].sum(), 1)
        for s, m in by_set.items()
    }
    mean_set = {
        s: pb.lognorm_sum[keep][m].sum(0) / max(n_in_set[m].sum(), 1)
        for s, m in by_set.items()
    }
    fallback = pb.counts is None
    if fallback:
        tested = (means > 0).sum(0) >= smaller
        filter_text = FALLBACK_FILTER_TEXT
    else:
        counts = pb.counts[keep]
        tested = (counts >= MIN_COUNT).sum(0) >= smaller
        filter_text = GENE_FILTER_TEXT
    if not tested.any():
        raise DEError(
            "no gene passes the filter (" + filter_text + "); the sets hold too few "
            "cells or counts"
        )
    genes = pb.genes[tested]
    report(0.6, "testing")
    if fallback:
        table, design = _fallback_test(means[:, tested], meta, paired)
        used, cov_notes = (
            [],
            (
                [f"covariates {', '.join(covariates)} not used by the fallback test"]
                if covariates
                else []
            ),
        )
        count_frame = None
        method = METHOD_FALLBACK.format(
            test="paired t-test" if paired else "Welch t-test"
        )
    else:
        used, cov_notes = _covariate_columns(meta, patients, covariates, paired)
        terms = (["patient"] if paired else []) + used + ["group"]
        design = "~ " + " + ".join(terms)
        count_frame = pd.DataFrame(counts[:, tested], index=meta.index, columns=genes)
        table = run_deseq2(count_frame, meta, design, n_cpus=n_cpus)
        method = METHOD_DESEQ2
    notes += cov_notes
    table.insert(0, "gene", genes)
    table["pct_A"] = pct["A"][tested]
    table["pct_B"] = pct["B"][tested]
    table["mean_A"] = mean_set["A"][tested]
    table["mean_B"] = mean_set["B"][tested]
    table = table.sort_values(["pvalue", "gene"], na_position="last").reset_index(
        drop=True
    )
    patient_means = pd.DataFrame(means[:, tested], index=meta.index, columns=genes)
    report(1.0, "done")
    return DEResult(
        table=table,
        method=method,
        design=design,
        paired=paired,
        n_patients=n_patients,
        n_cells=n_cells,
        dropped=dropped,
        gene_filter=filter_text,
        n_genes_in_data=len(pb.genes),
        covariates=used,
        notes=notes,
        patient_means=patient_means,
        samples=meta,
        counts=count_frame,
        metadata=meta.drop(columns="key") if not fallback else None,
        fallback=fallback,
        labels=dict(labels or {}),
    )


def run_deseq2(
    counts: pd.DataFrame, metadata: pd.DataFrame, design: str, *, n_cpus: int = 1
) -> pd.DataFrame:
    """PyDESeq2 (poscounts size factors) of ``group`` A vs B under ``design``.

    Returns ``log2FC``, ``lfcSE``, ``stat``, ``pvalue``, ``padj``, ``baseMean`` in the
    order of ``counts.columns``.
    """
    import warnings

    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    inference = DefaultInference(n_cpus=n_cpus)
    with warnings.catch_warnings():
        # PyDESeq2 warns about low replicate numbers and dtype casts; the result
        # states n per group instead
        warnings.simplefilter("ignore")
        dds = DeseqDataSet(
            counts=counts,
            metadata=metadata,
            design=design,
            size_factors_fit_type="poscounts",
            refit_cooks=True,
            inference=inference,
            quiet=True,
        )
        dds.deseq2()
        stats = DeseqStats(
            dds, contrast=["group", "A", "B"], inference=inference, quiet=True
        )
        stats.summary()
    res = stats.results_df
    return pd.DataFrame(
        {
            "log2FC": res["log2FoldChange"].to_numpy(),
            "lfcSE": res["lfcSE"].to_numpy(),
            "stat": res["stat"].to_numpy(),
            "pvalue": res["pvalue"].to_numpy(),
            "padj": res["padj"].to_numpy(),
            "baseMean": res["baseMean"].to_numpy(),
        }
    )


def _fallback_test(
    means: np.ndarray, meta: pd.DataFrame, paired: bool
) -> tuple[pd.DataFrame, str]:
    """Welch (or paired) t-test on per-patient means, BH over tested genes."""
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    in_a = (meta["group"] == "A").to_numpy()
    if paired:
        order_a = meta[in_a].reset_index().set_index("key")
        order_b = meta[~in_a].reset_index().set_index("key")
        common = order_a.index.intersection(order_b.index)
        rows_a = meta.index.get_indexer(order_a.loc[common, "sample"])
        rows_b = meta.index.get_indexer(order_b.loc[common, "sample"])
        a, b = means[rows_a], means[rows_b]
        test = stats.ttest_rel(a, b, axis=0)
        diff = (a - b).mean(0)
        se = (a - b).std(0, ddof=1) / np.sqrt(len(common))
        design = "paired t-test on patient means (A - B within each patient)"
    else:
        a, b = means[in_a], means[~in_a]
        test = stats.ttest_ind(a, b, axis=0, equal_var=False)
        diff = a.mean(0) - b.mean(0)
        se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
        design = "Welch t-test on patient means (A vs B)"
    pvalue = np.asarray(test.pvalue, dtype=float)
    padj = np.full_like(pvalue, np.nan)
    ok = np.isfinite(pvalue)
    if ok.any():
        padj[ok] = multipletests(pvalue[ok], method="fdr_bh")[1]
    return (
        pd.DataFrame(
            {
                "log2FC": diff / np.log(2),
                "lfcSE": se / np.log(2),
                "stat": np.asarray(test.statistic, dtype=float),
                "pvalue": pvalue,
                "padj": padj,
                "baseMean": np.nan,
            }
        ),
        design,
    )
