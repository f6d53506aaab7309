"""Simulated differentially expressed genes in the demo (ground truth for DE tests).

The demo's marker genes follow the CD8 state programmes, so between gate+ and gate-
cells (the gate is defined on them) or between response groups (which differ in state
composition) they differ by construction, and no list of "true" DE genes exists for
them. This module appends a panel of :data:`N_SIM_GENES` synthetic genes
(``SIM0001`` ...) whose truth is known:

* every simulated gene has a per-gene base mean (UMIs per 5,000) and a per
  patient x gene random effect (log-normal, sd :data:`PATIENT_SD`): patients differ,
  as real donors do, which is what makes a test over cells report false positives;
* :data:`N_GATE_DE` genes change by a fold change in cells passing the Song et al.
  gate (CD69+ BCL2+ EOMES+ GZMB+ HAVCR2- TNFRSF18-, thresholds 0, evaluated on the
  demo's log-normalized expression), in every patient alike;
* :data:`N_RESPONSE_DE` other genes change in every cell of responders (objective
  response: RECIST CR or PR);
* the rest are null: no effect of gate or response.

Counts are Gamma-Poisson like the marker genes, scaled by each cell's total UMIs; the
expression matrix gets ``log1p(counts / total_counts * 10,000)`` of them and
``layers["counts"]`` the counts. The DE genes are written to ``dataset.json`` under
``simulated.de_genes`` (``gate``, ``response``, with their log2 fold changes under
``simulated.de_log2fc``). All draws come from a child generator
``default_rng([seed, DE_RNG_TAG])``: the demo's own random stream, and every existing
patient, cell, expression value and UMAP coordinate, are unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from data import schema

#: Tag of this module's child random generator (issue 16).
DE_RNG_TAG = 16
N_SIM_GENES = 400
N_GATE_DE = 50
N_RESPONSE_DE = 50
#: sd of the per patient x gene random effect on the log scale (natural log)
PATIENT_SD = 0.35
#: |log2 fold change| of a DE gene is drawn uniformly from this range, random sign
LOG2FC_RANGE = (0.8, 1.6)
SIM_PREFIX = "SIM"


def sim_gene_names(n: int = N_SIM_GENES) -> list[str]:
    """Names of the simulated genes: ``SIM0001`` ... (no programme in their name)."""
    return [f"{SIM_PREFIX}{i + 1:04d}" for i in range(n)]


def _gate_mask(adata) -> np.ndarray:
    """Cells passing the published gate on the demo's log-normalized expression."""
    passes = np.ones(adata.n_obs, dtype=bool)
    for gene, _, sign in schema.SONG_GATE:
        column = adata.X[:, adata.var_names.get_loc(gene)]
        values = np.asarray(column.todense()).ravel()
        passes &= values > 0 if sign == "+" else values <= 0
    return passes


def add_simulated_de(adata, patients: pd.DataFrame, bundle_dir: Path, *, seed: int):
    """A copy of ``adata`` with the simulated genes appended; records the truth.

    Parameters
    ----------
    adata
        The demo cells (log-normalized ``X``, raw ``layers["counts"]``, ``obs`` with
        ``cohort``, ``patient_id``, ``total_counts``).
    patients
        The demo's patient table (``cohort``, ``patient_id``, ``recist``).
    bundle_dir
        Folder holding ``dataset.json``; ``simulated`` is added to it.
    seed
        The demo seed; the child generator is ``default_rng([seed, DE_RNG_TAG])``.

    Returns
    -------
    anndata.AnnData
        New object: the original genes unchanged, then the simulated panel.
    """
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng([seed, DE_RNG_TAG])
    names = sim_gene_names()
    order = rng.permutation(N_SIM_GENES)
    gate_idx = np.sort(order[:N_GATE_DE])
    response_idx = np.sort(order[N_GATE_DE : N_GATE_DE + N_RESPONSE_DE])
    base = np.clip(rng.lognormal(np.log(0.3), 0.9, N_SIM_GENES), 0.05, 8.0)
    log2fc = np.zeros((2, N_SIM_GENES))
    for row, idx in enumerate((gate_idx, response_idx)):
        sign = rng.choice([-1.0, 1.0], size=len(idx))
        log2fc[row, idx] = sign * rng.uniform(*LOG2FC_RANGE, size=len(idx))

    key = adata.obs["cohort"].astype(str) + "|" + adata.obs["patient_id"].astype(str)
    patient_codes, patient_keys = pd.factorize(key, sort=True)
    effect = rng.normal(0.0, PATIENT_SD, size=(len(patient_keys), N_SIM_GENES))
    recist = patients.assign(
        key=patients["cohort"].astype(str) + "|" + patients["patient_id"].astype(str)
    ).set_index("key")["recist"]
    responder = recist.reindex(patient_keys).isin(["CR", "PR"]).to_numpy()
    in_gate = _gate_mask(adata)

    total = adata.obs["total_counts"].to_numpy(dtype=float)
    shift = np.log(2.0) * log2fc
    parts_counts, parts_log = [], []
    for start in range(0, adata.n_obs, 5000):  # bounded memory
        rows = slice(start, min(start + 5000, adata.n_obs))
        codes = patient_codes[rows]
        log_mean = (
            np.log(base)[None, :]
            + effect[codes]
            + in_gate[rows, None] * shift[0][None, :]
            + responder[codes][:, None] * shift[1][None, :]
        )
        mean = np.exp(log_mean) * (total[rows] / 5000.0)[:, None]
        counts = rng.poisson(rng.gamma(shape=2.0, scale=mean / 2.0)).astype(np.float32)
        lognorm = np.log1p(counts / total[rows, None].astype(np.float32) * 1e4)
        parts_counts.append(sp.csr_matrix(counts))
        parts_log.append(sp.csr_matrix(lognorm.astype(np.float32)))

    counts_old = adata.layers["counts"]
    out = ad.AnnData(
        X=sp.hstack([adata.X, sp.vstack(parts_log)], "csr"),
        obs=adata.obs,
        var=pd.DataFrame(
            index=pd.Index(list(adata.var_names) + names, name=adata.var_names.name)
        ),
        obsm=dict(adata.obsm),
        uns=dict(adata.uns),
    )
    out.layers["counts"] = sp.hstack([counts_old, sp.vstack(parts_counts)], "csr")
    out.uns["description"] = (
        adata.uns.get("description", "")
        + f" Genes {names[0]}-{names[-1]} are a simulated panel with known "
        "differential expression (see dataset.json, simulated)."
    )

    path = Path(bundle_dir) / schema.DATASET_JSON
    meta = json.loads(path.read_text())
    meta["simulated"] = {
        "de_genes": {
            "gate": [names[i] for i in gate_idx],
            "response": [names[i] for i in response_idx],
        },
        "de_log2fc": {
            "gate": {names[i]: round(float(log2fc[0, i]), 4) for i in gate_idx},
            "response": {names[i]: round(float(log2fc[1, i]), 4) for i in response_idx},
        },
        "null_genes": [
            names[i] for i in range(N_SIM_GENES) if not np.any(log2fc[:, i])
        ],
        "description": (
            "Simulated panel: gate DE genes change in cells passing the published "
            "gate (log2 fold change gate+ vs gate-), response DE genes in every cell "
            "of objective responders (CR/PR vs SD/PD); every simulated gene varies "
            f"between patients (log-normal, sd {PATIENT_SD}). Marker genes are not "
            "part of the truth (they differ by construction of the states)."
        ),
    }
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return out
