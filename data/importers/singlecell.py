"""Single-cell ``.h5ad`` -> per-sample NK/CD8 fractions and the bundle's CD8 cells.

Two shapes of input are accepted:

* ``cells="immune"``: all immune cells with a cell-type column. NK and CD8 fractions
  of immune cells are counted per sample, and the CD8 cells become
  ``cd8_cells.h5ad``.
* ``cells="cd8"``: the file is already the CD8 (or T-cell) subset; every cell goes to
  ``cd8_cells.h5ad`` and per-sample fractions are not known from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from data import schema
from data.errors import DataError, Problem
from data.importers.clinical import build_cohort, finish_cohort
from data.importers.deconvolution import ENSEMBL
from data.importers.report import ImportReport
from data.prepare import looks_like_raw_counts, prepare_cells, read_h5ad_safely

NK_LABEL = r"(?i)(?:\bNK\b(?![ -]?T\b)|natural killer)"
CD8_LABEL = r"(?i)CD8"
SYMBOL_COLUMNS = (
    "gene_symbols",
    "gene_symbol",
    "symbol",
    "symbols",
    "gene_name",
    "gene_names",
    "feature_name",
    "gene_short_name",
    "name",
    "hgnc_symbol",
)
OBS_ALIASES = {
    "patient_id": (
        "patient_id",
        "patient",
        "donor_id",
        "donor",
        "individual",
        "subject",
        "subject_id",
    ),
    "sample_id": ("sample_id", "sample", "biosample", "library"),
    "cell_type": (
        "cell_type",
        "celltype",
        "cell_types",
        "celltypes",
        "annotation",
        "cell_ontology_class",
    ),
}


def _guess_obs(obs: pd.DataFrame, target: str) -> str | None:
    lower = {str(c).lower(): c for c in obs.columns}
    for alias in OBS_ALIASES[target]:
        if alias in lower:
            return lower[alias]
    return None


def symbols_for(adata, *, file: str, report: ImportReport):
    """Return ``adata`` with gene symbols as ``var_names`` (Ensembl ids mapped)."""
    names = pd.Index(adata.var_names.astype(str))
    share = names.str.match(ENSEMBL.pattern).mean() if len(names) else 0.0
    if share <= 0.5:
        return adata
    column = next((c for c in SYMBOL_COLUMNS if c in adata.var.columns), None)
    if column is None:
        raise DataError(
            Problem(
                file=file,
                column="var_names",
                message=f"genes are Ensembl ids (e.g. `{names[0]}`), not symbols; "
                "marker genes (CD8A, GZMB, ...) cannot be found.",
                fix="add a var column with gene symbols (e.g. var['gene_symbols']) "
                "or set adata.var_names to symbols before importing.",
            )
        )
    out = adata.copy()
    symbols = out.var[column].astype(str).where(out.var[column].notna(), names)
    out.var_names = pd.Index(symbols.to_numpy())
    out.var_names_make_unique()
    report.notes.append(f"genes: Ensembl ids mapped to symbols from var['{column}'].")
    return out


def import_h5ad(
    path: Path | str,
    *,
    mapping: Mapping[str, str] | None = None,
    constants: Mapping[str, str] | None = None,
    cohort_name: str = "imported",
    cells: str = "auto",
    cohort: pd.DataFrame | None = None,
    prepare: bool = False,
    nk_label: str = NK_LABEL,
    cd8_label: str = CD8_LABEL,
    progress: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, object, ImportReport]:
    """Read an h5ad and return (cohort table, CD8 AnnData, report).

    Parameters
    ----------
    mapping
        Bundle column -> ``obs`` column: ``patient_id``, ``sample_id``,
        ``cell_type``, ``cd8_state`` and clinical columns (``response``,
        ``treatment``, ...) that are constant within a sample.
    constants
        Bundle column -> one value for every sample (``tumor_type=melanoma``).
    cells
        ``immune``, ``cd8`` or ``auto`` (``immune`` when the cell-type column names
        NK cells, else ``cd8``).
    cohort
        An existing cohort table to attach the cells to (its samples must cover the
        cells' sample ids); otherwise the cohort is built from ``obs``.
    prepare
        Run :func:`data.prepare.prepare_cells` on the CD8 cells (raw counts, UMAP,
        Leiden states) instead of refusing a file that lacks them.
    """
    path = Path(path)
    file = path.name
    report = ImportReport()
    mapping = dict(mapping or {})
    adata = read_h5ad_safely(path)
    obs = adata.obs
    if adata.n_obs == 0:
        raise DataError(
            Problem(file=file, message="has no cells.", fix="check the export.")
        )
    for target in ("patient_id", "sample_id", "cell_type"):
        if target not in mapping:
            guess = _guess_obs(obs, target)
            if guess is not None:
                mapping[target] = guess
                report.notes.append(f"{target} <- obs.{guess} (recognised).")
    if "cd8_state" not in mapping and "cd8_state" in obs.columns:
        mapping["cd8_state"] = "cd8_state"
    for target, column in mapping.items():
        if column not in obs.columns:
            raise DataError(
                Problem(
                    file=file,
                    column=f"obs.{column}",
                    message=f"the obs column mapped to `{target}` is not in the file.",
                    fix="choose one of: "
                    + ", ".join(f"`{c}`" for c in list(obs.columns)[:15])
                    + ".",
                )
            )
    if "patient_id" not in mapping and "sample_id" not in mapping:
        raise DataError(
            Problem(
                file=file,
                column="obs.patient_id",
                message="no obs column says which patient or sample each cell comes "
                "from.",
                fix="map one: --map patient_id=<obs column> (obs columns: "
                + ", ".join(f"`{c}`" for c in list(obs.columns)[:12])
                + ").",
            )
        )
    mapping.setdefault("sample_id", mapping.get("patient_id", ""))
    mapping.setdefault("patient_id", mapping["sample_id"])
    for target in ("patient_id", "sample_id"):
        values = obs[mapping[target]]
        empty = values.isna() | (values.astype(str).str.strip() == "")
        if empty.any():
            raise DataError(
                Problem(
                    file=file,
                    column=f"obs.{mapping[target]}",
                    rows=tuple(int(i) + 1 for i in np.flatnonzero(empty)[:50]),
                    message=f"{int(empty.sum())} cells have no {target} (rows are "
                    "cell numbers, 1-based).",
                    fix="annotate every cell or drop the unassigned ones.",
                )
            )
    adata = symbols_for(adata, file=file, report=report)

    sample = obs[mapping["sample_id"]].astype(str).str.strip()
    patient = obs[mapping["patient_id"]].astype(str).str.strip()
    per_sample = pd.DataFrame({"sample_id": sample, "patient_id": patient})
    conflicting = per_sample.groupby("sample_id")["patient_id"].nunique()
    if (conflicting > 1).any():
        bad = conflicting[conflicting > 1].index[0]
        raise DataError(
            Problem(
                file=file,
                column=f"obs.{mapping['patient_id']}",
                message=f"sample `{bad}` has cells of several patients.",
                fix="map sample_id to a column that identifies one sample of one "
                "patient.",
            )
        )

    # --- which cells are CD8, and NK / CD8 fractions of immune cells per sample
    type_column = mapping.get("cell_type")
    labels = obs[type_column].astype(str) if type_column else None
    nk_mask = labels.str.contains(nk_label, regex=True) if labels is not None else None
    if cells == "auto":
        cells = "immune" if nk_mask is not None and nk_mask.any() else "cd8"
        report.notes.append(
            f"cells: treated as {'all immune cells' if cells == 'immune' else 'the CD8 subset'}"  # noqa: E501
            " (--cells immune|cd8 to choose)."
        )
    fractions = pd.DataFrame(index=pd.Index(pd.unique(sample), name="sample_id"))
    if cells == "immune":
        if labels is None:
            raise DataError(
                Problem(
                    file=file,
                    column="obs.cell_type",
                    message="all-immune-cell import needs a cell-type column.",
                    fix="map it: --map cell_type=<obs column>, or use --cells cd8 when "
                    "the file holds only CD8 T cells.",
                )
            )
        cd8_mask = labels.str.contains(cd8_label, regex=True) & ~nk_mask
        if not cd8_mask.any():
            raise DataError(
                Problem(
                    file=file,
                    column=f"obs.{type_column}",
                    message="no cell type names CD8 T cells; labels are: "
                    + ", ".join(pd.unique(labels)[:8])
                    + ".",
                    fix="give the CD8 label pattern with --cd8-label (a regular "
                    "expression).",
                )
            )
        total = sample.value_counts()
        fractions["frac_nk"] = sample[nk_mask.to_numpy()].value_counts().reindex(
            fractions.index
        ).fillna(0) / total.reindex(fractions.index)
        fractions["frac_cd8"] = sample[cd8_mask.to_numpy()].value_counts().reindex(
            fractions.index
        ).fillna(0) / total.reindex(fractions.index)
        nk_types = sorted(pd.unique(labels[nk_mask]))
        cd8_types = sorted(pd.unique(labels[cd8_mask]))
        report.notes.append(
            f"frac_nk = cells labelled {', '.join(nk_types) or '(none)'} / all cells "
            f"of the sample; frac_cd8 = cells labelled {', '.join(cd8_types)} / all "
            f"cells (obs.{type_column}; every cell in the file counts as immune)."
        )
        keep = cd8_mask.to_numpy()
    else:
        keep = np.ones(adata.n_obs, dtype=bool)
        report.notes.append(
            f"all {adata.n_obs:,} cells taken as the CD8 subset; NK and CD8 fractions "
            "are not known from this file."
        )
    cd8 = adata[keep].copy()
    cd8.obs = pd.DataFrame(
        {
            "sample_id": pd.Categorical(sample[keep].to_numpy()),
            "patient_id": pd.Categorical(patient[keep].to_numpy()),
        },
        index=cd8.obs_names,
    )
    state_source = mapping.get("cd8_state")
    if state_source:
        cd8.obs["cd8_state"] = pd.Categorical(
            adata.obs[state_source].astype(str).to_numpy()[keep]
        )
        report.notes.append(f"cd8_state <- obs.{state_source}.")
    if type_column:
        cd8.obs["cell_type"] = pd.Categorical(labels.to_numpy()[keep])
    if schema.UMAP_KEY in adata.obsm:
        cd8.obsm[schema.UMAP_KEY] = np.asarray(adata.obsm[schema.UMAP_KEY])[keep]

    # --- checks the UMAP page needs
    problems = []
    raw_counts = looks_like_raw_counts(cd8.X)
    if not prepare:
        if raw_counts:
            problems.append(
                Problem(
                    file=file,
                    column="X",
                    message="holds raw counts (whole numbers); the app expects "
                    "log-normalized expression.",
                    fix="add --prepare to this import (normalizes + log1p), or run "
                    "`python cli.py prepare` first.",
                )
            )
        if schema.UMAP_KEY not in cd8.obsm:
            problems.append(
                Problem(
                    file=file,
                    column=f"obsm.{schema.UMAP_KEY}",
                    message="has no UMAP embedding.",
                    fix="add --prepare to this import, or run `python cli.py prepare "
                    "--file IN.h5ad --out OUT.h5ad` and import OUT.h5ad.",
                )
            )
        if "cd8_state" not in cd8.obs:
            problems.append(
                Problem(
                    file=file,
                    column="obs.cd8_state",
                    message="no CD8 state column was given.",
                    fix="map one (--map cd8_state=<obs column>) or add --prepare to "
                    "compute Leiden clusters.",
                )
            )
        if problems:
            raise DataError(problems)
    else:
        cd8, notes = prepare_cells(cd8, progress=progress)
        report.notes += [f"prepare: {n}" for n in notes]
    if not prepare:  # prepare_cells scored them; program scores of these cells
        from data.prepare import score_program_notes

        report.notes += score_program_notes(cd8, progress)
    missing = [f"{g} ({p})" for g, p, _ in schema.SONG_GATE if g not in cd8.var_names]
    if missing:
        report.warnings.append(
            Problem(
                file=file,
                column="var_names",
                message=f"marker genes of the Song et al. CD8 gate are missing: "
                f"{', '.join(missing)}; the gate will use the markers present and "
                "say so.",
                severity="warning",
            )
        )

    # --- the cohort table
    if cohort is None:
        clinical = {
            t: s for t, s in mapping.items() if t not in ("cell_type", "cd8_state")
        }
        first = obs.assign(_sample=sample.to_numpy()).groupby("_sample", sort=False)
        table = pd.DataFrame(index=fractions.index)
        for target, column in clinical.items():
            if target in ("sample_id", "patient_id"):
                continue
            n_values = first[column].nunique(dropna=False)
            if (n_values > 1).any():
                bad = n_values[n_values > 1].index[0]
                raise DataError(
                    Problem(
                        file=file,
                        column=f"obs.{column}",
                        message=f"differs between cells of sample `{bad}`; `{target}` "
                        "is a property of the sample.",
                        fix=f"map `{target}` to a per-sample column.",
                    )
                )
            table[column] = first[column].first().astype(str).reindex(table.index)
        table.insert(0, "_patient", first[mapping["patient_id"]].first().astype(str))
        table.insert(0, "_sample", table.index)
        raw = table.reset_index(drop=True)
        sample_map = {"sample_id": "_sample", "patient_id": "_patient"}
        sample_map |= {
            t: c for t, c in clinical.items() if t not in ("sample_id", "patient_id")
        }
        built, clinical_report = build_cohort(
            raw.astype(str),
            file=f"{file} (obs)",
            mapping=sample_map,
            constants=constants,
            cohort_name=cohort_name,
            guess=False,
        )
        report.notes += [n for n in clinical_report.notes if "not used" not in n]
        report.warnings += [
            w
            for w in clinical_report.warnings
            if w.column not in schema.REQUIRED_FRACTIONS
        ]
        base = built
    else:
        base = cohort.copy()
        unknown = sorted(set(sample) - set(base["sample_id"].astype(str)))
        if unknown:
            raise DataError(
                Problem(
                    file=file,
                    column=f"obs.{mapping['sample_id']}",
                    message=f"{len(unknown)} sample id(s) of the cells are not in the "
                    f"dataset: {', '.join(unknown[:5])}.",
                    fix="use the cohort's sample ids in the h5ad, or import the "
                    "clinical table with these ids first.",
                )
            )
        # the dataset's table is the reference for which patient a sample belongs to
        patient_of = base.set_index(base["sample_id"].astype(str))["patient_id"]
        cd8.obs["patient_id"] = pd.Categorical(
            cd8.obs["sample_id"].astype(str).map(patient_of).to_numpy()
        )
        report.notes.append(
            "patient_id of the cells taken from the dataset's table (by sample id)."
        )
    if cells == "immune":
        aligned = fractions.reindex(base["sample_id"].astype(str))
        for column in ("frac_nk", "frac_cd8"):
            base[column] = aligned[column].to_numpy()
    base, checked = finish_cohort(base, file=file)
    report.warnings += (
        [w for w in checked.warnings if w.column not in schema.REQUIRED_FRACTIONS]
        if cells == "cd8"
        else checked.warnings
    )
    return base, cd8, report
