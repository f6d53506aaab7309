"""Malformed input: each case gives a message naming file, column, row and fix, and
leaves the data directory byte-for-byte as it was (hash of the whole tree)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cli
from tests.conftest import small_cohort, write_bundle
from tests.data.importers.helpers import (
    CLINICAL_HEADER,
    CLINICAL_MAP,
    cibersort_frame,
    clinical_text,
    make_adata,
    tree_hash,
)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A data directory holding one valid dataset `existing` (ids A-P1-pre, ...)."""
    folder = tmp_path / "datasets"
    write_bundle(folder / "existing", small_cohort())
    return folder


def fails(data_dir: Path, capsys, *argv: str) -> str:
    """Run the CLI, expect exit 1 and an unchanged data dir; return stderr."""
    before = tree_hash(data_dir)
    capsys.readouterr()  # drop what writing the test input printed or logged
    code = cli.main([*argv, "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    assert tree_hash(data_dir) == before, "a failed import changed DATA_DIR"
    return err


def clinical(tmp_path, content, name="clinical.csv") -> str:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def import_clinical(data_dir, capsys, path, *extra) -> str:
    return fails(
        data_dir,
        capsys,
        "import",
        "clinical",
        "--file",
        path,
        "--name",
        "new",
        "--map",
        CLINICAL_MAP,
        *extra,
    )


# ---------------------------------------------------------------- text tables


def test_empty_file(tmp_path, data_dir, capsys):
    err = import_clinical(data_dir, capsys, clinical(tmp_path, b""))
    assert "clinical.csv" in err and "empty" in err and "Fix:" in err


def test_binary_garbage(tmp_path, data_dir, capsys):
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))
    err = import_clinical(data_dir, capsys, clinical(tmp_path, b"\x00" + garbage))
    assert "clinical.csv" in err and "binary" in err and "CSV" in err


def test_legacy_xls(tmp_path, data_dir, capsys):
    path = clinical(tmp_path, b"\xd0\xcf\x11\xe0" + b"\x01" * 600, "old.xls")
    err = import_clinical(data_dir, capsys, path)
    assert "old.xls" in err and ".xlsx" in err


def test_non_utf8_text_names_the_line(tmp_path, data_dir, capsys):
    text = clinical_text().replace("P3,melanoma", "P3,mélanome").encode("latin-1")
    err = import_clinical(data_dir, capsys, clinical(tmp_path, text))
    assert "not UTF-8" in err and "row 4" in err and "CSV UTF-8" in err


def test_wrong_delimiter(tmp_path, data_dir, capsys):
    text = clinical_text().replace(",", "|")
    err = import_clinical(data_dir, capsys, clinical(tmp_path, text))
    assert "only one column" in err and "'|'" in err and "row 1" in err


def test_decimal_commas(tmp_path, data_dir, capsys):
    text = clinical_text(
        [
            "P1;melanoma;Nivolumab;CR;300;0;0,05;0,3",
            "P2;melanoma;Nivolumab;PD;1;1;0,1;0,2",
        ],
        header=CLINICAL_HEADER.replace(",", ";"),
    )
    err = import_clinical(data_dir, capsys, clinical(tmp_path, text))
    assert "`NK_pct`" in err and "rows 2, 3" in err and "decimal" in err


def test_header_without_rows(tmp_path, data_dir, capsys):
    err = import_clinical(data_dir, capsys, clinical(tmp_path, CLINICAL_HEADER))
    assert "no rows" in err and "Fix:" in err


def test_duplicated_column_names(tmp_path, data_dir, capsys):
    header = CLINICAL_HEADER.replace("CD8_pct", "NK_pct")
    err = import_clinical(
        data_dir, capsys, clinical(tmp_path, clinical_text(header=header))
    )
    assert "`NK_pct`" in err and "2 times" in err and "row 1" in err


def test_mapped_column_missing(tmp_path, data_dir, capsys):
    header = CLINICAL_HEADER.replace("BOR", "best_response")
    err = import_clinical(
        data_dir, capsys, clinical(tmp_path, clinical_text(header=header))
    )
    assert "`BOR`" in err and "`recist`" in err and "best_response" in err


def test_required_column_unmapped(tmp_path, data_dir, capsys):
    path = clinical(tmp_path, "patient,drug\nP1,nivolumab\nP2,nivolumab\n")
    err = fails(data_dir, capsys, "import", "clinical", "--file", path, "--name", "x")
    assert "`tumor_type`" in err and "--set tumor_type=" in err


def test_duplicated_ids(tmp_path, data_dir, capsys):
    rows = [r.replace("P2,", "P1,") for r in clinical_text().splitlines()[1:]]
    err = import_clinical(data_dir, capsys, clinical(tmp_path, clinical_text(rows)))
    assert "`patient`" in err and "duplicated" in err and "rows 2, 3" in err


def test_empty_ids(tmp_path, data_dir, capsys):
    rows = clinical_text().splitlines()[1:]
    rows[2] = rows[2].replace("P3", "")
    err = import_clinical(data_dir, capsys, clinical(tmp_path, clinical_text(rows)))
    assert "`patient`" in err and "row 4" in err and "empty" in err


def test_infinite_fraction(tmp_path, data_dir, capsys):
    rows = clinical_text().splitlines()[1:]
    rows[1] = rows[1].replace(",12,", ",inf,")
    err = import_clinical(data_dir, capsys, clinical(tmp_path, clinical_text(rows)))
    assert "`NK_pct`" in err and "row 3" in err and "infinite" in err


def test_negative_fraction(tmp_path, data_dir, capsys):
    rows = [
        "P1,melanoma,Nivolumab,CR,300,0,-0.05,0.3",
        "P2,melanoma,Nivolumab,PD,1,1,0.1,0.2",
    ]
    err = import_clinical(data_dir, capsys, clinical(tmp_path, clinical_text(rows)))
    assert (
        "NK_pct" in err and "row 2" in err and "out of range" in err and "[0, 1]" in err
    )


def test_fraction_above_100(tmp_path, data_dir, capsys):
    rows = [
        "P1,melanoma,Nivolumab,CR,300,0,150,30",
        "P2,melanoma,Nivolumab,PD,1,1,10,20",
    ]
    err = import_clinical(data_dir, capsys, clinical(tmp_path, clinical_text(rows)))
    assert "`NK_pct`" in err and "row 2:" in err and "above 100" in err


def test_percentages_mixed_with_fractions(tmp_path, data_dir, capsys):
    rows = clinical_text().splitlines()[1:]
    rows[2] = "P3,melanoma,Nivolumab,PR,400,0,0.03,0.25"
    err = import_clinical(data_dir, capsys, clinical(tmp_path, clinical_text(rows)))
    assert "mixes percentages and fractions" in err and "row 4" in err
    assert "NK_pct, CD8_pct" in err and "multiply" in err


def test_unknown_response_value(tmp_path, data_dir, capsys):
    path = clinical(
        tmp_path, "id,cancer,drug,resp\nA,RCC,nivolumab,R\nB,RCC,nivolumab,maybe\n"
    )
    err = fails(
        data_dir,
        capsys,
        "import",
        "clinical",
        "--file",
        path,
        "--name",
        "x",
        "--map",
        "tumor_type=cancer,response=resp",
    )
    assert (
        "`resp`" in err
        and "row 3" in err
        and "`maybe`" in err
        and "R (responder)" in err
    )


def test_recist_column_holding_responder_status(tmp_path, data_dir, capsys):
    path = clinical(
        tmp_path, "id,cancer,drug,bor\nA,RCC,nivolumab,R\nB,RCC,nivolumab,NR\n"
    )
    err = fails(
        data_dir,
        capsys,
        "import",
        "clinical",
        "--file",
        path,
        "--name",
        "x",
        "--map",
        "tumor_type=cancer,recist=bor",
    )
    assert "`bor`" in err and "rows 2, 3" in err and "--map response=bor" in err


def test_unknown_treatment(tmp_path, data_dir, capsys):
    # chemotherapy alone is known (class `other`); a made-up name is not
    path = clinical(tmp_path, "id,cancer,drug\nA,RCC,nivolumab\nB,RCC,herbal tea\n")
    err = fails(
        data_dir,
        capsys,
        "import",
        "clinical",
        "--file",
        path,
        "--name",
        "x",
        "--map",
        "tumor_type=cancer,treatment=drug",
    )
    assert (
        "`drug`" in err
        and "row 3" in err
        and "`herbal tea` (1 row)" in err
        and "--recode 'drug:herbal tea=other'" in err
    )


def test_negative_survival(tmp_path, data_dir, capsys):
    rows = clinical_text().splitlines()[1:]
    rows[0] = rows[0].replace(",300,", ",-30,")
    err = import_clinical(data_dir, capsys, clinical(tmp_path, clinical_text(rows)))
    assert "`OS_days`" in err and "row 2" in err and "negative" in err


def test_unknown_event_code(tmp_path, data_dir, capsys):
    rows = clinical_text().splitlines()[1:]
    rows[3] = rows[3].replace(",200,1,", ",200,perhaps,")
    err = import_clinical(data_dir, capsys, clinical(tmp_path, clinical_text(rows)))
    assert "`OS_status`" in err and "row 5" in err and "recode it as 1" in err


def test_bad_mapping_syntax(tmp_path, data_dir, capsys):
    err = fails(
        data_dir,
        capsys,
        "import",
        "clinical",
        "--file",
        clinical(tmp_path, clinical_text()),
        "--name",
        "x",
        "--map",
        "sample_id",
    )
    assert "target=source" in err


def test_mapping_to_unknown_bundle_column(tmp_path, data_dir, capsys):
    err = fails(
        data_dir,
        capsys,
        "import",
        "clinical",
        "--file",
        clinical(tmp_path, clinical_text()),
        "--name",
        "x",
        "--map",
        "age=patient",
    )
    assert "`age` is not a bundle column" in err


def test_missing_file(tmp_path, data_dir, capsys):
    err = import_clinical(data_dir, capsys, str(tmp_path / "nope.csv"))
    assert "nope.csv" in err and "does not exist" in err


@pytest.mark.parametrize(
    "name", ["../../etc", "/etc/passwd", "a/b", ".hidden", "x" * 65, "..", "a..b", " "]
)
def test_hostile_dataset_names(tmp_path, data_dir, capsys, name):
    err = fails(
        data_dir,
        capsys,
        "import",
        "clinical",
        "--file",
        clinical(tmp_path, clinical_text()),
        "--name",
        name,
        "--map",
        CLINICAL_MAP,
    )
    assert "not a valid dataset name" in err
    assert not (tmp_path / "etc").exists()


def test_existing_dataset_needs_force(tmp_path, data_dir, capsys):
    err = fails(
        data_dir,
        capsys,
        "import",
        "clinical",
        "--file",
        clinical(tmp_path, clinical_text()),
        "--name",
        "existing",
        "--map",
        CLINICAL_MAP,
    )
    assert "already exists" in err and "--force" in err


# ---------------------------------------------------------------- CIBERSORT


def _cibersort(tmp_path, frame, name="ciber.txt") -> str:
    path = tmp_path / name
    frame.to_csv(path, sep="\t", index=False)
    return str(path)


def test_cibersort_ids_match_no_clinical_row(tmp_path, data_dir, capsys):
    path = _cibersort(tmp_path, cibersort_frame(["S1", "S2", "S3"]))
    err = fails(
        data_dir, capsys, "import", "cibersort", "--file", path, "--name", "existing"
    )
    assert "ciber.txt" in err and "none of its 3 sample ids match" in err
    assert "S1" in err and "A-P1-pre" in err and "Fix:" in err


def test_cibersort_without_nk_columns(tmp_path, data_dir, capsys):
    frame = cibersort_frame(["A-P1-pre", "A-P2-pre"]).drop(columns=["NK cells resting"])
    path = _cibersort(tmp_path, frame)
    err = fails(
        data_dir, capsys, "import", "cibersort", "--file", path, "--name", "existing"
    )
    assert "NK cells resting" in err and "missing" in err and "22 LM22" in err


def test_cibersort_file_is_not_cibersort(tmp_path, data_dir, capsys):
    path = clinical(tmp_path, "sample,foo,bar\nA-P1-pre,1,2\n", "scores.csv")
    err = fails(
        data_dir, capsys, "import", "cibersort", "--file", path, "--name", "existing"
    )
    assert "scores.csv" in err and "no LM22" in err


def test_cibersort_into_missing_dataset(tmp_path, data_dir, capsys):
    path = _cibersort(tmp_path, cibersort_frame(["A-P1-pre"]))
    err = fails(
        data_dir, capsys, "import", "cibersort", "--file", path, "--name", "nope"
    )
    assert "no dataset `nope`" in err and "--clinical" in err


def test_cibersort_negative_fraction(tmp_path, data_dir, capsys):
    frame = cibersort_frame(["A-P1-pre", "A-P2-pre"])
    frame.loc[1, "T cells CD8"] = -0.2
    err = fails(
        data_dir,
        capsys,
        "import",
        "cibersort",
        "--file",
        _cibersort(tmp_path, frame),
        "--name",
        "existing",
    )
    assert "T cells CD8" in err and "row 3" in err and "negative" in err


# --------------------------------------------------------------- expression


def test_expression_with_ensembl_ids(tmp_path, data_dir, capsys):
    path = clinical(
        tmp_path,
        "gene,A-P1-pre,A-P2-pre,A-P3-pre\nENSG00000153563,1,2,3\nENSG00000172116,2,3,1\n",
        "expr.csv",
    )
    err = fails(
        data_dir, capsys, "import", "expression", "--file", path, "--name", "existing"
    )
    assert "expr.csv" in err and "Ensembl" in err and "gene_name" in err


def test_expression_non_numeric(tmp_path, data_dir, capsys):
    path = clinical(
        tmp_path,
        "gene,A-P1-pre,A-P2-pre,A-P3-pre\nCD8A,1,2,3\nNKG7,2,high,1\n",
        "expr.csv",
    )
    err = fails(
        data_dir, capsys, "import", "expression", "--file", path, "--name", "existing"
    )
    assert "`A-P2-pre`" in err and "row 3" in err and "`high`" in err


# ------------------------------------------------------------------- h5ad


def _h5ad(tmp_path, adata, name="cells.h5ad") -> str:
    path = tmp_path / name
    adata.write_h5ad(path)
    return str(path)


def test_h5ad_without_patient_column(tmp_path, data_dir, capsys):
    adata = make_adata()
    adata.obs = adata.obs.rename(columns={"patient": "who"})
    err = fails(
        data_dir,
        capsys,
        "import",
        "h5ad",
        "--file",
        _h5ad(tmp_path, adata),
        "--name",
        "sc",
        "--set",
        "tumor_type=melanoma",
    )
    assert "cells.h5ad" in err and "obs.patient_id" in err and "`who`" in err


def test_h5ad_with_ensembl_ids_and_no_symbols(tmp_path, data_dir, capsys):
    err = fails(
        data_dir,
        capsys,
        "import",
        "h5ad",
        "--file",
        _h5ad(tmp_path, make_adata(ensembl=True)),
        "--name",
        "sc",
        "--map",
        "cd8_state=state",
        "--set",
        "tumor_type=melanoma",
    )
    assert "Ensembl ids" in err and "var_names" in err and "gene_symbols" in err


def test_h5ad_with_raw_counts(tmp_path, data_dir, capsys):
    err = fails(
        data_dir,
        capsys,
        "import",
        "h5ad",
        "--file",
        _h5ad(tmp_path, make_adata(raw_counts=True)),
        "--name",
        "sc",
        "--map",
        "cd8_state=state",
        "--set",
        "tumor_type=melanoma",
    )
    assert "raw counts" in err and "column `X`" in err and "--prepare" in err


def test_h5ad_without_umap(tmp_path, data_dir, capsys):
    err = fails(
        data_dir,
        capsys,
        "import",
        "h5ad",
        "--file",
        _h5ad(tmp_path, make_adata(umap=False)),
        "--name",
        "sc",
        "--map",
        "cd8_state=state",
        "--set",
        "tumor_type=melanoma",
    )
    assert "obsm.X_umap" in err and "no UMAP" in err and "prepare" in err


def test_h5ad_that_is_not_h5ad(tmp_path, data_dir, capsys):
    path = clinical(tmp_path, b"\x89HDF\r\n\x1a\n" + b"\x00" * 300, "broken.h5ad")
    err = fails(data_dir, capsys, "import", "h5ad", "--file", path, "--name", "sc")
    assert "broken.h5ad" in err and "cannot be read" in err and "write_h5ad" in err


def test_h5ad_response_differs_within_a_sample(tmp_path, data_dir, capsys):
    adata = make_adata()
    adata.obs.loc["cell0", "response"] = "Non-responder"
    err = fails(
        data_dir,
        capsys,
        "import",
        "h5ad",
        "--file",
        _h5ad(tmp_path, adata),
        "--name",
        "sc",
        "--map",
        "cd8_state=state,response=response",
        "--set",
        "tumor_type=x",
    )
    assert "obs.response" in err and "`Pt1`" in err and "per-sample" in err


def test_prepare_refuses_to_overwrite_its_input(tmp_path, data_dir, capsys):
    path = _h5ad(tmp_path, make_adata())
    before = Path(path).read_bytes()
    err = fails(data_dir, capsys, "prepare", "--file", path, "--out", path)
    assert "never modifies its input" in err
    assert Path(path).read_bytes() == before


def test_nan_as_an_id(tmp_path, data_dir, capsys):
    rows = clinical_text().splitlines()[1:]
    rows[1] = rows[1].replace("P2,", "NaN,", 1)
    err = import_clinical(data_dir, capsys, clinical(tmp_path, clinical_text(rows)))
    assert "`patient`" in err and "row 3" in err and "empty" in err


def test_xlsx_with_duplicated_columns(tmp_path, data_dir, capsys):
    import pandas as pd

    frame = pd.DataFrame([["P1", "melanoma", "5", "6"]])
    frame.columns = ["patient", "cancer", "NK_pct", "NK_pct"]
    path = tmp_path / "book.xlsx"
    frame.to_excel(path, index=False)
    err = import_clinical(data_dir, capsys, str(path))
    assert "book.xlsx" in err and "`NK_pct`" in err and "more than once" in err
