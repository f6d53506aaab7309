"""NK page: per-cohort warning on unreliable CIBERSORT deconvolution (issue 14)."""

from __future__ import annotations

import pandas as pd

from data import schema


def test_nk_page_warns_per_cohort_and_offers_the_p_filter():
    # Why: two cohorts had 0% and 1% of samples with p < 0.05 and nothing warned
    from pages.nk_response import _deconvolution_options, deconvolution_warning
    from tests.conftest import component_text

    samples = pd.DataFrame(
        {
            "cohort": ["A"] * 4 + ["B"] * 4,
            schema.CIBERSORT_P: [0.2, 0.3, 0.01, 0.5, 0.01, 0.02, 0.2, 0.0],
        }
    )
    text = component_text(deconvolution_warning(samples))
    assert "A: 3 of 4 samples have CIBERSORT p ≥ 0.05" in text and "B:" not in text
    assert deconvolution_warning(samples.assign(cibersort_p=0.01)) is None
    options = {o["value"]: o for o in _deconvolution_options(True)}
    assert options["p05"]["label"] == "deconvolution p < 0.05"
    assert not options["p05"]["disabled"]
    assert {o["value"]: o for o in _deconvolution_options(False)}["p05"]["disabled"]
