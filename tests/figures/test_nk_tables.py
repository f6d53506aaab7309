"""The table behind a Kaplan-Meier panel: the drawn curves, checked with lifelines."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import KaplanMeierFitter

from analysis.nk_response import ENDPOINTS, analyze_nk_response
from data.view import cohort_view
from figures.reports import build_panels
from tests.conftest import DATA_DIR


def test_km_csv_holds_the_curves_censoring_and_numbers_at_risk(demo_bundle):
    view = cohort_view({"dataset": "demo"}, data_dir=DATA_DIR, default_dataset="demo")
    panels = {p.key: p for p in build_panels("nk-response", view, {})}
    patients = analyze_nk_response(view.samples, {}).patients
    for key, (time_col, event_col, _name) in ENDPOINTS.items():
        table = panels[f"nk-km-{key}"].table
        assert set(table["part"]) == {"curve", "censored", "at risk"}
        for group, rows in patients.dropna(subset=["nk_group", time_col]).groupby(
            "nk_group"
        ):
            fitter = KaplanMeierFitter().fit(rows[time_col], rows[event_col])
            curve = table[(table["part"] == "curve") & (table["group"] == group)]
            assert len(curve) > 1
            expected = fitter.survival_function_at_times(curve["time"]).to_numpy()
            np.testing.assert_allclose(curve["survival"], expected, atol=1e-9)
            censored = table[(table["part"] == "censored") & (table["group"] == group)]
            assert len(censored) == int((rows[event_col] == 0).sum())
            at_risk = table[(table["part"] == "at risk") & (table["group"] == group)]
            first = at_risk.sort_values("time").iloc[0]
            assert first["time"] == pytest.approx(0)
            assert first["at_risk"] == len(rows)
