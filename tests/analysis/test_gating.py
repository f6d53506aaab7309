"""Gate logic on hand-built cells with known membership; per-patient statistics
against independent references (pandas groupby, scipy, hand counts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import gating
from analysis.gating import (
    DEFAULT_THRESHOLD,
    Gate,
    GateError,
    Marker,
    MissingMarkersError,
    default_gate,
    evaluate_gate,
    gate_to_string,
    missing_markers,
    parse_gate,
    patient_fractions,
    response_association,
    sensitivity,
)


def _cells():
    """Six cells, four genes (BCL2 and TNFRSF18 absent, as in real data)."""
    import anndata as ad

    genes = ["CD69", "EOMES", "GZMB", "HAVCR2"]
    x = np.array(
        [
            # CD69 EOMES GZMB HAVCR2
            [1.0, 1.0, 1.0, 0.0],  # in (all + markers > 0, HAVCR2 not detected)
            [1.0, 1.0, 1.0, 0.5],  # out: HAVCR2 detected
            [0.0, 1.0, 1.0, 0.0],  # out: CD69 exactly 0 (not > 0)
            [2.0, 0.2, 3.0, 0.0],  # in
            [0.5, 0.5, 0.5, 0.5],  # out at threshold 0; in when HAVCR2 <= 0.5
            [0.5, 0.0, 0.5, 0.0],  # out: EOMES 0
        ],
        dtype=np.float32,
    )
    obs = pd.DataFrame(
        {"patient_id": ["A", "A", "B", "B", "B", "C"]},
        index=[f"c{i}" for i in range(6)],
    )
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes))


def _expr(adata) -> dict[str, np.ndarray]:
    return {g: np.asarray(adata[:, g].X).ravel() for g in adata.var_names}


def test_default_gate_is_song_phenotype():
    gate = default_gate()
    assert gate.phenotype == "CD69+ BCL2+ EOMES+ GZMB+ HAVCR2- TNFRSF18-"
    assert all(m.threshold == DEFAULT_THRESHOLD == 0 for m in gate.markers)
    assert gate.marker("HAVCR2").label == "HAVCR2- (TIM-3)"
    assert gate.marker("TNFRSF18").label == "TNFRSF18- (GITR)"


def test_missing_markers_refused_unless_accepted():
    adata = _cells()
    gate = default_gate()
    assert missing_markers(gate, adata.var_names) == ["BCL2", "TNFRSF18"]
    with pytest.raises(MissingMarkersError) as err:
        evaluate_gate(gate, _expr(adata), available=adata.var_names, n_cells=6)
    assert err.value.missing == ("BCL2", "TNFRSF18")
    result = evaluate_gate(
        gate, _expr(adata), available=adata.var_names, n_cells=6, accept_missing=True
    )
    assert result.in_gate.tolist() == [True, False, False, True, False, False]
    assert result.note == "gate evaluated without BCL2, TNFRSF18"
    assert [m.gene for m in result.evaluated] == ["CD69", "EOMES", "GZMB", "HAVCR2"]


def test_threshold_boundaries():
    adata = _cells()
    expr = _expr(adata)
    # '-' passes at equality: HAVCR2 <= 0.5 lets cells 1 and 4 in
    gate = Gate(
        (
            Marker("CD69", "+", 0.0),
            Marker("EOMES", "+", 0.0),
            Marker("GZMB", "+", 0.0),
            Marker("HAVCR2", "-", 0.5),
        )
    )
    result = evaluate_gate(gate, expr, available=adata.var_names, n_cells=6)
    assert result.in_gate.tolist() == [True, True, False, True, True, False]
    # '+' fails at equality: CD69 > 1 keeps only cell 3
    gate = gate.with_marker(Marker("CD69", "+", 1.0))
    result = evaluate_gate(gate, expr, available=adata.var_names, n_cells=6)
    assert result.in_gate.tolist() == [False, False, False, True, False, False]
    # evaluating a subset of cells gives one entry per selected cell
    sub = evaluate_gate(
        gate, expr, available=adata.var_names, n_cells=6, cells=np.array([1, 3])
    )
    assert sub.in_gate.tolist() == [False, True]


def test_gate_with_no_present_marker_is_an_error():
    adata = _cells()
    gate = Gate((Marker("BCL2"), Marker("TNFRSF18", "-")))
    with pytest.raises(GateError, match="none of the gate's markers"):
        evaluate_gate(
            gate, _expr(adata), available=adata.var_names, n_cells=6,
            accept_missing=True,
        )  # fmt: skip


def test_gate_string_round_trip_and_errors():
    gate = Gate(
        (Marker("HLA-A", "+", 0.25), Marker("HAVCR2", "-", 1.5), Marker("CD69")),
        name="mine",
    )
    text = gate_to_string(gate)
    assert text == "HLA-A.gt.0.25~HAVCR2.le.1.5~CD69.gt.0"
    assert all(c.isalnum() or c in "-._~" for c in text)  # RFC 3986 unreserved
    assert parse_gate(text, name="mine") == gate
    assert parse_gate(None) == default_gate()
    assert parse_gate("") == default_gate()
    for bad in ("CD69", "CD69.gt.x", "CD69.gt.0~CD69.le.1", "CD69.eq.0"):
        with pytest.raises(GateError):
            parse_gate(bad)


def test_patient_fractions_match_pandas_groupby():
    rng = np.random.default_rng(3)
    n = 5000
    patients = rng.choice(["p1", "p2", "p3", "p4", "p5"], size=n)
    in_gate = rng.random(n) < np.where(patients == "p2", 0.6, 0.1)
    codes, names = pd.factorize(patients, sort=True)
    n_in, n_cells, fraction = patient_fractions(in_gate, codes, len(names) + 1)
    reference = pd.DataFrame({"p": patients, "g": in_gate}).groupby("p")["g"]
    assert n_cells[:5].tolist() == reference.size().loc[names].tolist()
    assert n_in[:5].tolist() == reference.sum().loc[names].tolist()
    np.testing.assert_allclose(fraction[:5], reference.mean().loc[names].to_numpy())
    assert np.isnan(fraction[5]) and n_cells[5] == 0  # a patient without cells
    # cells without a patient (code -1) are ignored
    codes2 = codes.copy()
    codes2[:10] = -1
    _, n_cells2, _ = patient_fractions(in_gate, codes2, len(names))
    assert n_cells2.sum() == n - 10


def test_response_association_matches_scipy():
    values = np.array([0.1, 0.5, 0.4, 0.05, 0.3, np.nan, 0.2, 0.6])
    groups = pd.Series(["R", "R", "R", "NR", "NR", "R", None, "NR"])
    assoc = response_association(values, groups, positive="R", negative="NR")
    pos, neg = [0.1, 0.5, 0.4], [0.05, 0.3, 0.6]
    # hand count: pairs (pos > neg) = 0.1>0.05, 0.5>0.05, 0.5>0.3, 0.4>0.05, 0.4>0.3
    assert assoc.auc == pytest.approx(5 / 9)
    assert assoc.p == pytest.approx(stats.mannwhitneyu(pos, neg).pvalue)
    assert (assoc.n_pos, assoc.n_neg) == (3, 3)
    empty = response_association(values, groups, positive="R", negative="other")
    assert np.isnan(empty.auc) and empty.n_neg == 0


def test_sensitivity_current_threshold_matches_direct_computation():
    rng = np.random.default_rng(5)
    n, n_pat = 3000, 12
    codes = rng.integers(0, n_pat, size=n)
    groups = pd.Series(["R"] * 6 + ["NR"] * 6)
    responder = codes < 6
    expr = {
        "A": np.where(rng.random(n) < np.where(responder, 0.7, 0.3), 1.0, 0.0),
        "B": rng.exponential(1.0, size=n).astype(np.float32),
    }
    gate = Gate((Marker("A", "+", 0.0), Marker("B", "-", 1.0)))
    table = sensitivity(
        gate, expr, available=["A", "B"], n_cells=n, patient_codes=codes,
        patient_groups=groups, positive="R", negative="NR",
    )  # fmt: skip
    assert set(table["gene"]) == {"A", "B"}
    row = table[(table["gene"] == "B") & table["current"]].iloc[0]
    member = (expr["A"] > 0) & (expr["B"] <= 1.0)
    frac = pd.Series(member).groupby(codes).mean()
    ref = stats.mannwhitneyu(frac[:6], frac[6:])
    assert row["p"] == pytest.approx(ref.pvalue)
    assert row["auc"] == pytest.approx(ref.statistic / 36)
    assert row["cells_in_gate"] == member.sum()
    # thresholds span B's observed range (min .. 99th percentile)
    b = table[table["gene"] == "B"]["threshold"]
    assert b.min() == pytest.approx(expr["B"].min(), abs=1e-3)
    assert b.max() >= np.quantile(expr["B"], 0.99) - 1e-3


def test_sensitivity_every_row_matches_scipy_for_larger_groups():
    rng = np.random.default_rng(11)
    n, n_pat = 4000, 22
    codes = rng.integers(0, n_pat, size=n)
    groups = pd.Series(["R"] * 12 + ["NR"] * 10)
    expr = {"A": rng.exponential(1.0, size=n), "B": rng.exponential(1.0, size=n)}
    gate = Gate((Marker("A", "+", 0.5), Marker("B", "-", 1.0)))
    table = sensitivity(
        gate, expr, available=["A", "B"], n_cells=n, patient_codes=codes,
        patient_groups=groups, positive="R", negative="NR", n_steps=6,
    )  # fmt: skip
    for row in table.itertuples():
        other = "B" if row.gene == "A" else "A"
        sign = "+" if row.gene == "A" else "-"
        member = Marker(row.gene, sign, row.threshold).passes(expr[row.gene])
        member &= gate.marker(other).passes(expr[other])
        frac = pd.Series(member).groupby(codes).mean()
        if frac.nunique() == 1:  # every patient the same: no test (not p = 1)
            assert np.isnan(row.p) and np.isnan(row.auc)
            continue
        ref = stats.mannwhitneyu(frac[:12], frac[12:])
        assert row.p == pytest.approx(ref.pvalue)
        assert row.auc == pytest.approx(ref.statistic / 120)


def test_sensitivity_counts_at_thresholds_equal_to_values():
    """Values sitting exactly on swept thresholds: '+' fails and '-' passes there."""
    rng = np.random.default_rng(2)
    n = 2000
    codes = rng.integers(-1, 10, size=n)  # -1: cells without a patient
    groups = pd.Series(["R"] * 5 + ["NR"] * 5)
    expr = {
        "A": rng.integers(0, 4, size=n).astype(float),  # 0, 1, 2, 3: on the grid
        "B": rng.integers(0, 3, size=n).astype(float),
    }
    gate = Gate((Marker("A", "+", 1.0), Marker("B", "-", 1.0)))
    table = sensitivity(
        gate, expr, available=["A", "B"], n_cells=n, patient_codes=codes,
        patient_groups=groups, positive="R", negative="NR", n_steps=4,
    )  # fmt: skip
    assert set(table["threshold"]) >= {0.0, 1.0}
    for row in table.itertuples():
        a_t = row.threshold if row.gene == "A" else 1.0
        b_t = row.threshold if row.gene == "B" else 1.0
        member = (expr["A"] > a_t) & (expr["B"] <= b_t)
        assert row.cells_in_gate == member.sum()
        frac = pd.Series(member[codes >= 0]).groupby(codes[codes >= 0]).mean()
        if frac.nunique() == 1:  # every patient the same: no test (not p = 1)
            assert np.isnan(row.p)
            continue
        ref = stats.mannwhitneyu(frac[:5], frac[5:])
        assert row.p == pytest.approx(ref.pvalue)


# ------------------------------------------------------------ naming (issue 12, 6)
def test_only_the_published_gate_carries_the_published_name():
    published = gating.default_gate()
    assert gating.gate_display_name(published) == "Song et al. CD8 state"
    # the order of markers does not change which cells pass
    reordered = gating.Gate(tuple(reversed(published.markers)))
    assert reordered.display_name == "Song et al. CD8 state"
    cd69 = published.marker("CD69")
    modified = [
        published.with_marker(gating.Marker("CD69", "+", 0.5)),  # threshold
        published.with_marker(gating.Marker("CD69", "-", cd69.threshold)),  # sign
        published.without("BCL2"),  # a marker removed
        published.with_marker(gating.Marker("TOX")),  # a marker added
    ]
    for gate in modified:
        assert gate.display_name == "custom (modified from Song et al.)"
        assert gating.gate_display_name(gate) == gating.CUSTOM_GATE_NAME


def test_a_users_own_name_wins_but_cannot_claim_the_published_name():
    gate = gating.parse_gate("CD69.gt.1", name="  my   CD69-high gate ")
    assert gate.display_name == "my CD69-high gate"
    # old links carried gate_name=Song et al. CD8 state whatever the gate
    old_link = gating.parse_gate("CD69.gt.1", name="Song et al. CD8 state")
    assert old_link.name == ""
    assert old_link.display_name == "custom (modified from Song et al.)"
    assert gating.parse_gate("", name="").display_name == "Song et al. CD8 state"


# ------------------------------------------------- degenerate gates (issue 12, 7)
def test_thresholds_outside_the_observed_range_are_named():
    expr = {"A": np.array([0.0, 0.5, 2.0]), "B": np.array([1.0, 1.0, 3.0])}
    gate = Gate(
        (Marker("A", "+", 99.0), Marker("B", "-", -1.0)), name="x"
    )  # both outside: A+ above the maximum, B- below the minimum
    result = evaluate_gate(gate, expr, available=["A", "B"], n_cells=3)
    assert result.empty and result.n_in == 0
    assert result.ranges == {"A": (0.0, 2.0), "B": (1.0, 3.0)}
    assert result.warnings == [
        "A threshold 99 is outside the observed A range in the filtered cells "
        "(0.00 to 2.00): no cell passes A+",
        "B threshold -1 is outside the observed B range in the filtered cells "
        "(1.00 to 3.00): no cell passes B-",
    ]
    # inside the range (including on its edges): no warning
    inside = Gate((Marker("A", "+", 0.0), Marker("B", "-", 3.0)))
    assert evaluate_gate(inside, expr, available=["A", "B"], n_cells=3).warnings == []
    # a '+' threshold below the minimum keeps every cell: said too
    low = Gate((Marker("A", "+", -5.0),))
    (warning,) = evaluate_gate(low, expr, available=["A"], n_cells=3).warnings
    assert warning.endswith("every cell passes A+")


def test_sensitivity_draws_no_test_where_every_patient_is_the_same():
    codes = np.repeat(np.arange(6), 5)
    expr = {"A": np.tile([0.0, 1.0, 2.0, 3.0, 4.0], 6)}  # same in every patient
    groups = pd.Series(["R"] * 3 + ["NR"] * 3)
    table = sensitivity(
        Gate((Marker("A", "+", 0.0),)), expr, available=["A"], n_cells=30,
        patient_codes=codes, patient_groups=groups, positive="R", negative="NR",
    )  # fmt: skip
    # every threshold gives every patient the same fraction: scipy would say p = 1
    assert stats.mannwhitneyu([0.8] * 3, [0.8] * 3).pvalue == 1.0
    assert table["auc"].isna().all() and table["p"].isna().all()
