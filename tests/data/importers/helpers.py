"""Shared helpers of the importer tests: tree hashes, small synthetic inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

CLINICAL_HEADER = "patient,cancer,drug,BOR,OS_days,OS_status,NK_pct,CD8_pct\n"
CLINICAL_ROWS = [
    "P1,melanoma,Pembrolizumab,CR,300,0,5,30",
    "P2,melanoma,Nivolumab,PD,120,1,12,10",
    "P3,melanoma,Ipilimumab + Nivolumab,PR,400,0,3,25",
    "P4,melanoma,Atezolizumab,SD,200,1,8,15",
]
CLINICAL_MAP = (
    "sample_id=patient,tumor_type=cancer,treatment=drug,recist=BOR,"
    "os_months=OS_days,os_event=OS_status,frac_nk=NK_pct,frac_cd8=CD8_pct"
)


def clinical_text(rows: list[str] | None = None, header: str = CLINICAL_HEADER) -> str:
    return header + "\n".join(CLINICAL_ROWS if rows is None else rows) + "\n"


def tree_hash(path: Path) -> str:
    """Hash of every path and file content below ``path`` (hidden files too)."""
    digest = hashlib.sha256()
    if not path.exists():
        return "absent"
    for item in sorted(path.rglob("*")):
        digest.update(str(item.relative_to(path)).encode())
        if item.is_file():
            digest.update(item.read_bytes())
    return digest.hexdigest()


GENES = ["CD8A", "CD8B", "GZMB", "CD69", "EOMES", "HAVCR2", "BCL2", "TNFRSF18"] + [
    f"GENE{i}" for i in range(22)
]


def make_adata(
    *,
    n_cells: int = 60,
    raw_counts: bool = False,
    umap: bool = True,
    ensembl: bool = False,
    symbol_column: bool = False,
    cell_types: list[str] | None = None,
    seed: int = 0,
):
    """Small single-cell data set: 3 patients, a state column, optional UMAP."""
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    counts = rng.poisson(3.0, size=(n_cells, len(GENES))).astype(np.float32)
    counts[:, 0] += rng.poisson(30, size=n_cells)  # CD8A high: raw counts exceed 20
    x = counts if raw_counts else np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    patients = np.array([f"Pt{i % 3 + 1}" for i in range(n_cells)])
    obs = pd.DataFrame(
        {
            "patient": patients,
            "response": np.where(patients == "Pt1", "Responder", "Non-responder"),
            "therapy": "anti-PD1",
            "state": np.where(np.arange(n_cells) % 2 == 0, "Exhausted", "Memory"),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    if cell_types is not None:
        obs["cell_type"] = [cell_types[i % len(cell_types)] for i in range(n_cells)]
    var_names = (
        [f"ENSG{100000 + i:011d}" for i in range(len(GENES))] if ensembl else GENES
    )
    var = pd.DataFrame(index=var_names)
    if symbol_column:
        var["gene_symbols"] = GENES
    adata = ad.AnnData(X=sp.csr_matrix(x.astype(np.float32)), obs=obs, var=var)
    if umap:
        adata.obsm["X_umap"] = rng.normal(size=(n_cells, 2)).astype(np.float32)
    return adata


LM22 = [
    "B cells naive",
    "B cells memory",
    "Plasma cells",
    "T cells CD8",
    "T cells CD4 naive",
    "T cells CD4 memory resting",
    "T cells CD4 memory activated",
    "T cells follicular helper",
    "T cells regulatory (Tregs)",
    "T cells gamma delta",
    "NK cells resting",
    "NK cells activated",
    "Monocytes",
    "Macrophages M0",
    "Macrophages M1",
    "Macrophages M2",
    "Dendritic cells resting",
    "Dendritic cells activated",
    "Mast cells resting",
    "Mast cells activated",
    "Eosinophils",
    "Neutrophils",
]


def cibersort_frame(ids: list[str], *, seed: int = 1, underscores: bool = False):
    """CIBERSORT-like output: Mixture, 22 LM22 fractions summing to 1, P-value..."""
    rng = np.random.default_rng(seed)
    values = rng.dirichlet(np.ones(len(LM22)), size=len(ids))
    names = [n.replace(" ", "_") for n in LM22] if underscores else LM22
    frame = pd.DataFrame(values, columns=names)
    frame.insert(0, "Mixture", ids)
    frame["P-value"] = 0.01
    frame["Correlation"] = 0.8
    frame["RMSE"] = 0.5
    return frame
