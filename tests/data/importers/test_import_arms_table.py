"""A small, faithful imitation of the 36-arm ICB table (clinical + CIBERSORT LM22 in
one CSV) imports with documented flags and no hand edit, and its statistics equal an
independent scipy computation on the file as written.

What the real table had and this one imitates: a `#` comment line above the header,
RECIST cells `PD*`, `mixed`, `Only scanned at baseline`, `PD ` (trailing space), the
pooled class `PD-1/PD-L1`, no timepoint column, one arm in percent while the others
hold fractions, a CIBERSORT P-value column with one arm mostly p >= 0.05, and one
tumor type whose NK fractions are all 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import cli
from analysis.nk_response import analyze_nk_response, unreliable_deconvolution
from data import schema
from data.bundle import load_bundle
from data.importers.deconvolution import LM22

ARMS = {  # arm -> (tumor type, treatment class as written, scale, NK zero, p bad)
    "Arm01": ("Melanoma", "PD-1/PD-L1", 1.0, False, False),
    "Arm02": ("NSCLC", "PD-1/PD-L1", 100.0, False, False),
    "Arm03": ("Kidney", "CTLA-4 + PD-1", 1.0, True, True),
}
RECIST = ["CR", "PR", "SD", "PD", "PD*", "PD ", "mixed", "Only scanned at baseline"]
FLAGS = [
    "--map", "sample_id=Sample,cohort=Study,tumor_type=Cancer,treatment=Class,"
    "recist=RECIST,os_months=OS_months,os_event=OS_event",
    "--recode", "RECIST:mixed=",
    "--recode", "RECIST:Only scanned at baseline=",
]  # fmt: skip


def write_arms_table(path: Path, n_per_arm: int = 16) -> pd.DataFrame:
    """Write the table (as a study would publish it) and return what was written."""
    rng = np.random.default_rng(14)
    rows = []
    for arm, (cancer, treatment, scale, nk_zero, p_bad) in ARMS.items():
        for i in range(n_per_arm):
            cells = rng.dirichlet(np.ones(len(LM22)))
            if nk_zero:
                cells[
                    [LM22.index("NK cells resting"), LM22.index("NK cells activated")]
                ] = 0
                cells = cells / cells.sum()
            row = {
                "Sample": f"{arm}_P{i:02d}",
                "Study": arm,
                "Cancer": cancer,
                "Class": treatment,
                "RECIST": RECIST[(i + len(arm)) % len(RECIST)],
                "OS_months": f"{rng.uniform(1, 40):.2f}",
                "OS_event": str(int(rng.random() < 0.6)),
            }
            row.update(
                {c: f"{v * scale:.6f}" for c, v in zip(LM22, cells, strict=True)}
            )
            unreliable = p_bad and i % 4  # 12 of 16 samples with p >= 0.05
            p = rng.uniform(0.06, 0.9) if unreliable else rng.uniform(0, 0.04)
            row["P-value"] = f"{p:.3f}"
            row["Correlation"] = f"{rng.uniform(0.1, 0.5):.3f}"
            row["RMSE"] = f"{rng.uniform(0.8, 1.1):.3f}"
            rows.append(row)
    frame = pd.DataFrame(rows)
    with path.open("w") as handle:
        handle.write("# CIBERSORT LM22 (relative) + clinical data, 3 ICB study arms\n")
        frame.to_csv(handle, index=False)
    return frame


def independent(frame: pd.DataFrame) -> pd.DataFrame:
    """Per patient values computed from the file with pandas only."""
    scale = frame["Study"].map({a: v[2] for a, v in ARMS.items()})
    num = frame[list(LM22)].astype(float).div(scale, axis=0)
    out = pd.DataFrame({"id": frame["Sample"], "study": frame["Study"]})
    out["nk"] = num["NK cells resting"] + num["NK cells activated"]
    out["cd8"] = num["T cells CD8"]
    recist = frame["RECIST"].str.strip().str.rstrip("*")
    out["responder"] = recist.map({"CR": True, "PR": True, "SD": False, "PD": False})
    out["p"] = frame["P-value"].astype(float)
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("arms")
    path = tmp / "icb_36arm_like.csv"
    frame = write_arms_table(path)
    data_dir = tmp / "datasets"
    argv = ["--data-dir", str(data_dir), "import", "cibersort", "--file", str(path),
            "--clinical", str(path), "--name", "arms", *FLAGS]  # fmt: skip
    return frame, data_dir, argv


def test_the_table_imports_with_documented_flags_and_says_what_it_did(imported, capsys):
    frame, data_dir, argv = imported
    assert cli.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    cohort = load_bundle(data_dir / "arms").cohort
    assert len(cohort) == len(frame)
    assert "header found on line 2" in out
    assert "1 footnote mark(s) removed" not in out  # several PD* rows, counted
    assert "footnote mark(s) removed (`PD*`" in out
    assert "surrounding spaces trimmed (`PD ` x" in out
    assert "recist: `mixed` -> missing" in out
    assert "`PD-1/PD-L1` (32 samples) is a pooled label" in out
    assert "16 of 48 rows hold percentages" in out and "already held fractions" in out
    assert "absolute-mode" not in out
    assert set(cohort["treatment"]) == {"anti-PD-(L)1", "anti-PD-1 + anti-CTLA-4"}
    assert set(cohort[schema.TIMEPOINT_NOTE]) == {schema.TIMEPOINT_ASSUMED}
    assert set(cohort[schema.FRACTION_SOURCE]) == {"cibersort_relative"}
    expected = independent(frame).set_index("id")
    got = cohort.set_index("sample_id")
    np.testing.assert_allclose(got["frac_nk"], expected.loc[got.index, "nk"], atol=1e-9)
    np.testing.assert_allclose(got["cibersort_p"], expected.loc[got.index, "p"])


def test_statistics_equal_scipy_on_the_file(imported, capsys):
    frame, data_dir, argv = imported
    if not (data_dir / "arms").exists():
        assert cli.main(argv) == 0
    capsys.readouterr()
    cohort = load_bundle(data_dir / "arms").cohort
    ref = independent(frame).dropna(subset=["responder"])
    result = analyze_nk_response(
        cohort, {"metric": "frac_nk", "definition": "objective"}
    )
    expected = stats.mannwhitneyu(
        ref.loc[ref["responder"], "nk"], ref.loc[~ref["responder"].astype(bool), "nk"],
        alternative="two-sided", method="auto",
    )  # fmt: skip
    assert result.two_group.u == pytest.approx(expected.statistic, rel=1e-12)
    assert result.two_group.p == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.metric.label == (
        "NK cells, fraction of LM22 immune cells (CIBERSORT relative)"
    )
    assert result.timepoint_label == "assumed pre-treatment (timepoint not reported)"

    # log2(NK / CD8): the kidney arm's NK = 0 patients are named as such
    log = analyze_nk_response(cohort, {"metric": "log2_nk_cd8"})
    n_zero = int((independent(frame)["nk"] == 0).sum())
    assert log.n_zero_ratio == n_zero == 16
    assert f"{n_zero} patients with NK or CD8 = 0 excluded" in log.exclusion_text
    # ... and the documented pseudocount variant keeps them
    pseudo = analyze_nk_response(cohort, {"metric": "log2_nk_cd8_pseudo"})
    values = np.log2((ref["nk"] + 0.01) / (ref["cd8"] + 0.01))
    expected = stats.mannwhitneyu(
        values[ref["responder"].astype(bool)], values[~ref["responder"].astype(bool)],
        alternative="two-sided",
    )  # fmt: skip
    assert pseudo.n_zero_ratio == 0 and pseudo.two_group.p == pytest.approx(
        expected.pvalue, rel=1e-12
    )

    # deconvolution p < 0.05 only, and the per-cohort warning
    assert [c for c, _, _ in unreliable_deconvolution(cohort)] == ["Arm03"]
    reliable = analyze_nk_response(
        cohort, {"metric": "frac_nk", "deconvolution": "p05"}
    )
    sub = ref[ref["p"] < 0.05]
    expected = stats.mannwhitneyu(
        sub.loc[sub["responder"].astype(bool), "nk"],
        sub.loc[~sub["responder"].astype(bool), "nk"],
        alternative="two-sided",
    )  # fmt: skip
    assert reliable.two_group.p == pytest.approx(expected.pvalue, rel=1e-12)
    assert reliable.state.to_dict()["deconvolution"] == "p05"


def test_figures_say_assumed_pre_treatment(imported, capsys):
    from data.view import cohort_view
    from figures.nk import nk_panels

    _, data_dir, argv = imported
    if not (data_dir / "arms").exists():
        assert cli.main(argv) == 0
    capsys.readouterr()
    view = cohort_view({"dataset": "arms"}, data_dir=data_dir, default_dataset="arms")
    panels = {p.key: p for p in nk_panels(view, {"metric": "frac_nk"})}
    assert "assumed pre-treatment" in panels["nk-box"].caption
