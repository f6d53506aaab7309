"""Eight more synthetic cohorts for the evidence page (patient-level rows, no cells).

The demo's three cohorts are too few to pool. These eight add tumor types and
treatment classes with a *heterogeneous* NK effect - from strongly "fewer NK, better
response" (Song et al. 2025) through none to the opposite direction (as Barry et al.
2018 and Lee et al. 2019 report in melanoma) - so the forest, funnel, leave-one-out,
subgroup tests and the specification curve all have something to show.

Besides the cell fractions (``frac_*``, as the other cohorts), each sample carries
bulk-deconvolution-like NK and CD8 estimators (``score_*``: CIBERSORT resting and
activated, EPIC, quanTIseq, MCP-counter, a broad NK signature that also reads
exhausted CD8 cells, and an NK-specific KLRF1/NCR1-type signature), each a noisy
read-out of the simulated tissue abundances. They are drawn from a child random
generator (``[SEED, 17]``) so the existing cohorts, cells and numbers of the demo stay
exactly as they were.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.demo import _composition, _sigmoid

TAG = 17  # issue number: the child generator's key

#: cohort -> (tumor type, treatment, patients, log-odds of response per SD NK bias)
EVIDENCE_COHORTS: dict[str, tuple[str, str, int, float]] = {
    "SYN-D": ("gastric", "anti-PD-1", 70, -0.9),
    "SYN-E": ("breast (TNBC)", "anti-PD-L1", 60, -0.3),
    "SYN-F": ("HCC", "anti-PD-1 + anti-CTLA-4", 56, 0.7),
    "SYN-G": ("melanoma", "anti-CTLA-4", 50, 0.5),
    "SYN-H": ("NSCLC", "anti-PD-L1", 80, -0.6),
    "SYN-I": ("cervical", "anti-PD-1 + anti-CTLA-4", 46, 0.0),
    "SYN-J": ("cSCC", "anti-PD-1", 44, -1.3),
    "SYN-K": ("CRC (MSI-high)", "anti-PD-1", 54, -0.4),
}
#: baseline log-odds of response per cohort
BASE = {"SYN-D": -0.2, "SYN-E": -0.3, "SYN-F": -0.1, "SYN-G": 0.1, "SYN-H": -0.2,
        "SYN-I": 0.0, "SYN-J": 0.4, "SYN-K": 0.6}  # fmt: skip

#: the bulk estimators each new sample carries
ESTIMATORS = (
    "score_NK_cells_resting_CIBERSORT",
    "score_NK_cells_activated_CIBERSORT",
    "score_T_cells_CD8_CIBERSORT",
    "score_NKcells_EPIC",
    "score_CD8_Tcells_EPIC",
    "score_NK_cells_quantiseq",
    "score_T_cells_CD8_quantiseq",
    "score_NK_cells_MCPcounter",
    "score_CD8_T_cells_MCPcounter",
    "score_NK_signature",
    "score_NK_specific_signature",
)


def _patients(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for cohort, (tumor, treatment, n, _) in EVIDENCE_COHORTS.items():
        for i in range(n):
            rows.append((cohort, f"P{i + 1:03d}", tumor, treatment))
    patients = pd.DataFrame(
        rows, columns=["cohort", "patient_id", "tumor_type", "treatment"]
    )
    n = len(patients)
    patients["infiltration"] = rng.normal(size=n)
    patients["nk_bias"] = rng.normal(size=n)
    effect = patients["cohort"].map({c: v[3] for c, v in EVIDENCE_COHORTS.items()})
    eta = (
        patients["cohort"].map(BASE)
        + 1.0 * patients["infiltration"]
        + effect * patients["nk_bias"]
        + rng.logistic(scale=0.6, size=n)
    )
    recist = np.select(
        [eta > 2.0, eta > 0.75, eta > -0.3], ["CR", "PR", "SD"], default="PD"
    ).astype(object)
    missing = rng.random(n)
    recist[missing < 0.04] = None
    patients["recist"] = recist
    reported = pd.Series(recist).map({"CR": "R", "PR": "R", "SD": "NR", "PD": "NR"})
    no_recist = patients["recist"].isna()
    reported[no_recist] = np.where(eta[no_recist] > 0.75, "R", "NR")
    patients["response"] = reported.to_numpy()
    log_hr = (
        (patients["recist"].map({"CR": -1.6, "PR": -1.0, "SD": -0.3, "PD": 0.3}))
        .fillna(0)
        .to_numpy()
    )
    rate = np.log(2) / 16.0 * np.exp(log_hr)
    os_time = rng.exponential(1 / rate)
    pfs_time = np.minimum(os_time, rng.exponential(1 / (2.5 * rate)))
    follow_up = rng.uniform(6, 48, size=n)
    patients["os_months"] = np.round(np.minimum(os_time, follow_up), 2)
    patients["os_event"] = (os_time <= follow_up).astype(int)
    patients["pfs_months"] = np.round(np.minimum(pfs_time, follow_up), 2)
    patients["pfs_event"] = (pfs_time <= follow_up).astype(int)
    return patients


def _estimators(
    frac: dict[str, np.ndarray], infiltration: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Bulk estimators: noisy read-outs of tissue abundances (immune share x
    fraction of CD45+), each with its own noise, as methods disagree."""
    n = len(infiltration)
    immune = _sigmoid(-0.5 + 0.8 * infiltration + rng.normal(0, 0.3, n))
    nk, cd8 = frac["frac_nk"] * immune, frac["frac_cd8"] * immune

    def noisy(x: np.ndarray, sd: float) -> np.ndarray:
        return x * rng.lognormal(0, sd, n)

    def zscore(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / x.std(ddof=1)

    activated = _sigmoid(rng.normal(0.4, 0.8, n))
    lm22_nk = noisy(frac["frac_nk"], 0.35)
    out = {
        "score_NK_cells_resting_CIBERSORT": lm22_nk * (1 - activated),
        "score_NK_cells_activated_CIBERSORT": lm22_nk * activated,
        "score_T_cells_CD8_CIBERSORT": noisy(frac["frac_cd8"], 0.3),
        "score_NKcells_EPIC": noisy(nk, 0.45),
        "score_CD8_Tcells_EPIC": noisy(cd8, 0.3),
        "score_NK_cells_quantiseq": noisy(nk, 0.5),
        "score_T_cells_CD8_quantiseq": noisy(cd8, 0.35),
        "score_NK_cells_MCPcounter": 40 * noisy(nk + 0.5 * cd8, 0.3),
        "score_CD8_T_cells_MCPcounter": 40 * noisy(cd8, 0.25),
        # PRF1/GZMB/KLRK1-type genes are as high in exhausted CD8 cells as in NK
        "score_NK_signature": zscore(np.log(nk + 0.8 * cd8 + 1e-4))
        + rng.normal(0, 0.4, n),
        "score_NK_specific_signature": zscore(np.log(nk + 1e-4))
        + rng.normal(0, 0.6, n),
    }
    return {k: np.round(v, 5) for k, v in out.items()}


def evidence_cohorts(seed: int) -> pd.DataFrame:
    """Samples (bundle format) of the eight extra cohorts, seeded by ``[seed, 17]``.

    Every patient has a pre-treatment sample; about a third also an
    on-treatment one, where responders lose NK relative to CD8 (as in the demo).
    """
    rng = np.random.default_rng([seed, TAG])
    patients = _patients(rng)
    n = len(patients)
    has_on = rng.random(n) < 0.35
    index = np.r_[np.arange(n), np.flatnonzero(has_on)]
    on = np.r_[np.zeros(n), np.ones(has_on.sum())]
    responder = patients["recist"].isin(["CR", "PR"]).to_numpy()[index]
    infiltration = patients["infiltration"].to_numpy()[index]
    infiltration = infiltration + np.where(responder, 0.4, -0.1) * on
    nk_bias = patients["nk_bias"].to_numpy()[index] + np.where(responder, -1, 0.2) * on
    frac = _composition(infiltration, nk_bias, rng)
    scores = _estimators(frac, infiltration, rng)
    table = patients.iloc[index].reset_index(drop=True)
    timepoint = np.where(on == 1, "on", "pre")
    samples = pd.DataFrame(
        {
            "sample_id": table["cohort"] + "-" + table["patient_id"] + "-" + timepoint,
            "patient_id": table["patient_id"],
            "cohort": table["cohort"],
            "tumor_type": table["tumor_type"],
            "treatment": table["treatment"],
            "timepoint": timepoint,
            "recist": table["recist"],
            "response": table["response"],
            "os_months": table["os_months"],
            "os_event": table["os_event"],
            "pfs_months": table["pfs_months"],
            "pfs_event": table["pfs_event"],
            **frac,
            **scores,
        }
    )
    order = samples["cohort"] + samples["patient_id"] + samples["timepoint"]
    return samples.loc[order.sort_values(kind="stable").index].reset_index(drop=True)


def extend_demo(
    cohort: pd.DataFrame, meta: dict, *, seed: int
) -> tuple[pd.DataFrame, dict]:
    """The demo's samples with the eight cohorts appended after them, and its
    description saying so (both new objects)."""
    extra = evidence_cohorts(seed)
    meta = dict(meta)
    meta["description"] = meta["description"] + (
        f" For the evidence page it adds {extra['cohort'].nunique()} patient-level "
        f"cohorts ({extra[['cohort', 'patient_id']].drop_duplicates().shape[0]} "
        "patients, no single cells) of other tumor types and treatments whose NK "
        "effect varies in size and direction, with simulated bulk NK and CD8 "
        "estimators (score_* columns)."
    )
    return pd.concat([cohort, extra], ignore_index=True), meta
