"""The Song et al. chain in the synthetic demo: program genes added to the CD8 cells.

The demo's CD8 cells (``data/demo.py``) already encode "lower NK bias -> more cells in
the CD69+ BCL2+ EOMES+ GZMB+ HAVCR2- TNFRSF18- state -> response". This module adds
the middle of the chain as extra genes, simulated with their OWN random stream
(``np.random.default_rng([seed, RNG_TAG])``) *after* the demo's genes and its UMAP, so
every existing demo gene, cell and number stays exactly as it was.

Model (documented, modest effects, labelled synthetic): per patient, a latent
program activity

* IFN-alpha and IL-2/STAT5: ``-0.35 * nk_bias + N(0, 0.35)`` (NK cells take the
  cytokines: NK-high patients have lower programs in their CD8 cells);
* retinoic-acid program: ``0.8 * mean(IFN-alpha, IL-2) + N(0, 0.25)`` (downstream);
* IFN-gamma (contrast): ``N(0, 0.35)``, unrelated to NK - but its *score* still
  moves with IFN-alpha through the genes the two Hallmark sets share (73 of 97), and
  through demo genes such as STAT1 that the Song state carries;

and cells of the Song state carry ``+0.5`` on the three chain programs (the program
drives the state). Each gene's log-mean is its base level plus its loading
(uniform 0.4-1.2) times the cell's activity; counts are Gamma-Poisson like the other
demo genes and log-normalized with the cell's total counts. Only the first
:data:`GENES_PER_PROGRAM` non-gate genes of each set (not already in the demo) are
simulated, so the page shows partial coverage, as real panels do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RNG_TAG = 15
GENES_PER_PROGRAM = {"ifna": 40, "il2": 40, "ra": 30, "ifng": 30}
NK_LOADING = -0.35
STATE_SHIFT = 0.5


def program_genes(existing) -> dict[str, list[str]]:
    """Program key -> genes to simulate (not gate markers, not already present)."""
    from analysis.programs import GATE_MARKERS, PROGRAM_BY_KEY

    taken = set(existing) | set(GATE_MARKERS)
    out: dict[str, list[str]] = {}
    for key, count in GENES_PER_PROGRAM.items():
        genes = [g for g in PROGRAM_BY_KEY[key].genes() if g not in taken]
        out[key] = genes[:count]
        taken |= set(out[key])
    return out


def patient_activity(
    nk_bias: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Latent program activity per patient (see the module docstring)."""
    n = len(nk_bias)
    ifna = NK_LOADING * nk_bias + rng.normal(0, 0.35, n)
    il2 = NK_LOADING * nk_bias + rng.normal(0, 0.35, n)
    ra = 0.8 * (ifna + il2) / 2 + rng.normal(0, 0.25, n)
    ifng = rng.normal(0, 0.35, n)
    return {"ifna": ifna, "il2": il2, "ra": ra, "ifng": ifng}


def add_program_genes(
    adata,
    patients: pd.DataFrame,
    *,
    seed: int,
    song_state: str,
    chunk_size: int = 100_000,
):
    """A new AnnData with the program genes appended after the existing genes.

    Parameters
    ----------
    adata
        Demo CD8 cells (log1p counts per 10,000; ``obs`` with ``cohort``,
        ``patient_id``, ``cd8_state``, ``total_counts``). Not modified.
    patients
        The demo's patient table with the latent ``nk_bias``.
    seed
        The demo seed; the stream used is ``default_rng([seed, RNG_TAG])``.
    song_state
        Name of the Song state in ``obs['cd8_state']``.
    """
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng([seed, RNG_TAG])
    genes_by_program = program_genes(adata.var_names)
    keys = patients["cohort"].astype(str) + "|" + patients["patient_id"].astype(str)
    nk_of = pd.Series(patients["nk_bias"].to_numpy(), index=keys.to_numpy())
    obs = adata.obs
    cell_keys = obs["cohort"].astype(str) + "|" + obs["patient_id"].astype(str)
    codes, uniques = pd.factorize(cell_keys, sort=True)
    activity = patient_activity(nk_of.reindex(uniques).to_numpy(dtype=float), rng)
    song = (obs["cd8_state"].astype(str) == song_state).to_numpy()

    gene_names, gene_program, base, loading = [], [], [], []
    for key, genes in genes_by_program.items():
        gene_names += genes
        gene_program += [key] * len(genes)
        base += list(rng.lognormal(np.log(0.35), 0.6, len(genes)))
        loading += list(rng.uniform(0.4, 1.2, len(genes)))
    base, loading = np.array(base), np.array(loading)
    chain = np.array([p != "ifng" for p in gene_program])
    per_program = np.column_stack([activity[p] for p in gene_program])  # patients x g
    total = obs["total_counts"].to_numpy(dtype=float)
    parts, raw_parts = [], []
    for start in range(0, adata.n_obs, chunk_size):
        stop = min(start + chunk_size, adata.n_obs)
        level = per_program[codes[start:stop]] + STATE_SHIFT * np.outer(
            song[start:stop], chain
        )
        mean = base * np.exp(loading * level) * (total[start:stop, None] / 5000.0)
        counts = rng.poisson(rng.gamma(shape=2.0, scale=mean / 2.0))
        chunk = sp.csr_matrix(counts.astype(np.float32))
        raw_parts.append(chunk.copy())
        per_cell = (1e4 / total[start:stop]).astype(np.float32)
        chunk.data = np.log1p(chunk.data * np.repeat(per_cell, np.diff(chunk.indptr)))
        parts.append(chunk)
    extra = sp.vstack(parts, format="csr")
    matrix = sp.hstack([sp.csr_matrix(adata.X), extra], format="csr")
    var = pd.DataFrame(index=pd.Index(list(adata.var_names) + gene_names, name="gene"))
    out = ad.AnnData(X=matrix.astype(np.float32), obs=adata.obs.copy(), var=var)
    out.obsm = adata.obsm.copy()
    if "counts" in adata.layers:  # raw counts for pseudobulk DE (issue 16) follow
        raw = sp.vstack(raw_parts, format="csr")
        out.layers["counts"] = sp.hstack([adata.layers["counts"], raw], format="csr")
    out.uns = dict(adata.uns)
    out.uns["mechanism_simulation"] = (
        "program genes simulated by data/demo_mechanism.py: NK-high patients have "
        "lower IFN-alpha and IL-2/STAT5 programs in their CD8 cells (loading "
        f"{NK_LOADING} per SD of NK bias), the RA program follows them, Song-state "
        f"cells carry +{STATE_SHIFT}; IFN-gamma is unrelated to NK (contrast)"
    )
    return out
