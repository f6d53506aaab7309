"""Issue 14: real cohort tables import without hand edits; each 'Why' has a test.

Every table is written here, small, with what the real 36-arm table had: messy
RECIST, pooled treatment classes, comment lines, NA spellings, one joined file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cli
from data import schema
from data.bundle import load_bundle
from data.errors import DataError
from data.importers import clinical, recode
from data.importers.reading import read_table_bytes
from tests.data.importers.helpers import tree_hash

LM22_ZERO = {
    "B cells naive": 0.05, "B cells memory": 0.02, "Plasma cells": 0.03,
    "T cells CD4 naive": 0.0, "T cells CD4 memory resting": 0.15,
    "T cells CD4 memory activated": 0.01, "T cells follicular helper": 0.04,
    "T cells regulatory (Tregs)": 0.03, "T cells gamma delta": 0.0, "Monocytes": 0.02,
    "Macrophages M0": 0.1, "Macrophages M1": 0.05, "Macrophages M2": 0.2,
    "Dendritic cells resting": 0.01, "Dendritic cells activated": 0.0,
    "Mast cells resting": 0.04, "Mast cells activated": 0.0, "Eosinophils": 0.0,
    "Neutrophils": 0.0,
}  # fmt: skip


def run(data_dir: Path, capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--data-dir", str(data_dir), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def table(tmp_path: Path, text: str, name: str = "t.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ------------------------------------------------------------------------ readers


def test_comment_and_title_lines_before_the_header_are_skipped_and_said():
    # Why: a `#` line or a title line gave pandas' "Expected 1 fields in line 3"
    text = (
        "# exported 2024-05-01, see methods\n"
        "Supplementary Table S3 clinical data\n"
        "id,cancer,drug,BOR\n"
        "A,melanoma,nivolumab,PR\n"
        "B,melanoma,nivolumab,PD\n"
    )
    frame = read_table_bytes(text.encode(), file="s3.csv")
    assert list(frame.columns) == ["id", "cancer", "drug", "BOR"]
    assert frame["id"].tolist() == ["A", "B"]
    assert "header found on line 3 of s3.csv" in frame.attrs["read_notes"][0]


def _workbook(sheets: dict[str, pd.DataFrame]) -> bytes:
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False)
    return buffer.getvalue()


def test_xlsx_sheet_is_chosen_with_sheet_and_the_sheets_are_listed(tmp_path):
    # Why: .xlsx read the first sheet only and never said so
    raw = _workbook(
        {
            "README": pd.DataFrame({"note": ["see sheet 2"]}),
            "clinical": pd.DataFrame(
                {"id": ["A", "B"], "cancer": ["RCC", "RCC"], "drug": ["nivo"] * 2}
            ),
        }
    )
    first = read_table_bytes(raw, file="w.xlsx")
    assert (
        "read sheet `README` of 2 (`README`, `clinical`)"
        in (first.attrs["read_notes"][0])
    )
    path = tmp_path / "w.xlsx"
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        clinical.import_clinical(path, mapping={"sample_id": "id"})
    assert "--sheet" in str(err.value) or "sheet" in str(err.value)
    cohort, report = clinical.import_clinical(
        path,
        mapping={"sample_id": "id", "tumor_type": "cancer", "treatment": "drug"},
        sheet="clinical",
    )
    assert cohort["treatment"].tolist() == ["anti-PD-1", "anti-PD-1"]
    assert any("read sheet `clinical`" in n for n in report.notes)
    with pytest.raises(DataError) as err:
        read_table_bytes(raw, file="w.xlsx", sheet="Clin")
    assert "its sheets are `README`, `clinical`" in str(err.value)


@pytest.mark.parametrize("marker", ["#N/A", "n.a.", "NA", "N/A", "", "not reported"])
def test_one_na_vocabulary_across_columns(marker):
    # Why: `#N/A` and `n.a.` were refused while `N/A` was missing
    raw = pd.DataFrame(
        {
            "id": ["A", "B", "C"],
            "cancer": ["RCC"] * 3,
            "drug": ["nivolumab"] * 3,
            "BOR": ["PR", marker, "SD"],
            "OS_months": ["10", marker, "3"],
            "OS_event": ["1", marker, "0"],
        }
    )
    cohort, _ = clinical.build_cohort(
        raw,
        file="t.csv",
        mapping={"sample_id": "id", "recist": "BOR", "os_event": "OS_event"},
    )
    row = cohort.set_index("sample_id").loc["B"]
    assert row["recist"] == "" and np.isnan(row["os_months"])
    assert np.isnan(row["os_event"])


def test_event_without_time_is_a_warning_naming_the_rows():
    # Why: an event without a time was accepted silently
    raw = pd.DataFrame(
        {
            "id": ["A", "B", "C", "D"],
            "cancer": ["RCC"] * 4,
            "drug": ["nivolumab"] * 4,
            "OS_months": ["10", "", "3", "n.a."],
            "OS_event": ["1", "1", "0", "0"],
        }
    )
    _, report = clinical.build_cohort(
        raw, file="t.csv", mapping={"sample_id": "id", "os_event": "OS_event"}
    )
    lonely = [w for w in report.warnings if "event indicator but no time" in w.message]
    assert len(lonely) == 1 and lonely[0].rows == (3, 5)
    assert lonely[0].column == "OS_event"


def test_duplicate_ids_message_names_the_file(tmp_path, capsys):
    # Why: the duplicate-id message did not say which file
    clin = table(tmp_path, "id,cancer,drug\nA,RCC,nivo\nB,RCC,nivo\n", "clin.csv")
    lm22 = ",".join(["Mixture", *LM22_ZERO, "T cells CD8", "NK cells resting",
                     "NK cells activated"])  # fmt: skip
    row = ",".join(map(str, [*LM22_ZERO.values(), 0.2, 0.01, 0.01]))
    cib = table(tmp_path, f"{lm22}\nA,{row}\nA,{row}\n", "ciber.csv")
    data_dir = tmp_path / "datasets"
    code, _, err = run(
        data_dir, capsys, "import", "cibersort", "--file", cib, "--clinical", clin,
        "--name", "x", "--map", "sample_id=id",
    )  # fmt: skip
    assert code == 1 and err.startswith("ERROR ciber.csv, column `Mixture`")
    assert "duplicated sample id(s) A" in err and not data_dir.exists()


# ----------------------------------------------------------------------- recodes


def messy_recist() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"S{i}" for i in range(8)],
            "cancer": ["melanoma"] * 8,
            "drug": ["PD-1/PD-L1"] * 8,
            "BOR": ["PD*", "mixed", "Only scanned at baseline", "PD ", "pr", "CR",
                    "mixed", "SD"],
            "Timing": ["pre", "pre", "pre", "pre", "pre", "baseline", "weird", "pre"],
        }
    )  # fmt: skip


def test_unknown_values_of_every_column_are_refused_once_with_recode_lines():
    # Why: `mixed` and `Only scanned at baseline` were refused with no way to map
    # them except editing the file
    with pytest.raises(DataError) as err:
        clinical.build_cohort(
            messy_recist(),
            file="t.csv",
            mapping={"sample_id": "id", "recist": "BOR", "timepoint": "Timing"},
        )
    text = str(err.value)
    assert len(err.value.problems) == 2  # recist and timepoint, in one refusal
    assert "`mixed` (2 rows)" in text and "`Only scanned at baseline` (1 row)" in text
    assert "--recode BOR:mixed=" in text
    assert "--recode 'BOR:Only scanned at baseline='" in text
    assert "`weird` (1 row)" in text and "--recode Timing:weird=pre" in text
    assert "PD*" not in text  # footnote marks are not unknown values


def test_recode_maps_values_and_footnotes_spaces_case_are_counted():
    # Why: `PD ` (trailing space) was silently trimmed
    raw = messy_recist()
    raw.attrs["trimmed"] = {"BOR": {"PD ": 1}}
    rules = recode.parse_recodes(
        ["BOR:mixed=", "BOR:Only scanned at baseline=NE", "timepoint:weird=on"]
    )
    cohort, report = clinical.build_cohort(
        raw,
        file="t.csv",
        mapping={"sample_id": "id", "recist": "BOR", "timepoint": "Timing"},
        recodes=rules,
    )
    assert cohort["recist"].tolist() == ["PD", "", "NE", "PD", "PR", "CR", "", "SD"]
    assert cohort["timepoint"].tolist()[6] == "on"
    notes = "\n".join(report.notes)
    assert "recist: `mixed` -> missing in 2 row(s) (--recode)" in notes
    assert "1 footnote mark(s) removed (`PD*` x1)" in notes
    assert "1 cell(s) with surrounding spaces trimmed (`PD ` x1)" in notes
    assert "recist: 1 cell(s) normalized for case (`pr` x1)" in notes


def test_recode_on_the_command_line_and_a_malformed_rule(tmp_path, capsys):
    clin = table(
        tmp_path,
        "id,cancer,drug,BOR\nA,RCC,nivolumab,mixed\nB,RCC,nivolumab,PD \n",
    )
    data_dir = tmp_path / "datasets"
    code, out, _ = run(
        data_dir, capsys, "import", "clinical", "--file", clin, "--name", "x",
        "--map", "sample_id=id,recist=BOR", "--recode", "BOR:mixed=SD",
    )  # fmt: skip
    assert code == 0, out
    assert load_bundle(data_dir / "x").cohort["recist"].tolist() == ["SD", "PD"]
    assert "`PD ` x1" in out
    before = tree_hash(data_dir)
    code, _, err = run(
        data_dir, capsys, "import", "clinical", "--file", clin, "--name", "y",
        "--recode", "BOR-mixed-SD",
    )  # fmt: skip
    assert code == 1 and "COLUMN:VALUE=CODE" in err and tree_hash(data_dir) == before


# --------------------------------------------------------------------- treatment


def test_pooled_classes_and_drug_names_in_one_column():
    raw = pd.DataFrame(
        {
            "id": list("ABCDEFGH"),
            "cancer": ["NSCLC"] * 8,
            "drug": ["PD-1/PD-L1", "PD-(L)1", "anti-PD-(L)1", "ICI", "IO",
                     "IO+combo", "CTLA-4 + PD-1", "cemiplimab"],
        }
    )  # fmt: skip
    cohort, _ = clinical.build_cohort(raw, file="t.csv", mapping={"sample_id": "id"})
    assert cohort["treatment"].tolist() == [
        "anti-PD-(L)1", "anti-PD-(L)1", "anti-PD-(L)1", "ICB, unspecified",
        "ICB, unspecified", "ICB + other agent", "anti-PD-1 + anti-CTLA-4",
        "anti-PD-1",
    ]  # fmt: skip
    assert "other" not in set(cohort["treatment"])
    assert set(cohort["treatment"]) <= set(schema.TREATMENTS)


# ------------------------------------------------------------- CIBERSORT, labels


def _lm22_table(ids: list[str], *, scale: list[float], id_column: str) -> str:
    names = [*LM22_ZERO, "T cells CD8", "NK cells resting", "NK cells activated"]
    values = [*LM22_ZERO.values(), 0.2, 0.01, 0.01]
    lines = [",".join([id_column, "sample_id", "Cancer", "drug", *names, "P-value"])]
    for i, (sid, factor) in enumerate(zip(ids, scale, strict=True)):
        cells = ",".join(f"{v * factor:g}" for v in values)
        # `sample_id` here is a lab code, not the id: the reader must follow --map
        lines.append(f"{sid},lab{i},RCC,nivolumab,{cells},0.{i + 1}")
    return "\n".join(lines) + "\n"


def test_one_joined_file_is_both_clinical_and_cibersort_with_map(tmp_path, capsys):
    # Why: the CIBERSORT reader took a column named sample_id regardless of --map;
    # and one cohort in percent was noted as "absolute-mode scores rescaled"
    path = table(
        tmp_path,
        _lm22_table(["A", "B", "C"], scale=[1, 100, 1], id_column="Patient"),
    )
    data_dir = tmp_path / "datasets"
    code, out, err = run(
        data_dir, capsys, "import", "cibersort", "--file", path, "--clinical", path,
        "--name", "joined", "--map", "sample_id=Patient",
    )  # fmt: skip
    assert code == 0, err
    cohort = load_bundle(data_dir / "joined").cohort
    assert cohort["sample_id"].tolist() == ["A", "B", "C"]
    np.testing.assert_allclose(cohort["frac_nk"], [0.02, 0.02, 0.02])
    np.testing.assert_allclose(cohort[schema.CIBERSORT_P], [0.1, 0.2, 0.3])
    assert "sample ids from `Patient`" in out
    assert "1 of 3 rows hold percentages" in out and "absolute-mode" not in out
    assert "the other 2 rows already held fractions" in out


def test_metric_labels_follow_the_fraction_source():
    # Why: CIBERSORT relative fractions were labelled "fraction of CD45+ cells"
    from analysis.nk_metrics import available_metrics

    base = pd.DataFrame({"frac_nk": [0.1, 0.0], "frac_cd8": [0.2, 0.3]})
    cases = {
        "cibersort_relative": "fraction of LM22 immune cells (CIBERSORT relative)",
        "cibersortx_absolute": "CIBERSORTx absolute score",
        "counts": "fraction of CD45+ cells (flow/sc counts)",
    }
    for source, text in cases.items():
        labels = {
            m.key: m.label
            for m in available_metrics(base.assign(**{schema.FRACTION_SOURCE: source}))
        }
        assert text in labels["frac_nk"]
    assert available_metrics(base)[0].label == "NK cells, fraction of CD45+ cells"
    score = available_metrics(base.assign(score_NK_sig=[1.0, 2.0]))[-1]
    assert score.label == "NK sig (score, not a fraction)"


# ------------------------------------------------------------------ interruption


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_interrupted_import_prints_one_line_and_leaves_nothing(
    tmp_path, capsys, monkeypatch, signame
):
    # Why: SIGTERM left a hidden .NAME-import-* folder; Ctrl-C printed a traceback
    import os
    import signal

    from data.importers import store

    clin = table(tmp_path, "id,cancer,drug\nA,RCC,nivolumab\nB,RCC,nivolumab\n")
    data_dir = tmp_path / "datasets"
    data_dir.mkdir()

    def killed(path):  # the signal arrives while the bundle is being written
        os.kill(os.getpid(), getattr(signal, signame))
        raise AssertionError("the signal should have stopped the import")

    monkeypatch.setattr(store, "load_bundle", killed)
    code, out, err = run(
        data_dir, capsys, "import", "clinical", "--file", clin, "--name", "x",
        "--map", "sample_id=id",
    )  # fmt: skip
    assert code == 128 + getattr(signal, signame)
    assert err.count("\n") == 1 and f"Import interrupted ({signame})" in err
    assert "Traceback" not in err + out
    assert list(data_dir.iterdir()) == []


def test_stale_import_folders_of_dead_imports_are_removed(tmp_path, capsys):
    import os
    import subprocess
    import time

    data_dir = tmp_path / "datasets"
    data_dir.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    old = time.time() - 3600
    stale = data_dir / ".big-import-abc123"  # left by a killed import (36 MB)
    stale.mkdir()
    (stale / "cohort.csv").write_text("x")
    (stale / ".import-owner").write_text(f"{dead.pid}\n")
    legacy = data_dir / ".other-import-zzz"  # from before owner files
    legacy.mkdir()
    running = data_dir / ".busy-import-def456"  # another import, still running
    running.mkdir()
    (running / ".import-owner").write_text(f"{os.getppid()}\n")
    for path in (stale, legacy, running):
        os.utime(path, (old, old))
    clin = table(tmp_path, "id,cancer,drug\nA,RCC,nivolumab\n")
    code, _, err = run(
        data_dir, capsys, "import", "clinical", "--file", clin, "--name", "x",
        "--map", "sample_id=id",
    )  # fmt: skip
    assert code == 0, err
    names = sorted(p.name for p in data_dir.iterdir())
    assert names == [".busy-import-def456", "x"]
    assert not (data_dir / "x" / ".import-owner").exists()
