"""Statistics of the NK vs response page against independent references.

References: scipy.stats, sklearn, statsmodels, and hand computation; never the
module's own output.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import stats
from analysis.nk_response import analyze_nk_response
from tests.conftest import REALDATA

RNG = np.random.default_rng(20251122)


# ----------------------------------------------------------------- Mann-Whitney


def test_mann_whitney_matches_scipy_and_hand_rank_biserial():
    a = RNG.normal(0.0, 1.0, 23)
    b = RNG.normal(0.6, 1.0, 31)
    b[:3] = a[:3]  # ties across groups
    out = stats.mann_whitney(a, b)
    ref = sps.mannwhitneyu(a, b, alternative="two-sided")
    assert out.u == pytest.approx(ref.statistic)
    assert out.p == pytest.approx(ref.pvalue)
    # hand: r = P(a < b) - P(a > b) over all pairs (ties count zero)
    diff = a[:, None] - b[None, :]
    hand = ((diff < 0).sum() - (diff > 0).sum()) / diff.size
    assert out.r == pytest.approx(hand)
    assert out.r == pytest.approx(1 - 2 * ref.statistic / (a.size * b.size))
    assert out.r > 0  # a (responders) lower: positive by the documented sign


def test_mann_whitney_small_group_gives_message_not_p():
    out = stats.mann_whitney([1.0, 2.0], [3.0, 4.0, 5.0, np.nan])
    assert math.isnan(out.p) and out.n2 == 3
    assert "Too few patients" in out.message


# ----------------------------------------------------- Kruskal-Wallis and BH


def test_benjamini_hochberg_hand_example():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.2]
    # by hand: sorted 0.01, 0.03, 0.04, 0.2 -> p*m/rank = 0.04, 0.06, 0.0533, 0.2,
    # then the running minimum from the top
    expected = [0.04, 0.16 / 3, 0.16 / 3, 0.2]
    assert multipletests(p, method="fdr_bh")[1] == pytest.approx(expected)


def test_kruskal_pairwise_matches_scipy_and_hand_bh():
    groups = {
        "CR": RNG.normal(0, 1, 12),
        "PR": RNG.normal(0.3, 1, 15),
        "SD": RNG.normal(0.8, 1, 14),
        "PD": RNG.normal(1.2, 1, 20),
    }
    values = pd.Series(np.concatenate(list(groups.values())))
    labels = pd.Series(np.repeat(list(groups), [len(v) for v in groups.values()]))
    out = stats.kruskal_pairwise(values, labels, list(groups))
    assert out.h == pytest.approx(sps.kruskal(*groups.values()).statistic)
    assert out.p == pytest.approx(sps.kruskal(*groups.values()).pvalue)
    raw = np.array([t.p for t in out.pairwise])
    for t in out.pairwise:
        ref = sps.mannwhitneyu(groups[t.group1], groups[t.group2])
        assert t.p == pytest.approx(ref.pvalue)
    # hand BH
    m = raw.size
    order = np.argsort(raw)
    scaled = raw[order] * m / np.arange(1, m + 1)
    hand = np.minimum.accumulate(scaled[::-1])[::-1]
    expected = np.empty(m)
    expected[order] = np.minimum(hand, 1)
    assert [t.p_adjusted for t in out.pairwise] == pytest.approx(expected)


def test_kruskal_leaves_out_small_groups_and_says_so():
    values = pd.Series([1.0, 2, 3, 4, 5, 6, 7])
    labels = pd.Series(["CR", "CR", "PD", "PD", "PD", "SD", "SD"])
    out = stats.kruskal_pairwise(values, labels, ["CR", "PR", "SD", "PD"])
    assert math.isnan(out.p)
    assert "CR (n=2)" in out.message and "no test" in out.message


# ---------------------------------------------------------------------- ROC


def _delong_by_hand(pos, neg):
    """DeLong et al. (1988): psi kernel, O(m n) loops."""
    psi = np.array(
        [[1.0 if x > y else 0.5 if x == y else 0.0 for y in neg] for x in pos]
    )
    auc = psi.mean()
    v10 = psi.mean(axis=1)
    v01 = psi.mean(axis=0)
    s10 = ((v10 - auc) ** 2).sum() / (len(pos) - 1)
    s01 = ((v01 - auc) ** 2).sum() / (len(neg) - 1)
    return auc, math.sqrt(s10 / len(pos) + s01 / len(neg))


def test_roc_auc_lower_predicts_response_matches_sklearn_and_delong():
    from sklearn.metrics import roc_auc_score

    responders = np.round(RNG.normal(0.03, 0.01, 40), 3)  # rounding makes ties
    non = np.round(RNG.normal(0.045, 0.012, 55), 3)
    out = stats.roc_lower_predicts_response(responders, non)
    y = np.r_[np.ones(40), np.zeros(55)]
    x = np.r_[responders, non]
    assert out.auc == pytest.approx(roc_auc_score(y, -x))
    assert out.auc > 0.5
    auc, se = _delong_by_hand(-responders, -non)
    assert out.se == pytest.approx(se)
    assert out.ci_low == pytest.approx(auc - 1.959963984540054 * se)
    assert out.fpr[0] == 0 and out.tpr[-1] == 1
    # AUC = (1 + r) / 2 with the documented rank-biserial sign
    assert out.auc == pytest.approx((1 + stats.mann_whitney(responders, non).r) / 2)


def test_roc_perfect_separation_has_no_ci():
    out = stats.roc_lower_predicts_response([1.0, 2, 3], [4.0, 5, 6])
    assert out.auc == 1.0 and math.isnan(out.ci_low)
    assert "perfectly separated" in out.message


# ----------------------------------------------------- DerSimonian-Laird


def test_dersimonian_laird_against_hand_formula():
    y = np.array([0.30, 0.10, 0.55])
    v = np.array([0.010, 0.020, 0.015])
    w = 1 / v
    fixed = (w * y).sum() / w.sum()
    q = (w * (y - fixed) ** 2).sum()
    c = w.sum() - (w**2).sum() / w.sum()
    tau2 = max(0.0, (q - (len(y) - 1)) / c)
    w_re = 1 / (v + tau2)
    pooled = (w_re * y).sum() / w_re.sum()
    se = math.sqrt(1 / w_re.sum())
    i2 = max(0.0, (q - (len(y) - 1)) / q)
    out = stats.pool_dersimonian_laird(y, v)
    assert out.estimate == pytest.approx(pooled)
    assert out.se == pytest.approx(se)
    assert out.tau2 == pytest.approx(tau2)
    assert out.i2 == pytest.approx(i2)
    assert out.q == pytest.approx(q)
    assert out.ci_low == pytest.approx(pooled - 1.959963984540054 * se)
    assert out.p == pytest.approx(2 * sps.norm.sf(pooled / se))
    # statsmodels agrees when Q > k - 1 (no truncation needed)
    from statsmodels.stats.meta_analysis import combine_effects

    assert q > len(y) - 1
    ref = combine_effects(y, v, method_re="dl")
    assert out.estimate == pytest.approx(ref.mean_effect_re)
    assert out.se == pytest.approx(ref.sd_eff_w_re)


def test_dersimonian_laird_homogeneous_strata_truncate_tau2_at_zero():
    # Q < k - 1: DL sets tau^2 = 0, so the pool equals the fixed-effect
    # (inverse-variance) mean. statsmodels 0.15 combine_effects(method_re="dl")
    # returns a negative tau^2 and a wrong estimate here; this guards against it.
    y = np.array([0.4194, 0.4256])
    v = np.array([0.0851, 0.1120]) ** 2
    out = stats.pool_dersimonian_laird(y, v)
    w = 1 / v
    assert out.tau2 == 0 and out.i2 == 0
    assert out.estimate == pytest.approx((w * y).sum() / w.sum())
    assert out.se == pytest.approx(math.sqrt(1 / w.sum()))


def test_pooling_needs_two_strata():
    out = stats.pool_dersimonian_laird([0.2], [0.01])
    assert math.isnan(out.estimate) and "Fewer than two" in out.message


def test_stratum_effect_ci_from_delong():
    a = RNG.normal(0, 1, 20)
    b = RNG.normal(0.5, 1, 25)
    out = stats.stratum_effect("tumor_type", "melanoma", a, b)
    auc, se = _delong_by_hand(-a, -b)
    assert out.r == pytest.approx(2 * auc - 1)
    assert out.se == pytest.approx(2 * se)
    small = stats.stratum_effect("tumor_type", "RCC", a[:2], b)
    assert not small.usable and "too few" in small.message


# ---------------------------------------------------------- logistic regression


def _logistic_frame(n=300, seed=3):
    rng = np.random.default_rng(seed)
    tumor = rng.choice(["melanoma", "NSCLC", "RCC"], n)
    value = rng.normal(0.05, 0.02, n)
    z = (value - value.mean()) / value.std(ddof=1)
    logit = -0.3 - 0.7 * z + np.where(tumor == "melanoma", 0.5, 0.0)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {"value": value, "responder": y, "tumor_type": tumor, "treatment": "anti-PD-1"}
    )


def test_logistic_or_matches_sklearn_unpenalized():
    # C=inf: no penalty (sklearn 1.8 deprecates penalty=None in favour of it)
    from sklearn.linear_model import LogisticRegression

    frame = _logistic_frame()
    out = stats.logistic_response(frame)
    z = (frame["value"] - frame["value"].mean()) / frame["value"].std(ddof=1)
    design = pd.concat(
        [z.rename("z"), pd.get_dummies(frame["tumor_type"], drop_first=True)], axis=1
    ).astype(float)
    ref = LogisticRegression(C=np.inf, max_iter=1000, tol=1e-10).fit(
        design, frame["responder"]
    )
    term = out.metric_term
    assert term.term == "z(metric), per SD"
    assert math.log(term.odds_ratio) == pytest.approx(ref.coef_[0][0], abs=1e-4)
    assert term.ci_low < term.odds_ratio < term.ci_high
    assert term.odds_ratio < 1  # higher metric, lower odds of response (simulated)
    assert "treatment" not in out.formula  # a single treatment is not adjusted for
    labels = [t.term for t in out.terms]
    assert "tumor type: RCC vs NSCLC" in labels


def test_logistic_separation_reports_message():
    frame = pd.DataFrame(
        {
            "value": np.arange(20.0),
            "responder": [True] * 10 + [False] * 10,
            "tumor_type": ["melanoma"] * 20,
            "treatment": ["anti-PD-1"] * 20,
        }
    )
    out = stats.logistic_response(frame)
    assert out.terms == () and "separat" in out.message


def test_logistic_drops_level_with_single_response():
    frame = _logistic_frame()
    extra = pd.DataFrame(
        {
            "value": [0.05] * 4,
            "responder": [True] * 4,
            "tumor_type": ["HNSCC"] * 4,
            "treatment": ["anti-PD-1"] * 4,
        }
    )
    out = stats.logistic_response(pd.concat([frame, extra], ignore_index=True))
    assert any("HNSCC" in d for d in out.dropped)
    assert out.metric_term is not None


# ------------------------------------------------------------------ paired


def test_paired_wilcoxon_matches_scipy():
    pre = RNG.normal(0.05, 0.01, 15)
    on = pre + RNG.normal(-0.004, 0.005, 15)
    out = stats.paired_wilcoxon("Responder", pre, on)
    ref = sps.wilcoxon(on - pre)
    assert out.p == pytest.approx(ref.pvalue)
    assert out.statistic == pytest.approx(ref.statistic)
    assert out.median_change == pytest.approx(np.median(on - pre))
    few = stats.paired_wilcoxon("Non-responder", pre[:2], on[:2])
    assert math.isnan(few.p) and "Too few" in few.message


def test_group_summary_matches_pandas_quantiles():
    values = pd.Series(RNG.normal(size=30))
    groups = pd.Series(["R"] * 13 + ["NR"] * 17)
    out = {s.group: s for s in stats.summarize_groups(values, groups, ["R", "NR"])}
    ref = values[groups == "NR"].quantile([0.25, 0.5, 0.75])
    assert (out["NR"].q1, out["NR"].median, out["NR"].q3) == pytest.approx(list(ref))
    assert out["R"].n == 13


# --------------------------------------------------- whole analysis on the demo


def test_analysis_invariant_to_row_order(demo_bundle):
    cohort = demo_bundle.cohort
    state = {"metric": "nk_over_nk_cd8", "definition": "objective"}
    first = analyze_nk_response(cohort, state).to_dict()
    shuffled = cohort.sample(frac=1.0, random_state=11).reset_index(drop=True)
    second = analyze_nk_response(shuffled, state).to_dict()
    assert _approx_equal(first, second)


def _approx_equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_approx_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(
            _approx_equal(x, y) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def test_demo_excludes_and_counts_non_evaluable(demo_bundle):
    cohort = demo_bundle.cohort
    pre = cohort[cohort["timepoint"] == "pre"]
    patients = pre.drop_duplicates(["cohort", "patient_id"])
    not_evaluable = int((~patients["recist"].isin(["CR", "PR", "SD", "PD"])).sum())
    result = analyze_nk_response(cohort, {"definition": "objective"})
    assert result.n_no_response == not_evaluable
    assert result.n_analysed == len(patients) - not_evaluable
    assert f"{not_evaluable} patients without evaluable response excluded" in (
        result.exclusion_text
    )
    # the normalized default metric is lower in responders in the demo
    assert result.state.metric == "nk_lymphocytes"
    assert result.two_group.r > 0 and result.roc.auc > 0.5


def test_recist_definition_uses_kruskal_and_objective_for_roc(demo_bundle):
    result = analyze_nk_response(demo_bundle.cohort, {"definition": "recist"})
    assert result.two_group is None and result.multi_group is not None
    assert len(result.multi_group.pairwise) == 6
    assert "CR/PR vs SD/PD" in result.binary_label


def test_odd_state_falls_back_with_note(demo_bundle):
    result = analyze_nk_response(
        demo_bundle.cohort, {"metric": "bogus", "split": "quartiles"}
    )
    assert result.state.metric == "nk_lymphocytes" and result.state.split == "median"
    assert any("bogus" in n for n in result.notes)


def test_empty_cohort_gives_empty_message(demo_bundle):
    result = analyze_nk_response(demo_bundle.cohort.iloc[0:0], {})
    assert result.empty and "No samples" in result.empty_message


# ------------------------------------------------------------------ real data

IMVIGOR = REALDATA / "imvigor210"


@pytest.mark.skipif(
    not (IMVIGOR / "imvigor210_pdata.csv").exists(),
    reason="real data ../shared/realdata/imvigor210 not present",
)
def test_imvigor210_nk_vs_response():
    pdata = pd.read_csv(IMVIGOR / "imvigor210_pdata.csv")
    sig = pd.read_csv(IMVIGOR / "imvigor210_sig.csv")
    data = pdata.merge(sig, on="ID")
    nk = data["NK_cells_resting_CIBERSORT"] + data["NK_cells_activated_CIBERSORT"]
    cohort = pd.DataFrame(
        {
            "sample_id": data["ID"],
            "patient_id": data["ID"],
            "cohort": "IMvigor210",
            "tumor_type": "urothelial",
            "treatment": "anti-PD-L1",
            "timepoint": "pre",
            "recist": data["BOR"].where(data["BOR"].isin(["CR", "PR", "SD", "PD"])),
            "os_months": data["OS_days"] / 30.4375,
            "os_event": data["OS_status"].astype(float),
            "frac_nk": nk,
            "frac_cd8": data["T_cells_CD8_CIBERSORT"],
            "score_nk_mcpcounter": data["NK_cells_MCPcounter"],
        }
    )
    evaluable = cohort["recist"].notna()
    assert (~evaluable).sum() == 50
    ratio = cohort["frac_nk"] / (cohort["frac_nk"] + cohort["frac_cd8"])
    for metric, x in (
        ("score_nk_mcpcounter", cohort["score_nk_mcpcounter"]),
        ("nk_over_nk_cd8", ratio.replace([np.inf, -np.inf], np.nan)),
    ):
        result = analyze_nk_response(cohort, {"metric": metric})
        has = x.notna()
        assert result.n_no_metric == int((~has).sum())
        assert result.n_no_response == int((has & ~evaluable).sum())
        assert result.n_analysed == int((has & evaluable).sum())
        responder = cohort["recist"].isin(["CR", "PR"])
        x_r = x[has & evaluable & responder]
        x_nr = x[has & evaluable & ~responder]
        ref = sps.mannwhitneyu(x_r, x_nr)
        assert result.two_group.p == pytest.approx(ref.pvalue)
        assert result.two_group.n1 == len(x_r)
        assert result.roc.auc == pytest.approx(
            1 - ref.statistic / (len(x_r) * len(x_nr))
        )
        os_result = result.km["os"]
        if metric == "nk_over_nk_cd8":
            # CIBERSORT often estimates CD8 = 0, so NK / (NK + CD8) = 1 for more than
            # half the patients: the median split cannot separate them, and says so
            assert (x == 1).sum() > has.sum() / 2
            assert any("unbalanced" in n for n in result.notes)
            assert math.isnan(os_result.logrank_p) and os_result.message
        else:
            assert math.isfinite(os_result.logrank_p)
        assert result.cox["os"]["unadjusted"].hr > 0
        # single tumor type and treatment: the logistic model has the metric only
        assert result.logistic.formula == "response ~ z(metric)"


def test_reported_response_is_default_without_recist_and_no_survival_is_fine():
    from tests.conftest import small_cohort

    cohort = small_cohort().drop(columns=["os_months", "os_event"])
    cohort["recist"] = pd.NA
    result = analyze_nk_response(cohort, {})
    assert result.state.definition == "reported"
    assert result.definition.label.startswith("Response as reported")
    # P3 of cohort B has only a reported response: it is evaluable here
    assert result.n_analysed == 7 and result.n_no_response == 1
    assert result.km == {} and result.cox == {}
    # four responders vs three non-responders: tested; strata too small to estimate
    assert math.isfinite(result.two_group.p)
    assert all(not e.usable for e in result.strata["cohort"])


def test_direction_sentence_follows_the_sign_of_r_computed_by_scipy():
    from scipy import stats as sps

    from analysis.stats import direction_sentence, mann_whitney

    low_in_responders = mann_whitney([1, 2, 3, 4], [5, 6, 7, 8])
    # hand check: U of the responders is 0, so r = 1 - 0 = 1
    assert sps.mannwhitneyu([1, 2, 3, 4], [5, 6, 7, 8]).statistic == 0
    assert low_in_responders.r == 1
    assert "is lower in responders" in direction_sentence(
        low_in_responders.r, quantity="NK"
    )
    assert "is higher in responders" in direction_sentence(-0.4, quantity="NK")
    assert "does not differ" in direction_sentence(0.0, quantity="NK")
    assert "not estimable" in direction_sentence(float("nan"), quantity="NK")


def test_auc_sentence_states_the_pair_share():
    from analysis.stats import auc_sentence

    text = auc_sentence(0.68, quantity="NK", lower_predicts=True)
    assert "68% of responder/non-responder pairs" in text
    assert "lower NK" in text
    assert "higher gate fraction" in auc_sentence(
        0.7, quantity="gate fraction", lower_predicts=False
    )
    assert auc_sentence(None, quantity="NK") == "AUC not estimable"
