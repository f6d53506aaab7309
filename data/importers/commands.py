"""The ``import`` and ``prepare`` commands (argument parsing lives in ``cli.py``).

Each returns an exit code and prints what was mapped; every problem is a
:class:`data.errors.DataError` that ``cli.main`` prints as a message, never a
traceback. Nothing is written to the data directory unless the whole import
succeeds (see :mod:`data.importers.store`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd

from data import schema
from data.errors import DataError, Problem
from data.importers import clinical, recode, store
from data.importers.report import ImportReport
from data.registry import check_dataset_name

KINDS = ("clinical", "cibersort", "expression", "h5ad")


def _mapping(args: argparse.Namespace) -> dict[str, str]:
    mapping: dict[str, str] = {}
    if getattr(args, "map_file", None):
        mapping.update(clinical.read_mapping_file(args.map_file))
    mapping.update(clinical.parse_mapping(args.map))
    return mapping


def _base_cohort(
    args: argparse.Namespace, data_dir: Path, report: ImportReport
) -> tuple[pd.DataFrame, bool, list[str]]:
    """Cohort to join to: from --clinical, else the existing dataset --name."""
    if args.clinical:
        cohort, clinical_report = clinical.import_clinical(
            args.clinical,
            mapping=_mapping(args),
            constants=clinical.parse_constants(args.set),
            cohort_name=args.cohort or args.name,
            time_unit=args.time_unit,
            scores=args.scores or (),
            sheet=args.sheet,
            recodes=recode.parse_recodes(args.recode),
        )
        report.notes.append(f"clinical table {Path(args.clinical).name}:")
        # frac_nk/frac_cd8 are filled by the next step and validated again there
        filled = schema.REQUIRED_FRACTIONS
        report.notes += [n for n in clinical_report.notes if not n.startswith(filled)]
        report.warnings += [
            w for w in clinical_report.warnings if w.column not in filled
        ]
        return cohort, False, [Path(args.clinical).name]
    # --map sample_id=COLUMN also names the id column of the CIBERSORT file
    if set(_mapping(args)) - {"sample_id"} or args.set:
        raise DataError(
            Problem(
                file="--map",
                message="--map/--set apply to the clinical table, and none was given.",
                fix="give it with --clinical FILE, or import it first with "
                "`python cli.py import clinical`.",
            )
        )
    return store.existing_cohort(data_dir, args.name), True, []


class ImportInterrupted(BaseException):
    """SIGTERM/SIGINT during an import (a BaseException, like KeyboardInterrupt,
    so no ``except Exception`` swallows it before the temporary folder is gone)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _interruptible():
    """Turn SIGTERM and SIGINT into :class:`ImportInterrupted` while importing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise ImportInterrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, previous in old.items():
            signal.signal(signum, previous)


def run_import(args: argparse.Namespace, data_dir: Path) -> int:
    """Import one file as (or into) dataset ``args.name``; print the report.

    SIGTERM or Ctrl-C stops it with one line on stderr (exit 128 + signal), no
    traceback and no folder left behind.
    """
    started = time.time()
    try:
        with _interruptible():
            return _run_import(args, data_dir, started)
    except (ImportInterrupted, KeyboardInterrupt) as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(
            f"Import interrupted ({signal.Signals(signum).name}): stopped; no partial "
            f"dataset was left in {data_dir}.",
            file=sys.stderr,
        )
        return 128 + int(signum)


def _run_import(args: argparse.Namespace, data_dir: Path, started: float) -> int:
    name = check_dataset_name(args.name)
    source = Path(args.file)
    report = ImportReport()
    files = [source.name]
    keep_cells = None
    cells = None
    adding = False
    existing = data_dir / name
    if args.kind == "clinical":
        cohort, found = clinical.import_clinical(
            source,
            mapping=_mapping(args),
            constants=clinical.parse_constants(args.set),
            cohort_name=args.cohort or name,
            time_unit=args.time_unit,
            scores=args.scores or (),
            sheet=args.sheet,
            recodes=recode.parse_recodes(args.recode),
            fraction_source=args.fraction_source,
        )
        report.extend(found)
    elif args.kind in ("cibersort", "expression"):
        from data.importers import deconvolution

        base, adding, more = _base_cohort(args, data_dir, report)
        files = list(dict.fromkeys(more + files))  # one joined file: once
        if args.kind == "cibersort":
            cohort, found = deconvolution.import_cibersort(
                source,
                base,
                scores=args.scores or (),
                sample_column=_mapping(args).get("sample_id"),
                sheet=args.sheet,
            )
        else:
            cohort, found = deconvolution.import_expression(source, base)
        report.extend(found)
        if adding:
            keep_cells = existing / "cd8_cells.h5ad"
    else:
        from data.importers.singlecell import import_h5ad

        if args.clinical:
            raise DataError(
                Problem(
                    file="--clinical",
                    message="h5ad imports take clinical fields from obs, or add the "
                    "cells to a dataset imported before.",
                    fix=f"run `python cli.py import clinical --name {name} ...` first, "
                    f"then `python cli.py import h5ad --add --name {name} ...`.",
                )
            )
        base = None
        if args.add:
            base, adding = store.existing_cohort(data_dir, name), True
        mapping = dict(clinical.parse_mapping(args.map))
        cohort, cells, found = import_h5ad(
            source,
            mapping=mapping,
            constants=clinical.parse_constants(args.set),
            cohort_name=args.cohort or name,
            cells=args.cells,
            cohort=base,
            prepare=args.prepare,
            progress=print,
        )
        report.extend(found)
    base_meta = store.existing_meta(data_dir, name) if adding else None
    meta = store.make_meta(
        name,
        title=args.title,
        source=args.source,
        license=args.license,
        files=files,
        report=report,
        base=base_meta,
    )
    if (
        schema.TIMEPOINT_NOTE in cohort
        and (cohort[schema.TIMEPOINT_NOTE] == schema.TIMEPOINT_ASSUMED).any()
    ):
        n = int((cohort[schema.TIMEPOINT_NOTE] == schema.TIMEPOINT_ASSUMED).sum())
        meta["timepoint"] = f"{schema.TIMEPOINT_ASSUMED}: {n} of {len(cohort)} samples"
    path = store.write_dataset(
        data_dir,
        name,
        cohort,
        meta,
        cells=cells,
        keep_cells_from=keep_cells,
        force=args.force,
        replace=adding,
        started=started,
    )
    print(f"Imported {', '.join(files)} as dataset `{name}` ({len(cohort)} samples):")
    for line in report.lines():
        print(line)
    print(f"Written: {path}. Check it with `python cli.py validate {name}`.")
    return 0


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``cli.py import``."""
    p.add_argument("kind", choices=KINDS, help="what the file holds")
    p.add_argument("--file", required=True, help="the file to import")
    p.add_argument("--name", required=True, help="dataset name (letters, digits, _-.)")
    p.add_argument(
        "--map",
        action="append",
        help="bundle column = source column, comma-separated "
        "(sample_id=patientid,recist=BOR); a|b takes the first non-empty",
    )
    p.add_argument("--map-file", help="mapping file (JSON or target=source lines)")
    p.add_argument(
        "--set",
        action="append",
        help="one value for every row: tumor_type=melanoma,treatment=nivolumab",
    )
    p.add_argument(
        "--clinical",
        help="clinical table to join (cibersort/expression); without it they are "
        "added to the existing dataset --name",
    )
    p.add_argument(
        "--recode",
        action="append",
        metavar="COLUMN:VALUE=CODE",
        help="map one value of a categorical column (repeatable; COLUMN is the "
        "file's column or the bundle column; empty CODE = missing), e.g. "
        "--recode 'BOR:Only scanned at baseline='",
    )
    p.add_argument("--sheet", help="xlsx: sheet name or number (default: the first)")
    p.add_argument(
        "--fraction-source",
        choices=sorted(schema.FRACTION_SOURCES),
        default="counts",
        help="clinical: what frac_* columns of the table are (labels say so)",
    )
    p.add_argument("--cohort", help="cohort name when no column gives it")
    p.add_argument(
        "--time-unit",
        choices=["days", "weeks", "months", "years"],
        help="unit of survival times (default: from the column name or a "
        "survival_unit column, else months)",
    )
    p.add_argument(
        "--scores",
        action="append",
        help="columns to keep as score_* metrics, shell patterns (e.g. '*NK*EPIC')",
    )
    p.add_argument(
        "--cells",
        choices=["auto", "immune", "cd8"],
        default="auto",
        help="h5ad: all immune cells with a cell_type column, or the CD8 subset",
    )
    p.add_argument(
        "--prepare",
        action="store_true",
        help="h5ad: normalize raw counts, compute UMAP and Leiden states if missing",
    )
    p.add_argument(
        "--add",
        action="store_true",
        help="h5ad: attach the cells to the existing dataset --name",
    )
    p.add_argument("--title", help="dataset title (default: the name)")
    p.add_argument("--source", help="where the data come from (paper, GEO id)")
    p.add_argument("--license", help="license of the data")
    p.add_argument(
        "--force", action="store_true", help="replace an existing dataset of that name"
    )
    p.add_argument(
        "--data-dir", default=argparse.SUPPRESS, help="folder of dataset bundles"
    )


def run_prepare(args: argparse.Namespace) -> int:
    """Prepare an h5ad into a new file and print what was done."""
    from data.prepare import prepare_file

    out, notes = prepare_file(
        args.file,
        args.out,
        state_column=args.state_column,
        n_top_genes=args.n_top_genes,
        seed=args.seed,
        force=args.force,
    )
    print(f"Prepared {Path(args.file).name} -> {out}:")
    for note in notes:
        print(f"  - {note}")
    print(
        f"Import it with `python cli.py import h5ad --file {out} --name NAME --map "
        "patient_id=<obs column>`."
    )
    return 0


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``cli.py prepare``."""
    p.add_argument("--file", required=True, help="input .h5ad (never modified)")
    p.add_argument("--out", required=True, help="output .h5ad (a new file)")
    p.add_argument(
        "--state-column", help="obs column with named CD8 states (else Leiden)"
    )
    p.add_argument("--n-top-genes", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
