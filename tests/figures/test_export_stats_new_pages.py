"""Column exports of /mechanism, /compare and /evidence keep their key numbers.

The column presets drop the title (the journal sets it), so the header band of the
exported figure must state the test, p, effect with CI and n per group. Each number is
checked against an independent computation on the panel's own data (scipy,
statsmodels) or, where recomputing means re-running the model, against the record
the panel carries.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats as sps

from analysis.stats import format_p
from figures.export_fit import HEADER_LEGEND, layout_panel
from figures.export_settings import resolve_size
from figures.reports import build_panels
from tests.conftest import DATA_DIR


@pytest.fixture(scope="module")
def panels():
    from data.view import cohort_view

    view = cohort_view({"dataset": "demo"}, data_dir=DATA_DIR, default_dataset="demo")
    return {
        page: {p.key: p for p in build_panels(page, view, {})}
        for page in ("mechanism", "compare", "evidence")
    }


def header(panel, preset: str = "double") -> str:
    """The exported figure's top band as one line of plain text."""
    fig = layout_panel(panel, resolve_size(preset))
    assert fig["layout"]["title"]["text"] == ""  # the journal sets the title
    names = [t["name"] for t in fig["data"] if t.get("legend") == HEADER_LEGEND]
    text = re.sub(r"<br>", " ", " ".join(names))
    return text.replace("&lt;", "<").replace("&gt;", ">")


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


@pytest.mark.parametrize("preset", ["single", "double"])
def test_mechanism_scatter_keeps_spearman_rho_ci_p_and_n(panels, preset):
    panel = panels["mechanism"]["mech-nk"]
    line = header(panel, preset)
    table = panel.table[["nk", "ifna"]].dropna()
    rho, p = sps.spearmanr(table["nk"], table["ifna"])
    n = len(table)
    # Fisher z with the Bonett-Wright standard error, as the caption states
    se = math.sqrt((1 + rho**2 / 2) / (n - 3))
    low, high = np.tanh(np.arctanh(rho) + np.array([-1, 1]) * 1.959964 * se)
    assert "Spearman" in line and "IFN-alpha" in line
    assert f"rho = {rho:.2f} (95% CI {low:.2f} to {high:.2f})" in line
    assert format_p(p) in line
    assert f"n = {n} patients" in line


def test_mechanism_boxes_keep_mann_whitney_p_r_and_n_per_group(panels):
    panel = panels["mechanism"]["mech-response"]
    line = header(panel, "single")
    table = panel.table
    resp = table.loc[table["group"] == "Responder", "ifna"].dropna()
    non = table.loc[table["group"] == "Non-responder", "ifna"].dropna()
    u, p = sps.mannwhitneyu(resp, non, alternative="two-sided")
    # rank-biserial r > 0: lower in responders (the page's convention)
    r = 1 - 2 * u / (len(resp) * len(non))
    assert "Mann-Whitney U" in line
    assert f"{format_p(p)}, r = {r:.2f}" in line
    assert f"Responder n={len(resp)}" in line
    assert f"Non-responder n={len(non)}" in line


def test_mechanism_gate_split_keeps_both_tests(panels):
    panel = panels["mechanism"]["mech-gate"]
    line = header(panel, "single")
    table = panel.table
    for side in ("gate_pos", "gate_neg"):
        resp = table.loc[table["group"] == "Responder", f"ifna_{side}"].dropna()
        non = table.loc[table["group"] == "Non-responder", f"ifna_{side}"].dropna()
        u, p = sps.mannwhitneyu(resp, non, alternative="two-sided")
        r = 1 - 2 * u / (len(resp) * len(non))
        word = "gate+" if side == "gate_pos" else "gate-"
        assert f"{word} {format_p(p)}, r = {r:.2f}" in line


def test_mechanism_gene_bars_keep_the_top_gene_rho(panels):
    panel = panels["mechanism"]["mech-genes"]
    line = header(panel, "double")
    top = panel.table.iloc[0]
    assert f"top: {top['gene']} rho = {top['rho']:.2f}" in line
    assert f"n = {int(top['n'])} patients" in line


def test_compare_volcano_keeps_design_n_and_genes_at_padj(panels):
    from statsmodels.stats.multitest import multipletests

    panel = panels["compare"]["volcano"]
    line = header(panel, "single")
    table = panel.table
    tested = table.dropna(subset=["pvalue"])
    hits = int(multipletests(tested["pvalue"], method="fdr_bh")[1].__lt__(0.05).sum())
    prov = panel.provenance
    assert f"design {prov['design']}" in line
    assert f"n = {prov['n_patients_A']} (A) vs {prov['n_patients_B']} (B)" in line
    assert f"{hits} of {len(table)} genes at BH padj < 0.05" in line


def test_compare_heatmap_keeps_design_and_n(panels):
    panel = panels["compare"]["heatmap"]
    line = header(panel, "single")
    samples = panel.table["sample"].astype(str)
    assert "design ~ patient + group" in line
    # one pseudobulk column per patient and set
    n_a = panel.provenance["n_patients_A"]
    n_b = panel.provenance["n_patients_B"]
    assert n_a + n_b == len(samples)
    assert f"n = {n_a} (A) vs {n_b} (B) patients" in line


def test_compare_composition_keeps_method_and_n_per_group(panels):
    panel = panels["compare"]["composition"]
    line = header(panel, "single")
    table = panel.table
    assert "CLR" in line and "Mann-Whitney U" in line and "BH" in line
    assert f"Responder n={int(table['n_R'].max())}" in line
    assert f"Non-responder n={int(table['n_NR'].max())}" in line


@pytest.mark.parametrize("key", ["evidence-forest", "evidence-loo", "evidence-funnel"])
def test_evidence_keeps_pooled_r_ci_p_i2_and_k(panels, key):
    panel = panels["evidence"][key]
    line = header(panel, "single")
    cohorts = panels["evidence"]["evidence-forest"].table
    pooled = cohorts[cohorts["pooled"].astype(bool)]
    # I² from Cochran's Q on Fisher z; SE(r) read back from each cohort's 95% CI
    # (r +/- 1.96 SE, SE(r) = 2 SE_DeLong(AUC)), carried to z by the delta method
    r = pooled["r"].to_numpy(float)
    z = np.arctanh(r)
    se_r = (pooled["ci_high"] - pooled["ci_low"]).to_numpy(float) / (2 * 1.959964)
    se = se_r / (1 - r**2)
    w = 1 / se**2
    q = float(np.sum(w * (z - np.sum(w * z) / np.sum(w)) ** 2))
    i2 = max(0.0, (q - (len(z) - 1)) / q)
    reml = panel.provenance["pooled"]["reml_hk"]
    assert f"k = {len(pooled)} cohorts" in line
    assert f"I² = {100 * i2:.0f}%" in line
    assert (
        f"r = {reml['r']:.2f} (95% CI {reml['ci_low']:.2f} to {reml['ci_high']:.2f})"
        in line
    )
    assert format_p(reml["p"]) in line


def test_evidence_adjusted_and_multiverse_keep_their_numbers(panels):
    adjusted = header(panels["evidence"]["evidence-adjusted"], "single")
    assert adjusted.count("OR ") == 2 and adjusted.count("p ") >= 2
    panel = panels["evidence"]["evidence-multiverse"]
    line = header(panel, "single")
    specs = panel.table
    lower = int((specs["r"] > 0).sum())  # r > 0: lower in responders
    assert f"Of {len(specs)} specifications, {lower} " in line
    assert "p < 0.05" in line
