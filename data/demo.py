"""Seeded generator of the synthetic demo cohort (clearly labelled synthetic).

Biology encoded, with realistic noise and overlap (see README, 'Demo cohort'):

* A latent *infiltration* per patient raises the lymphoid share of CD45+ cells and the
  chance of response. Raw ``frac_nk`` (fraction of CD45+) therefore rises with
  infiltration and is confounded: it is similar or even higher in responders.
* A latent *NK bias* raises NK cells among lymphocytes and lowers the chance of
  response (Song et al., Cancer Discovery 2025), so normalized metrics (NK among
  lymphocytes, NK / (NK + CD8)) are lower in responders. The effect differs by tumor
  type and is absent in RCC.
* CD8 T cells of patients with low NK bias and of responders hold more cells of the
  CD69+ BCL2+ EOMES+ GZMB+ HAVCR2- TNFRSF18- state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from data import demo_de, schema
from data.prepare import compute_umap

SEED = 7  # the realised demo shows the NK effect in 4 tumor types, none in RCC
VERSION = "1.0"

#: cohort -> list of (tumor type, share of the cohort, treatments with weights)
COHORT_DESIGN: dict[str, list[tuple[str, float, dict[str, float]]]] = {
    "SYN-A": [
        (
            "melanoma",
            1.0,
            {"anti-PD-1": 0.55, "anti-PD-1 + anti-CTLA-4": 0.3, "anti-CTLA-4": 0.15},
        ),
    ],
    "SYN-B": [
        ("NSCLC", 0.6, {"anti-PD-1": 0.6, "anti-PD-L1": 0.4}),
        ("HNSCC", 0.4, {"anti-PD-1": 0.8, "anti-PD-L1": 0.2}),
    ],
    "SYN-C": [
        ("RCC", 0.5, {"anti-PD-1": 0.5, "anti-PD-1 + anti-CTLA-4": 0.5}),
        ("urothelial", 0.5, {"anti-PD-L1": 0.7, "anti-PD-1": 0.3}),
    ],
}
COHORT_SIZES = {"SYN-A": 160, "SYN-B": 170, "SYN-C": 150}

#: log-odds shift of response per SD of NK bias; RCC carries no NK effect.
NK_EFFECT = {
    "melanoma": -1.0,
    "NSCLC": -0.8,
    "HNSCC": -0.5,
    "urothelial": -0.7,
    "RCC": 0.0,
}
BASE_RESPONSE = {
    "melanoma": 0.3,
    "NSCLC": -0.2,
    "HNSCC": -0.5,
    "urothelial": -0.4,
    "RCC": 0.0,
}
TREATMENT_EFFECT = {
    "anti-PD-1": 0.0,
    "anti-PD-L1": -0.15,
    "anti-CTLA-4": -0.5,
    "anti-PD-1 + anti-CTLA-4": 0.4,
    "other": 0.0,
}

SONG_STATE = "CD69+BCL2+EOMES+GZMB+"
#: CD8 differentiation states and their base share of a patient's CD8 cells.
STATES = {
    "Naive/stem-like": 0.15,
    "Effector memory (GZMK+)": 0.22,
    SONG_STATE: 0.10,
    "Cytotoxic effector (CX3CR1+)": 0.14,
    "Tissue-resident memory (ITGAE+)": 0.10,
    "Exhausted (HAVCR2+TOX+)": 0.22,
    "Proliferating (MKI67+)": 0.07,
}

#: gene -> mean UMI count per 5,000 UMIs in a cell with no marker program.
GENES_BASE = {
    # pan-T and housekeeping
    "PTPRC": 3.0, "CD3E": 2.5, "CD3D": 2.5, "CD2": 1.5, "CD8A": 2.5, "CD8B": 2.0,
    "B2M": 12.0, "ACTB": 10.0, "GAPDH": 4.0, "HLA-A": 4.0,
    # naive / stem-like
    "TCF7": 0.25, "SELL": 0.2, "CCR7": 0.2, "IL7R": 0.4, "LEF1": 0.2, "KLF2": 0.4,
    "S1PR1": 0.3,
    # effector memory
    "GZMK": 0.4, "CXCR4": 1.0, "CD44": 1.0, "CCL5": 1.5, "CD27": 0.6, "CD28": 0.4,
    # the Song state and its RARA / IFN-alpha / IL-2 programme
    "CD69": 0.5, "BCL2": 0.25, "EOMES": 0.25, "GZMB": 0.4, "RARA": 0.2, "IFNAR1": 0.3,
    "IL2RB": 0.3, "IL2RA": 0.05, "STAT1": 0.4, "ISG15": 0.4, "IFIT1": 0.15, "MX1": 0.2,
    # cytotoxic effector
    "CX3CR1": 0.1, "KLRG1": 0.15, "FGFBP2": 0.1, "GNLY": 0.4, "PRF1": 0.3, "GZMH": 0.3,
    "NKG7": 0.8, "ZEB2": 0.3, "GZMA": 0.6,
    # tissue-resident memory
    "ITGAE": 0.15, "ZNF683": 0.1, "CXCR6": 0.3, "ITGA1": 0.1,
    # exhausted / dysfunctional
    "HAVCR2": 0.1, "PDCD1": 0.15, "TOX": 0.15, "ENTPD1": 0.1, "LAG3": 0.15,
    "TNFRSF18": 0.05, "CXCL13": 0.05, "TIGIT": 0.2, "CTLA4": 0.1, "LAYN": 0.05,
    "TNFRSF9": 0.1,
    # proliferating
    "MKI67": 0.05, "TOP2A": 0.05, "STMN1": 0.3, "TUBB": 0.5, "CDK1": 0.05, "TYMS": 0.1,
    # activation / stress
    "JUN": 1.0, "FOS": 1.0, "NR4A1": 0.3, "DUSP1": 1.0, "TNFAIP3": 0.5, "HLA-DRA": 0.3,
    "ICOS": 0.2, "IFNG": 0.2, "TNF": 0.2,
}  # fmt: skip

#: state -> {gene: fold change of its mean}
STATE_PROGRAMS: dict[str, dict[str, float]] = {
    "Naive/stem-like": {
        "TCF7": 14, "SELL": 16, "CCR7": 14, "IL7R": 8, "LEF1": 12, "KLF2": 6,
        "S1PR1": 6, "BCL2": 5, "CD27": 3, "CD28": 3,
    },
    "Effector memory (GZMK+)": {
        "GZMK": 16, "CXCR4": 2.5, "CD44": 2.5, "CCL5": 4, "EOMES": 8, "CD69": 4,
        "BCL2": 4, "CD27": 2, "GZMA": 3,
    },
    SONG_STATE: {
        "CD69": 12, "BCL2": 14, "EOMES": 14, "GZMB": 14, "RARA": 8, "IFNAR1": 4,
        "IL2RB": 5, "IL2RA": 6, "STAT1": 4, "ISG15": 6, "IFIT1": 8, "MX1": 6,
        "GZMA": 3, "PRF1": 3, "CCL5": 2, "HAVCR2": 0.3, "TNFRSF18": 0.3,
    },
    "Cytotoxic effector (CX3CR1+)": {
        "CX3CR1": 25, "KLRG1": 16, "FGFBP2": 25, "GNLY": 10, "PRF1": 8, "GZMH": 10,
        "NKG7": 5, "ZEB2": 8, "GZMB": 10, "EOMES": 6, "GZMA": 4, "CD69": 0.3,
    },
    "Tissue-resident memory (ITGAE+)": {
        "ITGAE": 16, "ZNF683": 16, "CXCR6": 8, "ITGA1": 14, "CD69": 12, "GZMB": 4,
        "JUN": 2, "FOS": 2, "NR4A1": 3, "BCL2": 0.5,
    },
    "Exhausted (HAVCR2+TOX+)": {
        "HAVCR2": 40, "PDCD1": 22, "TOX": 22, "ENTPD1": 25, "LAG3": 20, "TNFRSF18": 40,
        "CXCL13": 30, "TIGIT": 10, "CTLA4": 14, "LAYN": 25, "TNFRSF9": 14, "GZMB": 6,
        "CD69": 3, "IFNG": 6, "HLA-DRA": 6, "EOMES": 3, "BCL2": 0.5,
    },
    "Proliferating (MKI67+)": {
        "MKI67": 60, "TOP2A": 60, "STMN1": 8, "TUBB": 6, "CDK1": 50, "TYMS": 20,
        "HAVCR2": 8, "PDCD1": 6, "TOX": 4, "GZMB": 4, "ICOS": 3,
    },
}  # fmt: skip

DEMO_META = {
    "name": "demo",
    "title": "Synthetic ICB demo cohort",
    "description": (
        "Seeded synthetic data made by `python cli.py demo`: 480 patients in three "
        "cohorts, five tumor types, four ICB treatments, immune-cell fractions, "
        "RECIST, "
        "survival, and CD8 T cells with seven differentiation states. It encodes the "
        "NK-response relationship reported by Song et al. (Cancer Discovery 2025) so "
        "the "
        "app can be explored; it is not real patient data."
    ),
    "source": "generated by data/demo.py (seed 7)",
    "license": "CC0-1.0",
    "synthetic": True,
    "version": VERSION,
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def scaled_cohort_sizes(n_patients: int) -> dict[str, int]:
    """Cohort sizes for ``n_patients`` patients in the proportions of the demo.

    Parameters
    ----------
    n_patients
        Total number of patients (at least one per cohort).

    Returns
    -------
    dict
        Cohort name -> number of patients; the sizes add up to ``n_patients``.
    """
    total = sum(COHORT_SIZES.values())
    if n_patients == total:
        return dict(COHORT_SIZES)
    names = list(COHORT_SIZES)
    sizes = {c: max(1, round(COHORT_SIZES[c] * n_patients / total)) for c in names}
    sizes[names[-1]] = max(1, n_patients - sum(sizes[c] for c in names[:-1]))
    return sizes


def make_patients(
    rng: np.random.Generator, *, cohort_sizes: dict[str, int] | None = None
) -> pd.DataFrame:
    """One row per patient with latent infiltration, NK bias and outcome."""
    sizes = COHORT_SIZES if cohort_sizes is None else cohort_sizes
    rows = []
    for cohort, design in COHORT_DESIGN.items():
        n = sizes[cohort]
        shares = np.array([d[1] for d in design])
        tumor_idx = rng.choice(len(design), size=n, p=shares / shares.sum())
        for i in range(n):
            tumor_type, _, treatments = design[tumor_idx[i]]
            names = list(treatments)
            weights = np.array([treatments[t] for t in names])
            rows.append(
                {
                    "cohort": cohort,
                    # ids restart in every cohort, as in real multi-study data
                    "patient_id": f"P{i + 1:03d}",
                    "tumor_type": tumor_type,
                    "treatment": names[
                        rng.choice(len(names), p=weights / weights.sum())
                    ],
                }
            )
    patients = pd.DataFrame(rows)
    n = len(patients)
    patients["infiltration"] = rng.normal(size=n)
    patients["nk_bias"] = rng.normal(size=n)
    eta = (
        patients["tumor_type"].map(BASE_RESPONSE)
        + patients["treatment"].map(TREATMENT_EFFECT)
        + 1.0 * patients["infiltration"]
        + patients["tumor_type"].map(NK_EFFECT) * patients["nk_bias"]
        + rng.logistic(scale=0.6, size=n)
    )
    recist = np.select(
        [eta > 2.0, eta > 0.75, eta > -0.3], ["CR", "PR", "SD"], default="PD"
    ).astype(object)
    unevaluable = rng.random(n)
    recist[unevaluable < 0.03] = "NE"
    recist[(unevaluable >= 0.03) & (unevaluable < 0.05)] = None
    patients["recist"] = recist
    patients["eta"] = eta
    return patients


def _survival(
    patients: pd.DataFrame, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    n = len(patients)
    log_hr = (
        patients["recist"]
        .map({"CR": -1.6, "PR": -1.0, "SD": -0.3, "PD": 0.3})
        .fillna(0)
        + 0.25 * patients["nk_bias"]
        - 0.15 * patients["infiltration"]
    ).to_numpy()
    base_rate = np.log(2) / 18.0  # median OS 18 months at log HR 0
    os_time = rng.exponential(1.0 / (base_rate * np.exp(log_hr)))
    pfs_time = np.minimum(
        os_time, rng.exponential(1.0 / (2.5 * base_rate * np.exp(log_hr)))
    )
    follow_up = rng.uniform(6, 60, size=n)
    os_event = (os_time <= follow_up).astype(int)
    pfs_event = (pfs_time <= follow_up).astype(int)
    return (
        np.round(np.minimum(os_time, follow_up), 2),
        os_event,
        np.round(np.minimum(pfs_time, follow_up), 2),
        pfs_event,
    )


def _composition(
    infiltration: np.ndarray, nk_bias: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Fractions of CD45+ cells for samples with the given latents (one per row)."""
    n = len(infiltration)
    lymphoid = _sigmoid(-0.2 + 1.4 * infiltration + rng.normal(0, 0.35, n))
    other = rng.uniform(0.02, 0.06, n)
    lymphoid = lymphoid * (1 - other)
    logits = np.column_stack(
        [
            0.6 + rng.normal(0, 0.3, n),  # CD8
            0.5 + rng.normal(0, 0.3, n),  # CD4
            -0.4 + rng.normal(0, 0.4, n),  # B
            -1.5 + 0.5 * nk_bias + rng.normal(0, 0.3, n),  # NK
        ]
    )
    shares = _softmax(logits)
    frac = {
        "frac_cd8": lymphoid * shares[:, 0],
        "frac_cd4": lymphoid * shares[:, 1],
        "frac_b": lymphoid * shares[:, 2],
        "frac_nk": lymphoid * shares[:, 3],
    }
    frac["frac_myeloid"] = 1.0 - lymphoid - other
    return {k: np.round(v, 5) for k, v in frac.items()}


def make_cohort(
    rng: np.random.Generator, *, cohort_sizes: dict[str, int] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (samples table in bundle format, patients table with latents)."""
    patients = make_patients(rng, cohort_sizes=cohort_sizes)
    os_m, os_e, pfs_m, pfs_e = _survival(patients, rng)
    patients["os_months"], patients["os_event"] = os_m, os_e
    patients["pfs_months"], patients["pfs_event"] = pfs_m, pfs_e
    reported = patients["recist"].map({"CR": "R", "PR": "R", "SD": "NR", "PD": "NR"})
    # SYN-C reports durable stable disease (PFS >= 6 months) as response, as some
    # published cohorts do: "as reported" then differs from RECIST objective response.
    durable_sd = (
        (patients["cohort"] == "SYN-C")
        & (patients["recist"] == "SD")
        & (patients["pfs_months"] >= 6)
    )
    reported[durable_sd] = "R"
    # some patients have a reported response but no RECIST (not re-imaged per protocol)
    no_recist = patients["recist"].isna()
    reported[no_recist] = np.where(patients.loc[no_recist, "eta"] > 0.75, "R", "NR")
    patients["response"] = reported

    samples = []
    n = len(patients)
    has_on = rng.random(n) < 0.35
    has_post = rng.random(n) < 0.03
    multi_region = rng.random(n) < 0.05
    for idx, patient in patients.iterrows():
        sid = f"{patient['cohort']}-{patient['patient_id']}"
        samples.append((idx, f"{sid}-pre", "pre", 0.0))
        if multi_region[idx]:
            samples.append((idx, f"{sid}-pre-r2", "pre", 0.0))
        if has_on[idx]:
            samples.append((idx, f"{sid}-on", "on", 1.0))
        if has_post[idx]:
            samples.append((idx, f"{sid}-post", "post", 1.0))
    index = np.array([s[0] for s in samples])
    on_treatment = np.array([s[3] for s in samples])
    responder = patients["recist"].isin(["CR", "PR"]).to_numpy()[index]
    # on treatment, responders lose NK relative to CD8 and gain infiltration
    shift_nk = np.where(responder, -0.5, 0.1) * on_treatment
    shift_inf = np.where(responder, 0.4, -0.1) * on_treatment
    frac = _composition(
        patients["infiltration"].to_numpy()[index] + shift_inf,
        patients["nk_bias"].to_numpy()[index] + shift_nk / 0.5,
        rng,
    )
    table = patients.iloc[index].reset_index(drop=True)
    cohort = pd.DataFrame(
        {
            "sample_id": [s[1] for s in samples],
            "patient_id": table["patient_id"],
            "cohort": table["cohort"],
            "tumor_type": table["tumor_type"],
            "treatment": table["treatment"],
            "timepoint": [s[2] for s in samples],
            "recist": table["recist"],
            "response": table["response"],
            "os_months": table["os_months"],
            "os_event": table["os_event"],
            "pfs_months": table["pfs_months"],
            "pfs_event": table["pfs_event"],
            **frac,
        }
    )
    return cohort, patients


def _choose_cell_patients(
    patients: pd.DataFrame, n_patients: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Patients with single-cell data: evaluable, spread over tumor type, response."""
    evaluable = patients[patients["recist"].isin(["CR", "PR", "SD", "PD"])].copy()
    evaluable["group"] = evaluable["tumor_type"] + evaluable["recist"].isin(
        ["CR", "PR"]
    ).map({True: "R", False: "NR"})
    groups = sorted(evaluable["group"].unique())
    per_group = int(np.ceil(n_patients / len(groups)))
    chosen = []
    for group in groups:
        members = evaluable.index[evaluable["group"] == group].to_numpy()
        take = min(per_group, len(members))
        chosen.extend(rng.choice(members, size=take, replace=False))
    chosen = (
        np.array(sorted(chosen))[:n_patients] if len(chosen) > n_patients else chosen
    )
    return patients.loc[sorted(chosen)]


def make_cells(
    cohort: pd.DataFrame,
    patients: pd.DataFrame,
    rng: np.random.Generator,
    *,
    n_cells: int = 36_000,
    n_patients: int = 48,
    n_filler_genes: int = 0,
    chunk_size: int | None = None,
):
    """CD8 T cells (AnnData, log-normalized) of ``n_patients`` pre-treatment samples.

    Parameters
    ----------
    n_filler_genes
        Extra genes without any state programme (sparse, lowly expressed), appended
        after the marker genes so a benchmark bundle has a realistic gene count.
    chunk_size
        Simulate expression this many cells at a time (bounded memory for a million
        cells). ``None`` simulates all cells at once, as the default demo does; the
        two draw different random numbers, so the default demo is unchanged.
    """
    import anndata as ad
    import scipy.sparse as sp

    chosen = _choose_cell_patients(patients, n_patients, rng)
    pre = cohort[cohort["timepoint"] == "pre"].drop_duplicates(["cohort", "patient_id"])
    pre = pre.set_index(["cohort", "patient_id"])
    sample_ids = [
        pre.loc[(c, p), "sample_id"]
        for c, p in zip(chosen["cohort"], chosen["patient_id"], strict=True)
    ]

    state_names = list(STATES)
    base = np.log(np.array([STATES[s] for s in state_names]))
    song = state_names.index(SONG_STATE)
    exhausted = state_names.index("Exhausted (HAVCR2+TOX+)")
    responder = chosen["recist"].isin(["CR", "PR"]).to_numpy()
    logits = np.tile(base, (len(chosen), 1))
    logits[:, song] += -0.7 * chosen["nk_bias"].to_numpy() + 0.7 * responder
    logits[:, exhausted] += 0.5 * (~responder)
    props = _softmax(logits)
    sizes = rng.dirichlet(np.full(len(chosen), 6.0)) * (n_cells - 150 * len(chosen))
    sizes = np.floor(sizes).astype(int) + 150
    sizes[-1] += n_cells - sizes.sum()

    genes = list(GENES_BASE)
    base_mean = np.array([GENES_BASE[g] for g in genes])
    state_mean = np.tile(base_mean, (len(state_names), 1))
    for k, state in enumerate(state_names):
        for gene, fold in STATE_PROGRAMS[state].items():
            state_mean[k, genes.index(gene)] *= fold

    obs_parts, states_all = [], []
    for j, size in enumerate(sizes):
        counts = rng.dirichlet(props[j] * 40) * size
        states = rng.choice(len(state_names), size=size, p=counts / counts.sum())
        states_all.append(states)
        obs_parts.append(
            pd.DataFrame(
                {
                    "sample_id": [sample_ids[j]] * size,
                    "patient_id": [chosen["patient_id"].iloc[j]] * size,
                    "cohort": [chosen["cohort"].iloc[j]] * size,
                }
            )
        )
    states = np.concatenate(states_all)
    n = len(states)
    total_umis = rng.lognormal(np.log(5000), 0.35, size=n)
    if chunk_size is None and n_filler_genes == 0:
        mean = state_mean[states] * (total_umis / 5000.0)[:, None]
        # negative binomial (Gamma-Poisson) counts: overdispersion gives realistic
        # dropouts
        counts = rng.poisson(rng.gamma(shape=2.0, scale=mean / 2.0)).astype(np.float32)
        lognorm = np.log1p(counts / total_umis[:, None].astype(np.float32) * 1e4)
        matrix = sp.csr_matrix(lognorm.astype(np.float32))
        raw_counts = sp.csr_matrix(counts)  # issue 16: pseudobulk DE needs counts
    else:
        filler_mean = rng.lognormal(np.log(0.05), 1.0, size=n_filler_genes)
        matrix = _expression_chunked(
            states,
            total_umis,
            state_mean,
            filler_mean,
            rng,
            chunk_size=chunk_size or 20_000,
        )
        genes = genes + [f"FILL{i + 1:04d}" for i in range(n_filler_genes)]
        raw_counts = None
    obs = pd.concat(obs_parts, ignore_index=True)
    obs.index = [f"cell{i:07d}" for i in range(n)]
    obs["cd8_state"] = pd.Categorical.from_codes(states, categories=state_names)
    obs["total_counts"] = np.round(total_umis).astype(np.int32)
    for column in ("sample_id", "patient_id", "cohort"):
        obs[column] = obs[column].astype("category")
    adata = ad.AnnData(
        X=matrix,
        obs=obs,
        var=pd.DataFrame(index=pd.Index(genes, name="gene")),
    )
    adata.uns["description"] = "Synthetic CD8 T cells (log1p of counts per 10,000)."
    if raw_counts is not None:
        adata.layers["counts"] = raw_counts
    return adata


def _expression_chunked(
    states: np.ndarray,
    total_umis: np.ndarray,
    state_mean: np.ndarray,
    filler_mean: np.ndarray,
    rng: np.random.Generator,
    *,
    chunk_size: int,
):
    """Log-normalized CSR matrix simulated ``chunk_size`` cells at a time.

    Marker genes follow the state programmes (Gamma-Poisson, as in the default
    demo); filler genes are Poisson with a per-gene mean and no state effect.
    """
    import scipy.sparse as sp

    parts = []
    for start in range(0, len(states), chunk_size):
        stop = min(start + chunk_size, len(states))
        scale = (total_umis[start:stop] / 5000.0)[:, None]
        mean = state_mean[states[start:stop]] * scale
        counts = rng.poisson(rng.gamma(shape=2.0, scale=mean / 2.0))
        if len(filler_mean):
            filler = rng.poisson(filler_mean[None, :] * scale)
            counts = np.hstack([counts, filler])
        chunk = sp.csr_matrix(counts.astype(np.float32))
        # log1p(counts per 10,000) only touches the non-zero entries
        per_cell = (1e4 / total_umis[start:stop]).astype(np.float32)
        chunk.data = np.log1p(chunk.data * np.repeat(per_cell, np.diff(chunk.indptr)))
        parts.append(chunk)
    return sp.vstack(parts, format="csr")


def compute_umap_subsample(
    adata,
    *,
    n_fit: int,
    seed: int = SEED,
    genes: list[str] | None = None,
    n_neighbors_place: int = 10,
    progress: Callable[[str], None] = print,
):
    """UMAP of a seeded subsample; the other cells are placed by neighbours in PCA.

    For bundles too large for a full neighbour graph on a laptop (a million cells):
    PCA is fitted on ``n_fit`` cells drawn with the seed and applied to all cells;
    scanpy's neighbours + UMAP run on those ``n_fit`` cells; every other cell gets the
    distance-weighted mean UMAP position of its ``n_neighbors_place`` nearest fitted
    cells in PCA space. The layout of the placed cells is therefore an interpolation,
    not an optimised UMAP (it cannot separate structure absent from the subsample).
    Adds ``obsm['X_umap']`` in place.

    Parameters
    ----------
    n_fit
        Cells in the subsample that gets the real UMAP.
    genes
        Genes used for PCA (default: all); the benchmark bundle uses the marker genes
        so that filler genes do not drown the structure, as HVG selection would.
    """
    import anndata as ad
    import scanpy as sc
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(seed)
    n = adata.n_obs
    fit = np.sort(rng.choice(n, size=min(n_fit, n), replace=False))
    columns = (
        np.arange(adata.n_vars)
        if genes is None
        else adata.var_names.get_indexer(pd.Index(genes))
    )
    matrix = adata.X[:, columns]
    n_comps = min(20, len(columns) - 1)
    progress(f"  PCA fitted on {len(fit):,} of {n:,} cells, {len(columns)} genes")
    pca = PCA(n_components=n_comps, random_state=seed)
    pca.fit(matrix[fit].toarray())
    embedded = np.empty((n, n_comps), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(start + 100_000, n)
        embedded[start:stop] = pca.transform(matrix[start:stop].toarray())
    progress(f"  neighbours + UMAP on the {len(fit):,}-cell subsample")
    sub = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names[fit]))
    sub.obsm["X_pca"] = embedded[fit]
    sc.pp.neighbors(
        sub, n_neighbors=15, use_rep="X_pca", random_state=seed, transformer="sklearn"
    )
    sc.tl.umap(sub, random_state=seed)
    umap = np.empty((n, 2), dtype=np.float32)
    umap[fit] = sub.obsm[schema.UMAP_KEY]
    rest = np.setdiff1d(np.arange(n), fit)
    progress(f"  placing {len(rest):,} cells by {n_neighbors_place} PCA neighbours")
    index = NearestNeighbors(n_neighbors=n_neighbors_place).fit(embedded[fit])
    umap_fit = umap[fit]
    for start in range(0, len(rest), 50_000):
        rows = rest[start : start + 50_000]
        dist, nearest = index.kneighbors(embedded[rows])
        weight = 1.0 / (dist + 1e-3)
        weight /= weight.sum(axis=1, keepdims=True)
        umap[rows] = np.einsum("ij,ijk->ik", weight, umap_fit[nearest])
    adata.obsm[schema.UMAP_KEY] = umap
    adata.uns["umap_method"] = (
        f"UMAP (scanpy) on a seeded subsample of {len(fit):,} cells; the other "
        f"{len(rest):,} cells placed at the distance-weighted mean of their "
        f"{n_neighbors_place} nearest subsample cells in PCA space"
    )


def write_demo(
    out: Path | str,
    *,
    n_cells: int = 36_000,
    n_cell_patients: int = 48,
    seed: int = SEED,
    n_patients: int | None = None,
    n_genes: int | None = None,
    umap_subsample: int | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Generate the demo bundle into ``out`` (via a temporary folder, then renamed).

    The defaults give the demo bundle; the other options make larger synthetic
    bundles for benchmarks (a million cells, 2,000 genes, 10,000 patients).

    Parameters
    ----------
    out
        Bundle folder to create. An existing bundle there is replaced only after the new
        one is complete.
    n_cells
        Number of CD8 T cells; 0 writes no ``cd8_cells.h5ad``.
    n_cell_patients
        Patients with single-cell data.
    seed
        Random seed: the same seed gives the same bundle.
    n_patients
        Patients in total, spread over the three cohorts in the demo's proportions
        (default 480).
    n_genes
        Genes in ``cd8_cells.h5ad``: the marker genes plus lowly expressed filler
        genes without any state programme (default: the marker genes only).
    umap_subsample
        Compute the UMAP on this many seeded cells and place the others by their
        nearest neighbours in PCA space (see :func:`compute_umap_subsample`); for
        bundles too large for a full neighbour graph. Default: UMAP on all cells.
    """
    import shutil
    import tempfile

    out = Path(out)
    rng = np.random.default_rng(seed)
    progress("Generating synthetic demo cohort (patients, samples, survival)")
    sizes = None if n_patients is None else scaled_cohort_sizes(n_patients)
    cohort, patients = make_cohort(rng, cohort_sizes=sizes)
    n_marker = len(GENES_BASE)
    n_filler = 0 if n_genes is None else n_genes - n_marker
    if n_filler < 0:
        raise ValueError(f"n_genes must be at least {n_marker} (the marker genes)")
    large = n_filler > 0 or umap_subsample is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        meta = dict(DEMO_META, name=out.name)
        if large or n_patients is not None:
            meta["description"] += (
                f" This benchmark variant holds {len(patients):,} patients and "
                f"{n_cells:,} CD8 T cells over {n_marker + n_filler:,} genes "
                f"({n_filler:,} of them filler genes without a state programme)."
            )
            if umap_subsample:
                meta["description"] += (
                    f" Its UMAP was computed on {umap_subsample:,} seeded cells; "
                    "the others are placed by their nearest neighbours in PCA space."
                )
        if n_patients is None:  # issue 17: eight patient-level cohorts to pool
            from data.demo_evidence import extend_demo

            cohort, meta = extend_demo(cohort, meta, seed=seed)
        (tmp / schema.DATASET_JSON).write_text(json.dumps(meta, indent=2) + "\n")
        cohort.to_csv(tmp / schema.COHORT_CSV, index=False)
        if n_cells > 0:
            progress(
                f"Simulating {n_cells:,} CD8 T cells from {n_cell_patients} patients"
            )
            adata = make_cells(
                cohort,
                patients,
                rng,
                n_cells=n_cells,
                n_patients=n_cell_patients,
                n_filler_genes=n_filler,
                chunk_size=20_000 if large else None,
            )
            if umap_subsample:
                compute_umap_subsample(
                    adata,
                    n_fit=umap_subsample,
                    seed=seed,
                    genes=list(GENES_BASE),
                    progress=progress,
                )
            else:
                compute_umap(adata, seed=seed, progress=progress, max_comps=20)
            if "counts" in adata.layers:  # issue 16: genes with known DE, own RNG
                adata = demo_de.add_simulated_de(adata, patients, tmp, seed=seed)
            if n_genes is None:  # mechanism genes (issue 15): own RNG, after the UMAP
                adata = _with_programs(adata, patients, seed, progress)
            adata.write_h5ad(tmp / schema.CELLS_H5AD, compression="gzip")
            # gene-major copy: colouring by a gene reads one slice, not the matrix
            from data.cells import write_gene_major

            write_gene_major(tmp / schema.CELLS_H5AD)
        if out.exists():
            backup = out.with_name(f".{out.name}-old")
            shutil.rmtree(backup, ignore_errors=True)
            out.rename(backup)
            tmp.rename(out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"Demo bundle ready: {out}")
    return out


def _with_programs(adata, patients, seed: int, progress: Callable[[str], None]):
    """Program genes of the mechanism chain and their per-cell scores."""
    from analysis.programs import score_programs
    from data.demo_mechanism import add_program_genes

    progress("Simulating IFN-alpha / IL-2 / RA program genes; scoring programs")
    adata = add_program_genes(adata, patients, seed=seed, song_state=SONG_STATE)
    score_programs(adata, progress=progress)
    return adata
