"""Prepare single-cell data for the UMAP page: normalization, embedding, states.

Heavy work (neighbours, UMAP, clustering) happens here, ahead of time, never in a
request. :func:`prepare_cells` works on a copy and returns a new AnnData: the input
object and file are never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from data import schema
from data.errors import DataError, Problem

SEED = 0
#: Integer-valued data whose maximum exceeds this is taken as raw counts.
RAW_COUNT_MIN_MAX = 20.0


def _sample_values(x, limit: int = 200_000) -> np.ndarray:
    """Up to ``limit`` stored values of a dense or sparse matrix (cheap checks)."""
    import scipy.sparse as sp

    data = x.data if sp.issparse(x) else np.asarray(x).ravel()
    return np.asarray(data[:limit], dtype=float)


def looks_like_raw_counts(x) -> bool:
    """True when the matrix holds non-negative integers with a max above 20.

    Log-normalized data (``log1p`` of counts per 10k) is fractional and rarely
    exceeds ~10; raw UMI counts are whole numbers reaching the hundreds.
    """
    values = _sample_values(x)
    if values.size == 0:
        return False
    finite = values[np.isfinite(values)]
    return bool(
        finite.size
        and finite.min() >= 0
        and np.allclose(finite, np.round(finite))
        and finite.max() > RAW_COUNT_MIN_MAX
    )


def compute_umap(
    adata,
    *,
    seed: int = SEED,
    progress: Callable[[str], None] = print,
    mask_var: np.ndarray | None = None,
    leiden_key: str | None = None,
    resolution: float = 1.0,
    max_comps: int = 30,
) -> None:
    """PCA, neighbours, UMAP (and optionally Leiden) in place on ``adata``.

    The demo generator uses it too (with ``max_comps=20``).

    Neighbours use scikit-learn's exact kNN (``transformer="sklearn"``) as the demo
    generator does: for up to ~100k cells it is as fast as pynndescent and avoids its
    ~40 s JIT compilation. Intermediate results (PCA, graphs) are dropped so the file
    stays small; ``obsm['X_umap']`` is float32.
    """
    import scanpy as sc

    n_genes = int(mask_var.sum()) if mask_var is not None else adata.n_vars
    n_comps = max(2, min(max_comps, n_genes - 1, adata.n_obs - 1))
    progress(f"  PCA ({n_comps} components) on {adata.n_obs:,} cells x {n_genes} genes")
    sc.pp.pca(adata, n_comps=n_comps, random_state=seed, mask_var=mask_var)
    progress("  nearest neighbours (exact, scikit-learn)")
    sc.pp.neighbors(
        adata,
        n_neighbors=min(15, adata.n_obs - 1),
        random_state=seed,
        transformer="sklearn",
    )
    progress("  UMAP layout")
    sc.tl.umap(adata, random_state=seed)
    adata.obsm[schema.UMAP_KEY] = adata.obsm[schema.UMAP_KEY].astype(np.float32)
    if leiden_key is not None:
        progress(f"  Leiden clustering (resolution {resolution:g})")
        sc.tl.leiden(
            adata,
            resolution=resolution,
            random_state=seed,
            key_added="_leiden",
            flavor="igraph",
            n_iterations=2,
            directed=False,
        )
        labels = adata.obs.pop("_leiden").astype(int)
        adata.obs[leiden_key] = ("cluster " + labels.astype(str)).astype("category")
    adata.obsm.pop("X_pca", None)
    adata.varm.clear()
    adata.obsp.clear()
    for key in ("pca", "neighbors", "umap", "_leiden", "_leiden_colors", "leiden"):
        adata.uns.pop(key, None)


def prepare_cells(
    adata,
    *,
    state_column: str | None = None,
    n_top_genes: int = 2000,
    seed: int = SEED,
    recompute_umap: bool = False,
    progress: Callable[[str], None] = print,
) -> tuple[object, list[str]]:
    """Return a copy of ``adata`` ready for the UMAP page, and notes on what was done.

    Steps: raw counts -> normalize to 10,000 per cell + ``log1p``; highly variable
    genes (used for PCA only: every gene stays in the matrix); PCA, neighbours, UMAP
    (unless ``obsm['X_umap']`` exists and ``recompute_umap`` is false); Leiden
    clusters as ``cd8_state`` when ``state_column`` is not given and no
    ``cd8_state`` exists.

    Parameters
    ----------
    adata
        AnnData (cells x genes, gene symbols as ``var_names``). Not modified.
    state_column
        ``obs`` column holding named CD8 states; copied to ``cd8_state``.
    n_top_genes
        Highly variable genes for the PCA (all genes when there are fewer).
    """
    import scanpy as sc

    out = adata.copy()
    notes: list[str] = []
    if out.n_obs < 10:
        raise DataError(
            Problem(
                file="h5ad",
                message=f"has {out.n_obs} cells; an embedding needs at least 10.",
                fix="prepare the whole data set, not a handful of cells.",
            )
        )
    if looks_like_raw_counts(out.X):
        progress("Raw counts detected: normalizing to 10,000 per cell and log1p")
        out.layers["counts"] = out.X.copy()
        sc.pp.normalize_total(out, target_sum=1e4)
        sc.pp.log1p(out)
        out.uns.pop("log1p", None)
        del out.layers["counts"]  # keep the file small; the input keeps the counts
        notes.append(
            "raw counts detected (whole numbers up to "
            f"{_sample_values(adata.X).max():g}): normalized to 10,000 per cell and "
            "log1p-transformed."
        )
    notes += score_program_notes(out, progress)
    has_umap = schema.UMAP_KEY in out.obsm and not recompute_umap
    mask = None
    if not has_umap:
        if out.n_vars > n_top_genes:
            progress(f"Selecting {n_top_genes} highly variable genes")
            hvg = sc.pp.highly_variable_genes(
                out, n_top_genes=n_top_genes, flavor="seurat", inplace=False
            )
            mask = hvg["highly_variable"].to_numpy()
            notes.append(
                f"PCA on {int(mask.sum())} highly variable genes (of {out.n_vars})."
            )
        else:
            notes.append(f"PCA on all {out.n_vars} genes.")
    state = None
    if state_column is not None:
        if state_column not in out.obs.columns:
            raise DataError(
                Problem(
                    file="h5ad",
                    column=f"obs.{state_column}",
                    message="the state column is not in the file.",
                    fix="choose one of: " + ", ".join(map(str, out.obs.columns[:15])),
                )
            )
        out.obs["cd8_state"] = out.obs[state_column].astype(str).astype("category")
        notes.append(f"cd8_state: from obs.{state_column}.")
    elif "cd8_state" not in out.obs.columns:
        state = "cd8_state"
    if has_umap and state is None:
        notes.append("UMAP already present: kept.")
        return out, notes
    if has_umap:
        # Leiden needs the neighbour graph: compute it, but keep the given layout
        umap = out.obsm[schema.UMAP_KEY].copy()
        compute_umap(out, seed=seed, progress=progress, mask_var=mask, leiden_key=state)
        out.obsm[schema.UMAP_KEY] = np.asarray(umap, dtype=np.float32)
    else:
        progress("Computing the embedding")
        compute_umap(out, seed=seed, progress=progress, mask_var=mask, leiden_key=state)
        notes.append(f"UMAP computed (seed {seed}).")
    if state is not None:
        n = out.obs["cd8_state"].nunique()
        notes.append(
            f"cd8_state: {n} Leiden clusters (resolution 1.0) named `cluster N`; "
            "they are data-driven groups, not named cell states."
        )
    return out, notes


def score_program_notes(adata, progress: Callable[[str], None] = print) -> list[str]:
    """Per-cell IFN-alpha / IL-2 / RA program scores, stored in ``obs`` (issue 15)."""
    from analysis.programs import PROGRAM_BY_KEY, score_programs

    progress("Scoring gene programs per cell (gate markers removed)")
    scores = score_programs(adata, progress=progress)
    return [
        f"program {PROGRAM_BY_KEY[key].label}: "
        + ("scored, " if cov["scored"] else "NOT scored, ")
        + f"{cov['found']} / {cov['total']} genes found"
        for key, cov in scores.coverage.items()
    ]


def prepare_file(
    src: Path | str,
    out: Path | str,
    *,
    state_column: str | None = None,
    n_top_genes: int = 2000,
    seed: int = SEED,
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> tuple[Path, list[str]]:
    """Prepare ``src`` into a new file ``out`` (temporary file, then renamed).

    The input file is opened read-only and never written; ``out`` must differ from
    it and is replaced only with ``force``.
    """

    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise DataError(
            Problem(
                file=out.name,
                message="the output is the input file; prepare never modifies its "
                "input.",
                fix="give another --out path.",
            )
        )
    if out.exists() and not force:
        raise DataError(
            Problem(
                file=out.name,
                message="the output file already exists.",
                fix="choose another --out path, or replace it with --force.",
            )
        )
    adata = read_h5ad_safely(src)
    progress(f"Read {src.name}: {adata.n_obs:,} cells x {adata.n_vars:,} genes")
    prepared, notes = prepare_cells(
        adata,
        state_column=state_column,
        n_top_genes=n_top_genes,
        seed=seed,
        progress=progress,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        prepared.write_h5ad(tmp, compression="gzip")
        tmp.replace(out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out, notes


def read_h5ad_safely(path: Path | str):
    """``anndata.read_h5ad`` with a :class:`DataError` for unreadable files."""
    import anndata

    path = Path(path)
    if not path.is_file():
        raise DataError(
            Problem(
                file=path.name,
                message="the file does not exist.",
                fix="check the path.",
            )
        )
    try:
        return anndata.read_h5ad(path)
    except Exception as err:  # h5py/anndata raise many types for damaged files
        raise DataError(
            Problem(
                file=path.name,
                message=f"cannot be read as an AnnData .h5ad file ({type(err).__name__}"
                f": {str(err)[:120]}).",
                fix="write it with anndata (adata.write_h5ad) or scanpy; a Seurat "
                "object must be converted first (e.g. SeuratDisk or zellkonverter).",
            )
        ) from None
