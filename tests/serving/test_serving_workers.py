"""gunicorn with 3 workers: concurrent sessions with different filters each get their
own answer (no state shared across requests, workers or threads)."""

from __future__ import annotations

import itertools
import re
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import psutil
import pytest
import requests

from tests.serving.servers import (
    callback_payload,
    gunicorn,
    post_callback,
    with_inputs,
)

pytestmark = pytest.mark.slow


def _filters(cohort: pd.DataFrame) -> list[dict]:
    tumors = sorted(cohort["tumor_type"].unique())
    treatments = sorted(cohort["treatment"].unique())
    out = [{"dataset": "demo"}]
    out += [{"dataset": "demo", "tumor_type": [t]} for t in tumors]
    out += [{"dataset": "demo", "treatment": [t]} for t in treatments]
    out += [
        {"dataset": "demo", "tumor_type": [a], "treatment": [b]}
        for a, b in itertools.product(tumors[:3], treatments[:3])
    ]
    out += [
        {"dataset": "demo", "tumor_type": list(pair)}
        for pair in itertools.pairwise(tumors)
    ]
    return out


def _expected(cohort: pd.DataFrame, flt: dict) -> tuple[int, int, set[str]]:
    """Patients and samples matching ``flt``, computed here with pandas alone."""
    rows = cohort
    for field in ("tumor_type", "treatment"):
        if flt.get(field):
            rows = rows[rows[field].isin(flt[field])]
    patients = rows[["cohort", "patient_id"]].drop_duplicates()
    return len(patients), len(rows), set(rows["tumor_type"])


def test_concurrent_sessions_get_their_own_answers(demo_dir, tmp_path):
    cohort = pd.read_csv(demo_dir / "cohort.csv", keep_default_na=False)
    filters = _filters(cohort)
    jobs = [(i, flt) for i, flt in enumerate(filters * 3)]  # each filter three times

    with gunicorn(tmp_path, workers=3) as (base, proc, access_log):
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 3
        overview = callback_payload(base, "overview-patients.", [None])

        def run(job):
            _, flt = job
            with requests.Session() as session:  # one browser session per job
                return flt, post_callback(session, base, with_inputs(overview, [flt]))

        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(run, jobs))

    assert len(results) == len(jobs) > 50
    for flt, response in results:
        assert response.status_code == 200, response.text[:300]
        body = response.json()["response"]
        n_patients, n_samples, tumors = _expected(cohort, flt)
        assert body["overview-patients"]["children"] == f"{n_patients:,}", flt
        assert body["overview-samples"]["children"] == f"{n_samples:,}", flt
        rows = body["overview-table"]["rowData"]
        assert len(rows) == n_patients
        assert {r["tumor_type"] for r in rows} == tumors
        if flt.get("treatment"):
            assert {r["treatment"] for r in rows} <= set(flt["treatment"])

    # the access log has every request, and no patient or sample identifier
    log = access_log.read_text()
    assert log.count("POST /_dash-update-component") == len(jobs)
    assert not re.search(r"P\d{3}|SYN-[A-C]-", log)
