"""CIBERSORT/CIBERSORTx output and bulk expression -> cell-frequency and score columns.

Both produce one value per sample that is joined to a cohort table by ``sample_id``;
ids in the file that match no sample are reported, and an import whose ids match no
sample at all is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from data import schema
from data.errors import DataError, Problem
from data.importers import vocab
from data.importers.clinical import finish_cohort, score_column_name, score_sources
from data.importers.reading import read_bytes, read_table_bytes
from data.importers.report import ImportReport
from data.signatures import SIGNATURES, signature_scores

#: The 22 LM22 cell types of CIBERSORT, as printed in its output.
LM22 = (
    "B cells naive", "B cells memory", "Plasma cells", "T cells CD8",
    "T cells CD4 naive", "T cells CD4 memory resting", "T cells CD4 memory activated",
    "T cells follicular helper", "T cells regulatory (Tregs)", "T cells gamma delta",
    "NK cells resting", "NK cells activated", "Monocytes", "Macrophages M0",
    "Macrophages M1", "Macrophages M2", "Dendritic cells resting",
    "Dendritic cells activated", "Mast cells resting", "Mast cells activated",
    "Eosinophils", "Neutrophils",
)  # fmt: skip
#: Bundle fractions as sums of LM22 types. CD4 = every CD4 subset LM22 resolves
#: (naive, memory resting/activated, follicular helper, Tregs); B = naive + memory
#: B cells (plasma cells are not counted as B cells).
LM22_GROUPS = {
    "frac_nk": ("NK cells resting", "NK cells activated"),
    "frac_cd8": ("T cells CD8",),
    "frac_cd4": (
        "T cells CD4 naive", "T cells CD4 memory resting",
        "T cells CD4 memory activated", "T cells follicular helper",
        "T cells regulatory (Tregs)",
    ),
    "frac_b": ("B cells naive", "B cells memory"),
}  # fmt: skip
_SUFFIXES = ("cibersortx", "cibersortabs", "cibersort")
ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")


def lm22_key(name: str) -> str:
    """LM22 name in any spelling -> a key (spaces/underscores, ``_CIBERSORT``)."""
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    for suffix in _SUFFIXES:
        key = key.removesuffix(suffix)
    return key


_LM22_KEYS = {lm22_key(n): n for n in LM22}


def _join(
    cohort: pd.DataFrame,
    values: pd.DataFrame,
    *,
    file: str,
    what: str,
    report: ImportReport,
) -> pd.DataFrame:
    """Add ``values`` (index = sample ids) to ``cohort`` by ``sample_id``."""
    ids = values.index.astype(str)
    known = set(cohort["sample_id"].astype(str))
    matched = ids.isin(known)
    if not matched.any():
        raise DataError(
            Problem(
                file=file,
                column="sample id",
                message=f"none of its {len(ids)} sample ids match the clinical table "
                f"(file: {', '.join(ids[:3])}; clinical: "
                f"{', '.join(sorted(known)[:3])}).",
                fix="use the same sample ids in both files, or map the clinical "
                "sample_id to the column that holds these ids.",
            )
        )
    if not matched.all():
        unmatched = list(ids[~matched])
        report.warnings.append(
            Problem(
                file=file,
                column="sample id",
                rows=tuple(int(i) + 2 for i in np.flatnonzero(~matched)),
                message=f"{len(unmatched)} sample id(s) match no clinical row and are "
                f"left out: {', '.join(unmatched[:5])}"
                + (" ..." if len(unmatched) > 5 else "")
                + ".",
                fix="add them to the clinical table if they are patients of this "
                "cohort.",
                severity="warning",
            )
        )
    missing = ~cohort["sample_id"].astype(str).isin(set(ids))
    if missing.any():
        report.notes.append(
            f"{int(missing.sum())} clinical sample(s) have no {what}; their values "
            "are left empty."
        )
    report.notes.append(
        f"{int(matched.sum())} of {len(ids)} samples in {file} joined to the "
        "clinical table."
    )
    out = cohort.copy()
    aligned = values[matched].reindex(out["sample_id"].astype(str))
    for column in aligned.columns:
        out[column] = aligned[column].to_numpy()
    return out


def _numeric_block(raw: pd.DataFrame, columns: list[str], *, file: str) -> pd.DataFrame:
    return pd.DataFrame(
        {c: vocab.to_numbers(raw[c], file=file, source=c) for c in columns},
        index=raw.index,
    )


def cibersort_fractions(
    raw: pd.DataFrame,
    *,
    file: str,
    scores: Iterable[str] = (),
    id_column: str | None = None,
) -> tuple[pd.DataFrame, ImportReport]:
    """CIBERSORT(x) output (strings) -> ``frac_nk``, ``frac_cd8``, ``frac_cd4``,
    ``frac_b`` (and ``score_*`` columns for ``scores`` patterns), indexed by sample.

    The sample id is ``id_column`` when the file has it (``--map sample_id=...``),
    else the ``Mixture`` column, else the first column. The P-value is kept as
    ``cibersort_p``; Correlation, RMSE and other non-LM22 columns are ignored.
    Rows in percent are divided by 100; absolute-mode rows are rescaled to
    fractions of the 22 immune types; ``fraction_source`` records which.
    """
    report = ImportReport()
    if id_column not in raw.columns:
        id_column = next(
            (c for c in raw.columns if vocab.squash(c) in {"mixture", "sample",
                                            "sampleid", "id", "inputsample"}),
            raw.columns[0],
        )  # fmt: skip
    found = {}
    for column in raw.columns:
        name = _LM22_KEYS.get(lm22_key(column))
        if name and name not in found:
            found[name] = column
    needed = sorted({n for group in LM22_GROUPS.values() for n in group} - set(found))
    if not found:
        raise DataError(
            Problem(
                file=file,
                message="no LM22 cell-type columns found (e.g. `NK cells resting`, "
                "`T cells CD8`); is this CIBERSORT output?",
                fix="give the CIBERSORT or CIBERSORTx results table (LM22 signature), "
                "with one row per sample.",
            )
        )
    if needed:
        raise DataError(
            Problem(
                file=file,
                column=", ".join(needed),
                message="LM22 column(s) needed for NK, CD8, CD4 and B fractions are "
                "missing.",
                fix="export the full CIBERSORT results with all 22 LM22 cell types.",
            )
        )
    ids = raw[id_column].astype(str).str.strip()
    empty = vocab.is_missing(raw[id_column])
    if empty.any():
        raise DataError(
            Problem(
                file=file,
                column=id_column,
                rows=vocab.rows_of(empty),
                message="has empty sample ids.",
                fix="every row needs the sample id it was deconvolved from.",
            )
        )
    dup = ids.duplicated(keep=False)
    if dup.any():
        raise DataError(
            Problem(
                file=file,
                column=id_column,
                rows=vocab.rows_of(dup),
                message=f"has duplicated sample id(s) "
                f"{', '.join(pd.unique(ids[dup])[:3])}.",
                fix="keep one row per sample.",
            )
        )
    report.notes.append(
        f"CIBERSORT: sample ids from `{id_column}`; {len(found)} LM22 cell types found."
    )
    cells = _numeric_block(raw, [found[n] for n in LM22 if n in found], file=file)
    negative = (cells < 0).any(axis=1)
    if negative.any():
        bad = cells.columns[(cells < 0).any(axis=0)]
        raise DataError(
            Problem(
                file=file,
                column=", ".join(bad[:3]),
                rows=vocab.rows_of(negative),
                message="has negative cell fractions.",
                fix="CIBERSORT fractions are >= 0; check the export.",
            )
        )
    cells, scale, notes = _to_fractions(cells, raw, ids, file=file)
    report.notes += notes
    out = pd.DataFrame(index=ids.to_numpy())
    for target, names in LM22_GROUPS.items():
        out[target] = cells[[found[n] for n in names]].sum(axis=1).to_numpy()
    out[schema.FRACTION_SOURCE] = scale.to_numpy()
    p_column = next(
        (c for c in raw.columns if vocab.squash(c) in {"pvalue", "pval", "p"}), None
    )
    if p_column is not None:
        out[schema.CIBERSORT_P] = vocab.to_numbers(
            raw[p_column], file=file, source=p_column
        ).to_numpy()
        p = out[schema.CIBERSORT_P].dropna()
        report.notes.append(
            f"CIBERSORT p-value kept from `{p_column}` as `{schema.CIBERSORT_P}`: "
            f"{int((p < 0.05).sum())} of {len(p)} samples have p < 0.05 (reliable "
            "deconvolution)."
        )
    report.notes.append(
        "frac_nk = NK cells resting + activated; frac_cd8 = T cells CD8; frac_cd4 = "
        "CD4 naive + memory resting + memory activated + follicular helper + Tregs; "
        "frac_b = B cells naive + memory (fractions of the 22 LM22 immune types)."
    )
    extra = score_sources(raw.columns, scores)
    for source in extra:
        column = score_column_name(source)
        out[column] = vocab.to_numbers(raw[source], file=file, source=source).to_numpy()
        report.notes.append(f"{column}: score from `{source}` (not a fraction).")
    return out, report


def _to_fractions(
    cells: pd.DataFrame, raw: pd.DataFrame, ids: pd.Series, *, file: str
) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """Per row: fractions stay, percent rows (sum ~100) are divided by 100, other
    rows (absolute scores) are divided by their sum; notes say how many of each."""
    totals = cells.sum(axis=1)
    absolute_mode = any("absolute" in vocab.squash(c) for c in raw.columns)
    fraction = (totals - 1).abs() <= 0.05
    percent = (totals - 100).abs() <= 5
    if absolute_mode:
        fraction = percent = pd.Series(False, index=cells.index)
    rescaled = ~fraction & ~percent & (totals > 0)
    out = cells.copy()
    out[percent] = cells[percent] / 100.0
    out[rescaled] = cells[rescaled].div(totals[rescaled], axis=0)
    scale = pd.Series("cibersort_relative", index=cells.index)
    scale[rescaled] = "cibersortx_absolute"
    notes = []

    def some(mask: pd.Series) -> str:
        shown = ", ".join(ids[mask].astype(str).head(3))
        return shown + (" ..." if mask.sum() > 3 else "")

    if percent.any():
        notes.append(
            f"CIBERSORT: {int(percent.sum())} of {len(cells)} rows hold percentages "
            f"(they add up to ~100; e.g. {some(percent)}): divided by 100"
            + (
                f"; the other {int(fraction.sum())} rows already held fractions "
                "(they add up to 1) and were kept as they are."
                if fraction.any()
                else "."
            )
        )
    if rescaled.any():
        notes.append(
            f"CIBERSORT: {int(rescaled.sum())} of {len(cells)} rows are absolute-mode "
            f"scores (they add up to neither 1 nor 100; e.g. {some(rescaled)}): "
            "rescaled to fractions of the 22 LM22 immune cell types per sample."
        )
    return out, scale, notes


def import_cibersort(
    path: Path | str,
    cohort: pd.DataFrame,
    *,
    scores: Iterable[str] = (),
    sample_column: str | None = None,
    sheet: str | None = None,
) -> tuple[pd.DataFrame, ImportReport]:
    """Join CIBERSORT fractions to a cohort table and validate the result.

    Parameters
    ----------
    path
        CIBERSORT or CIBERSORTx results (CSV, TSV or XLSX).
    cohort
        Typed cohort table (from :func:`data.importers.clinical.import_clinical` or
        an existing bundle).
    scores
        Shell-style patterns of further columns to keep as ``score_*`` metrics
        (e.g. ``*NK*MCPcounter``).
    sample_column
        Column of the file holding the sample ids (``--map sample_id=...``); used
        when the file has it, so one joined table can be both files.
    sheet
        Excel sheet name or number.
    """
    path = Path(path)
    raw = read_table_bytes(read_bytes(path), file=path.name, sheet=sheet)
    values, report = cibersort_fractions(
        raw, file=path.name, scores=scores, id_column=sample_column
    )
    report.notes[:0] = list(raw.attrs.get("read_notes", []))
    replaced = [c for c in values.columns if c in cohort and cohort[c].notna().any()]
    if replaced:
        report.notes.append(f"replaced existing column(s): {', '.join(replaced)}.")
    joined = _join(cohort, values, file=path.name, what="CIBERSORT row", report=report)
    joined, checked = finish_cohort(joined, file=path.name)
    report.extend(checked)
    return joined, report


# ------------------------------------------------------------------ expression


def read_expression(path: Path | str) -> tuple[pd.DataFrame, ImportReport]:
    """Read a genes x samples matrix (CSV/TSV; first column = gene symbols).

    Duplicated genes are averaged, a samples x genes matrix is transposed, linear
    values (max > 50) are log2(x + 1) transformed, and every such step is reported.
    Ensembl ids are refused unless a symbol column (``gene_name``, ``symbol``) exists.
    """
    path = Path(path)
    file = path.name
    report = ImportReport()
    raw = read_table_bytes(read_bytes(path), file=file)
    if raw.shape[1] < 2:
        raise DataError(
            Problem(
                file=file,
                message="needs a gene column and at least one sample column.",
                fix="one row per gene, one column per sample, gene symbols in the "
                "first column.",
            )
        )
    symbol_columns = [
        c for c in raw.columns[1:]
        if vocab.squash(c) in {"genename", "symbol", "genesymbol", "hgncsymbol",
                               "gene", "featurename"}
    ]  # fmt: skip
    gene_column = raw.columns[0]
    genes = raw[gene_column].astype(str).str.strip()
    ensembl_share = genes.str.match(ENSEMBL.pattern).mean()
    if ensembl_share > 0.5:
        if not symbol_columns:
            raise DataError(
                Problem(
                    file=file,
                    column=gene_column,
                    message="holds Ensembl gene ids (e.g. "
                    f"`{genes.iloc[0]}`), not gene symbols; signatures are gene "
                    "symbols.",
                    fix="add a `gene_name` column with HGNC symbols (e.g. from "
                    "biomaRt) or convert the ids to symbols.",
                )
            )
        report.notes.append(
            f"genes: Ensembl ids in `{gene_column}` mapped to symbols from "
            f"`{symbol_columns[0]}`."
        )
        genes = raw[symbol_columns[0]].astype(str).str.strip()
    samples = [c for c in raw.columns[1:] if c not in symbol_columns]
    values = _numeric_block(raw, samples, file=file)
    values.index = genes.to_numpy()
    empty_gene = vocab.is_missing(pd.Series(genes.to_numpy()))
    if empty_gene.any():
        values = values[~empty_gene.to_numpy()]
        report.notes.append(f"{int(empty_gene.sum())} row(s) without a gene dropped.")
    known = {g for s in SIGNATURES for g in s.genes}
    if not (set(values.index) & known) and set(map(str, values.columns)) & known:
        values = values.T
        report.notes.append("the matrix was samples x genes: transposed.")
    if values.index.duplicated().any():
        n = int(values.index.duplicated().sum())
        values = values.groupby(level=0, sort=False).mean()
        report.notes.append(f"{n} duplicated gene row(s) averaged.")
    finite = values.to_numpy()[np.isfinite(values.to_numpy())]
    if finite.size and finite.max() > 50 and finite.min() >= 0:
        values = np.log2(values + 1.0)
        report.notes.append(
            f"values up to {finite.max():.3g} look linear (TPM/counts): log2(x + 1) "
            "applied."
        )
    return values, report


def expression_scores(
    expression: pd.DataFrame, *, file: str
) -> tuple[pd.DataFrame, ImportReport]:
    """NK and CD8 signature scores per sample (see :mod:`data.signatures`)."""
    report = ImportReport()
    if expression.shape[1] < 3:
        raise DataError(
            Problem(
                file=file,
                message=f"has {expression.shape[1]} sample(s); z-scores need at "
                "least 3.",
                fix="score the whole cohort in one matrix.",
            )
        )
    out = pd.DataFrame(index=expression.columns.astype(str))
    for signature in SIGNATURES:
        scores, used, missing = signature_scores(expression, signature)
        if not used:
            raise DataError(
                Problem(
                    file=file,
                    column=signature.column,
                    message=f"none of the genes of {signature.column} "
                    f"({', '.join(signature.genes)}) vary in the matrix.",
                    fix="check that rows are gene symbols (HGNC) and the matrix "
                    "covers these genes.",
                )
            )
        out[signature.column] = scores.to_numpy()
        text = (
            f"{signature.column}: mean z-score of {len(used)} gene(s) "
            f"({', '.join(used)})"
        )
        if missing:
            text += f"; missing or constant: {', '.join(missing)}"
        report.notes.append(text + f". Source: {signature.source}.")
    # IFN-alpha / IL-2 / RA programs for the /mechanism page (issue 15)
    from analysis.programs import bulk_program_scores

    programs, notes = bulk_program_scores(expression)
    out = out.join(programs)
    report.notes += notes
    return out, report


def import_expression(
    path: Path | str, cohort: pd.DataFrame
) -> tuple[pd.DataFrame, ImportReport]:
    """Score a genes x samples matrix and join the scores to a cohort table."""
    path = Path(path)
    expression, report = read_expression(path)
    in_cohort = [c for c in expression.columns if c in set(cohort["sample_id"])]
    if len(in_cohort) >= 3 and len(in_cohort) < expression.shape[1]:
        # z-scores are relative to the cohort: score only its samples
        report.notes.append(
            f"{expression.shape[1] - len(in_cohort)} sample column(s) not in the "
            "clinical table are left out of the z-scores."
        )
        expression = expression[in_cohort]
    scores, scored = expression_scores(expression, file=path.name)
    report.extend(scored)
    joined = _join(cohort, scores, file=path.name, what="expression", report=report)
    joined, checked = finish_cohort(joined, file=path.name)
    report.extend(checked)
    return joined, report
