"""Clinical tables with local column names -> the bundle's ``cohort.csv``.

A mapping says which source column feeds each bundle column (``sample_id=patientid``);
``a|b`` takes the first non-empty of several columns (a drug-name column, else a class
column). Without a mapping, usual names are recognised (``patientid``, ``BOR``,
``OS_days``, ...), and every choice is written in the report.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from data import schema
from data.bundle import validate_cohort
from data.errors import DataError, Problem
from data.importers import recode, vocab
from data.importers.reading import read_bytes, read_table_bytes
from data.importers.report import ImportReport

#: Every column a mapping may target (besides any ``frac_*`` / ``score_*``).
TARGETS = schema.REQUIRED_COLUMNS + schema.OPTIONAL_COLUMNS

#: Usual source names per target, in order of preference (compared squashed).
ALIASES: dict[str, tuple[str, ...]] = {
    "sample_id": ("sample_id", "sample", "sampleid", "sample_name", "mixture", "id"),
    "patient_id": (
        "patient_id",
        "patientid",
        "patient",
        "subject_id",
        "subject",
        "donor_id",
        "donor",
        "case_id",
        "individual",
    ),
    "cohort": ("cohort", "study", "dataset", "trial"),
    "tumor_type": (
        "tumor_type",
        "tumour_type",
        "cancer_type",
        "cancer",
        "tumor",
        "disease",
        "indication",
        "histology",
    ),
    "treatment": (
        "treatmentid",
        "drug",
        "agent",
        "treatment",
        "therapy",
        "regimen",
        "treatment_class",
    ),
    "timepoint": ("timepoint", "time_point", "biopsy_time", "pre_post", "biopsy"),
    "recist": ("recist", "bor", "best_overall_response", "best_response"),
    "response": (
        "response",
        "responder",
        "bor_binary",
        "respond",
        "response_binary",
        "clinical_benefit",
        "condition",
    ),
    "os_months": (
        "os_months",
        "os_time",
        "os",
        "survival_time_os",
        "os_days",
        "os_years",
        "overall_survival",
    ),
    "os_event": (
        "os_event",
        "os_status",
        "event_occurred_os",
        "os_censor",
        "vital_status",
        "dead",
    ),
    "pfs_months": (
        "pfs_months",
        "pfs_time",
        "pfs",
        "survival_time_pfs",
        "pfs_days",
        "pfs_years",
    ),
    "pfs_event": ("pfs_event", "pfs_status", "event_occurred_pfs", "pfs_censor"),
    "frac_nk": (
        "frac_nk",
        "nk",
        "nk_cells",
        "nk_fraction",
        "nk_frac",
        "nk_pct",
        "nk_percent",
        "pct_nk",
        "percent_nk",
    ),
    "frac_cd8": (
        "frac_cd8",
        "cd8",
        "cd8_t_cells",
        "cd8_fraction",
        "cd8_frac",
        "cd8_pct",
        "cd8_percent",
        "pct_cd8",
        "percent_cd8",
    ),
}
#: Targets whose aliases are combined as fallbacks (first non-empty wins).
FALLBACK_TARGETS = ("treatment",)
UNIT_COLUMNS = ("survival_unit", "time_unit", "survival_units", "unit")


# ---------------------------------------------------------------------- mapping


def parse_mapping(
    items: Iterable[str] | None, *, file: str = "--map"
) -> dict[str, str]:
    """``["sample_id=patientid", "os_months=OS_days,os_event=OS_status"]`` -> dict.

    Items may hold several comma-separated pairs. Targets are checked against the
    bundle columns (``frac_*`` and ``score_*`` are always allowed).
    """
    mapping: dict[str, str] = {}
    for item in items or ():
        for pair in _split_pairs(item):
            target, sep, source = pair.partition("=")
            target, source = target.strip(), source.strip()
            if not sep or not target or not source:
                raise DataError(
                    Problem(
                        file=file,
                        message=f"`{pair}` is not of the form target=source.",
                        fix="write e.g. --map sample_id=patientid,recist=BOR.",
                    )
                )
            check_target(target, file=file)
            mapping[target] = source
    return mapping


def _split_pairs(item: str) -> list[str]:
    # split on commas that start a new `name=` pair (a source may contain commas)
    parts = re.split(r",\s*(?=[A-Za-z0-9_]+\s*=)", item.strip())
    return [p for p in parts if p.strip()]


def check_target(target: str, *, file: str) -> str:
    """Raise unless ``target`` is a bundle column a mapping may fill."""
    prefixed = target.startswith((schema.FRACTION_PREFIX, schema.SCORE_PREFIX))
    valid_suffix = re.fullmatch(r"(frac|score)_[A-Za-z0-9_]+", target)
    extra = ("cell_type", "cd8_state")
    if target in TARGETS or target in extra or (prefixed and valid_suffix):
        return target
    raise DataError(
        Problem(
            file=file,
            message=f"`{target}` is not a bundle column.",
            fix=f"map to one of {', '.join(TARGETS)}, frac_<cells> or score_<name>.",
        )
    )


def read_mapping_file(path: Path | str) -> dict[str, str]:
    """A mapping file: JSON ``{"sample_id": "patientid"}`` or lines ``target=source``
    (``#`` comments and a two-column ``target,source`` CSV also work)."""
    path = Path(path)
    raw = read_bytes(path)
    from data.tables import decode_text

    text = decode_text(raw, file=path.name)
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(
                Problem(
                    file=path.name,
                    rows=(err.lineno,),
                    message=f"not valid JSON ({err.msg}).",
                    fix='write {"sample_id": "your_column", ...}.',
                )
            ) from None
        if not isinstance(data, dict) or not all(
            isinstance(v, str) for v in data.values()
        ):
            raise DataError(
                Problem(
                    file=path.name,
                    message="must map bundle columns to source column names.",
                    fix='write {"sample_id": "your_column", ...}.',
                )
            )
        for target in data:
            check_target(target, file=path.name)
        return dict(data)
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line or line.lower().replace(" ", "") in {
            "target,source",
            "target=source",
        }:
            continue
        if "=" not in line and line.count(",") == 1:
            line = line.replace(",", "=")
        if "=" not in line:
            raise DataError(
                Problem(
                    file=path.name,
                    rows=(number,),
                    message=f"line `{line}` is not target=source.",
                    fix="one mapping per line, e.g. sample_id=patientid.",
                )
            )
        items.append(line)
    return parse_mapping(items, file=path.name)


def guess_mapping(columns: Iterable[str]) -> dict[str, str]:
    """Usual source names -> bundle columns (``a|b`` where fallbacks apply)."""
    by_key: dict[str, str] = {}
    for column in columns:
        by_key.setdefault(
            vocab.squash(column).replace("(", "").replace(")", ""), column
        )
    guessed: dict[str, str] = {}
    used: set[str] = set()
    for target, aliases in ALIASES.items():
        found = [
            by_key[vocab.squash(a)]
            for a in aliases
            if vocab.squash(a) in by_key and by_key[vocab.squash(a)] not in used
        ]
        if not found:
            continue
        chosen = found if target in FALLBACK_TARGETS else found[:1]
        used.update(chosen)
        guessed[target] = "|".join(chosen)
    for column in columns:
        if column.startswith((schema.FRACTION_PREFIX, schema.SCORE_PREFIX)):
            guessed.setdefault(column, column)
    return guessed


def parse_constants(items: Iterable[str] | None) -> dict[str, str]:
    """``--set tumor_type=melanoma,treatment=anti-PD-1`` -> dict (values as given)."""
    constants: dict[str, str] = {}
    for item in items or ():
        for pair in _split_pairs(item):
            target, sep, value = pair.partition("=")
            if not sep or not target.strip():
                raise DataError(
                    Problem(
                        file="--set",
                        message=f"`{pair}` is not of the form column=value.",
                        fix="write e.g. --set tumor_type=melanoma.",
                    )
                )
            constants[check_target(target.strip(), file="--set")] = value.strip()
    return constants


def score_column_name(source: str) -> str:
    """``NK_cells_MCPcounter`` -> ``score_NK_cells_MCPcounter`` (safe characters)."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", source).strip("_")
    return schema.SCORE_PREFIX + (name or "value")


def score_sources(columns: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """Columns matching any shell-style pattern (``*NK*EPIC``), in table order."""
    patterns = [p.strip() for item in patterns for p in item.split(",") if p.strip()]
    return [c for c in columns if any(fnmatch.fnmatchcase(c, p) for p in patterns)]


# ------------------------------------------------------------------ the import


def _source_values(
    raw: pd.DataFrame, spec: str, *, file: str, target: str
) -> tuple[pd.Series, str]:
    sources = [s.strip() for s in spec.split("|") if s.strip()]
    missing = [s for s in sources if s not in raw.columns]
    if missing:
        close = [c for c in raw.columns if vocab.squash(c) == vocab.squash(missing[0])]
        hint = f" Did you mean `{close[0]}`?" if close else ""
        sheets = raw.attrs.get("sheets") or []
        if len(sheets) > 1:
            hint += (
                f" This is sheet `{raw.attrs.get('sheet')}` of the workbook; its "
                "sheets are " + ", ".join(f"`{n}`" for n in sheets) + " (choose one "
                "with --sheet)."
            )
        raise DataError(
            Problem(
                file=file,
                column=missing[0],
                message=f"the column mapped to `{target}` is not in the file.{hint}",
                fix="use one of the file's columns: "
                + ", ".join(f"`{c}`" for c in list(raw.columns)[:12])
                + (" ..." if raw.shape[1] > 12 else "")
                + ".",
            )
        )
    values = raw[sources[0]].copy()
    for other in sources[1:]:
        empty = vocab.is_missing(values)
        values = values.where(~empty, raw[other])
    return values, " | ".join(sources)


def build_cohort(
    raw: pd.DataFrame,
    *,
    file: str,
    mapping: Mapping[str, str] | None = None,
    constants: Mapping[str, str] | None = None,
    cohort_name: str = "imported",
    time_unit: str | None = None,
    scores: Iterable[str] = (),
    guess: bool = True,
    recodes: Sequence[recode.Recode] = (),
    fraction_source: str = "counts",
) -> tuple[pd.DataFrame, ImportReport]:
    """Map, normalize and validate a clinical table.

    Parameters
    ----------
    raw
        The user's table, all cells as strings.
    file
        File name for messages.
    mapping
        Bundle column -> source column (``a|b`` = first non-empty). Explicit entries
        win over guessed ones.
    constants
        Bundle column -> one value for every row (``tumor_type=melanoma``).
    cohort_name
        ``cohort`` when neither mapped nor set.
    time_unit
        Unit of survival columns (``days``, ``months``, ...); default: read from a
        ``survival_unit`` column or the column name, else months.
    scores
        Shell-style patterns of source columns kept as ``score_*`` metrics.
    guess
        Recognise usual column names for unmapped bundle columns.
    recodes
        ``--recode`` rules applied to categorical columns before their vocabulary
        (see :mod:`data.importers.recode`).
    fraction_source
        What ``frac_*`` values of this table are (a key of
        :data:`data.schema.FRACTION_SOURCES`), recorded per sample.

    Returns
    -------
    cohort, report
        A typed table that passes :func:`data.bundle.validate_cohort`, and the
        report of what was mapped.

    Raises
    ------
    DataError
        Anything that cannot be mapped or does not validate, naming file, column,
        rows and the fix.
    """
    report = ImportReport()
    report.notes += list(raw.attrs.get("read_notes", []))
    constants = dict(constants or {})
    explicit = dict(mapping or {})
    if raw.empty:
        raise DataError(
            Problem(
                file=file,
                message="the table has a header but no rows.",
                fix="add one row per sample.",
            )
        )
    chosen = {} if not guess else guess_mapping(raw.columns)
    for target in list(chosen):
        if target in constants:
            del chosen[target]
    chosen.update(explicit)
    guessed = {t: s for t, s in chosen.items() if t not in explicit}
    if guessed:
        report.notes.append(
            "columns recognised: "
            + ", ".join(f"{t} <- `{s}`" for t, s in guessed.items())
            + " (override with --map)."
        )
    sources: dict[str, str] = {}
    out = pd.DataFrame(index=raw.index)
    for target, spec in chosen.items():
        if target in ("cell_type", "cd8_state"):
            continue
        out[target], sources[target] = _source_values(
            raw, spec, file=file, target=target
        )
    for target, value in constants.items():
        out[target] = value
        sources[target] = f"--set {target}={value}"
        report.notes.append(f"{target}: `{value}` for every row (--set).")

    if "sample_id" not in out and "patient_id" in out:
        out["sample_id"] = out["patient_id"]
        sources["sample_id"] = sources["patient_id"]
        report.notes.append("sample_id: none mapped; the patient id is used.")
    if "patient_id" not in out and "sample_id" in out:
        out["patient_id"] = out["sample_id"]
        sources["patient_id"] = sources["sample_id"]
        report.notes.append(
            "patient_id: none mapped; each sample is taken as its own patient."
        )
    if "sample_id" not in out:
        raise DataError(
            Problem(
                file=file,
                column="sample_id",
                message="no column gives the sample or patient id.",
                fix="map one: --map sample_id=<your id column> (columns: "
                + ", ".join(f"`{c}`" for c in list(raw.columns)[:10])
                + ").",
            )
        )
    if "cohort" not in out:
        out["cohort"] = cohort_name
        report.notes.append(f"cohort: `{cohort_name}` for every row (dataset name).")
    if "timepoint" not in out:
        out["timepoint"] = "pre"
        out[schema.TIMEPOINT_NOTE] = schema.TIMEPOINT_ASSUMED
        report.notes.append(
            "timepoint: none mapped; every sample recorded as "
            f"`{schema.TIMEPOINT_ASSUMED}` (analysed as `pre`, and figures say so)."
        )
    for target in ("tumor_type", "treatment"):
        if target not in out:
            raise DataError(
                Problem(
                    file=file,
                    column=target,
                    message=f"no column gives `{target}`.",
                    fix=f"map a column (--map {target}=<column>) or give one value "
                    f"for all rows (--set {target}="
                    + ("melanoma" if target == "tumor_type" else "anti-PD-1")
                    + ").",
                )
            )
    if "recist" not in out:
        out["recist"] = ""
        report.notes.append("recist: none mapped; left empty.")

    def src(target: str) -> str:
        return sources.get(target, target)

    for column in ("sample_id", "patient_id", "cohort", "tumor_type"):
        values = out[column].astype(str).str.strip()
        empty = vocab.is_missing(out[column])
        if empty.any():
            raise DataError(
                Problem(
                    file=file,
                    column=src(column),
                    rows=vocab.rows_of(empty),
                    message=f"has empty cells; every sample needs a `{column}`.",
                    fix=f"fill them in or drop those rows (mapped to `{column}`).",
                )
            )
        out[column] = values
    dup = out["sample_id"].duplicated(keep=False)
    if dup.any():
        examples = ", ".join(f"`{v}`" for v in pd.unique(out.loc[dup, "sample_id"])[:3])
        raise DataError(
            Problem(
                file=file,
                column=src("sample_id"),
                rows=vocab.rows_of(dup),
                message=f"has duplicated id(s) {examples}; each row must be one "
                "sample.",
                fix="give each sample its own id, or map sample_id to a column that "
                "is unique (patient id + timepoint).",
            )
        )

    out, notes = recode.apply_recodes(out, recodes, sources=sources, file=file)
    report.notes += notes
    out, notes = recode.clean_categories(
        out, sources=sources, trimmed=raw.attrs.get("trimmed", {})
    )
    report.notes += notes
    # every unknown value of every column is reported in one refusal
    problems: list[Problem] = []

    def collect(call, fallback):
        try:
            return call()
        except DataError as err:
            problems.extend(err.problems)
            return fallback

    before = out.copy()
    out["treatment"], notes, warnings = collect(
        lambda: vocab.normalize_treatment(
            out["treatment"], file=file, source=src("treatment")
        ),
        (out["treatment"], [], []),
    )
    report.notes += notes
    report.warnings += warnings
    if schema.TIMEPOINT_NOTE not in out:
        assumed = vocab.is_missing(out["timepoint"])
        if assumed.any():
            out[schema.TIMEPOINT_NOTE] = np.where(
                assumed, schema.TIMEPOINT_ASSUMED, "reported"
            )
    out["timepoint"], notes = collect(
        lambda: vocab.normalize_timepoint(
            out["timepoint"], file=file, source=src("timepoint")
        ),
        (out["timepoint"], []),
    )
    report.notes += notes
    if "recist" in sources:
        out["recist"], notes = collect(
            lambda: vocab.normalize_recist(
                out["recist"], file=file, source=src("recist")
            ),
            (out["recist"], []),
        )
        report.notes += notes
    if "response" in out:
        out["response"], notes = collect(
            lambda: vocab.normalize_response(
                out["response"], file=file, source=src("response")
            ),
            (out["response"], []),
        )
        report.notes += notes
    for target in ("recist", "response", "timepoint"):
        if target in sources and not problems:
            report.notes += recode.case_note(target, before[target], out[target])

    unit_column = next(
        (
            c
            for c in raw.columns
            if vocab.squash(c) in {vocab.squash(u) for u in UNIT_COLUMNS}
        ),
        None,
    )
    for time_col, event_col in (("os_months", "os_event"), ("pfs_months", "pfs_event")):
        if time_col in out:
            unit: str | pd.Series | None = time_unit
            if unit is None and unit_column and not vocab.unit_from_name(src(time_col)):
                unit = raw[unit_column].where(
                    ~vocab.is_missing(raw[unit_column]), "months"
                )
                unit.name = unit_column
            out[time_col], notes = collect(
                partial(
                    vocab.survival_to_months,
                    out[time_col],
                    file=file,
                    source=src(time_col),
                    column=time_col,
                    unit=unit,
                ),
                (out[time_col], []),
            )
            report.notes += notes
        if event_col in out:
            out[event_col], notes = collect(
                partial(
                    vocab.normalize_events,
                    out[event_col],
                    file=file,
                    source=src(event_col),
                    column=event_col,
                ),
                (out[event_col], []),
            )
            report.notes += notes
        if time_col in out and event_col in out and not problems:
            report.warnings += _events_without_time(
                out, time_col, event_col, file=file, src=src
            )
    if problems:
        raise DataError(problems)

    for source in score_sources(raw.columns, scores):
        column = score_column_name(source)
        out[column] = raw[source]
        sources[column] = source
        report.notes.append(f"{column}: score from `{source}` (not a fraction).")
    fractions = [c for c in out.columns if c.startswith(schema.FRACTION_PREFIX)]
    for column in fractions + [c for c in out if c.startswith(schema.SCORE_PREFIX)]:
        out[column] = vocab.to_numbers(out[column], file=file, source=src(column))
    out, notes = vocab.fractions_from_percent(
        out, fractions, file=file, sources=sources
    )
    report.notes += notes
    if fractions and out[fractions].notna().any().any():
        if fraction_source not in schema.FRACTION_SOURCES:
            raise DataError(
                Problem(
                    file="--fraction-source",
                    message=f"`{fraction_source}` is not a known source.",
                    fix="use one of " + ", ".join(schema.FRACTION_SOURCES) + ".",
                )
            )
        out[schema.FRACTION_SOURCE] = fraction_source
        report.notes.append(
            "frac_* columns recorded as "
            f"{schema.FRACTION_SOURCES[fraction_source]} (--fraction-source)."
        )
    for column in schema.REQUIRED_FRACTIONS:
        if column not in out:
            out[column] = np.nan
            report.notes.append(
                f"{column}: not in this table; left empty (add it with `import "
                "cibersort`, `import expression` gives scores instead)."
            )
    unused = [c for c in raw.columns if not _used(c, chosen, sources)]
    if unused:
        report.notes.append(
            f"{len(unused)} column(s) not used: "
            + ", ".join(f"`{c}`" for c in unused[:8])
            + (" ..." if len(unused) > 8 else "")
            + "."
        )
    return finish_cohort(out, file=file, sources=sources, report=report)


def _events_without_time(
    out: pd.DataFrame, time_col: str, event_col: str, *, file: str, src
) -> list[Problem]:
    """A warning naming rows with an event indicator but no time."""
    lonely = out[event_col].notna() & out[time_col].isna()
    if not lonely.any():
        return []
    return [
        Problem(
            file=file,
            column=src(event_col),
            rows=vocab.rows_of(lonely),
            message=f"{int(lonely.sum())} sample(s) have an event indicator but no "
            f"time in `{src(time_col)}`; they are left out of survival analyses.",
            fix="fill in the time (months from treatment start), or leave the event "
            "empty too.",
            severity="warning",
        )
    ]


def _used(column: str, chosen: Mapping[str, str], sources: Mapping[str, str]) -> bool:
    specs = list(chosen.values()) + list(sources.values())
    return any(column in [s.strip() for s in spec.split("|")] for spec in specs)


def order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Bundle columns first, then ``frac_*``, then ``score_*``."""
    head = [c for c in TARGETS if c in frame.columns]
    fracs = [c for c in frame.columns if c.startswith(schema.FRACTION_PREFIX)]
    scores = [c for c in frame.columns if c.startswith(schema.SCORE_PREFIX)]
    kept = [c for c in schema.PROVENANCE_COLUMNS if c in frame.columns]
    return frame[head + fracs + scores + kept]


def as_csv_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as the strings ``cohort.csv`` will hold (for validation)."""
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            out[column] = [("" if pd.isna(v) else repr(float(v))) for v in values]
        else:
            out[column] = values.astype(object).where(values.notna(), "").astype(str)
    return out.reset_index(drop=True)


def finish_cohort(
    frame: pd.DataFrame,
    *,
    file: str,
    sources: Mapping[str, str] | None = None,
    report: ImportReport | None = None,
) -> tuple[pd.DataFrame, ImportReport]:
    """Validate a mapped table with the bundle rules; problems name the source.

    Returns the table in bundle column order and the report with validation
    warnings added; raises :class:`DataError` on any error.
    """
    report = report or ImportReport()
    sources = dict(sources or {})
    frame = order_columns(frame)
    problems, typed = validate_cohort(as_csv_strings(frame), file=file)

    def rename(problem: Problem) -> Problem:
        column, message = problem.column, problem.message
        if column and column in sources and sources[column] != column:
            column, message = sources[column], f"(as `{column}`) {message}"
        return Problem(
            file=problem.file,
            message=message,
            fix=problem.fix.replace("python cli.py import clinical --map", "--map"),
            column=column,
            rows=problem.rows,
            severity=problem.severity,
        )

    problems = [rename(p) for p in problems]
    errors = [p for p in problems if p.severity == "error"]
    if errors or typed is None:
        raise DataError(errors or problems)
    report.warnings += [p for p in problems if p.severity == "warning"]
    return frame.reset_index(drop=True), report


def import_clinical(
    path: Path | str,
    *,
    mapping: Mapping[str, str] | None = None,
    constants: Mapping[str, str] | None = None,
    cohort_name: str = "imported",
    time_unit: str | None = None,
    scores: Iterable[str] = (),
    sheet: str | None = None,
    recodes: Sequence[recode.Recode] = (),
    fraction_source: str = "counts",
) -> tuple[pd.DataFrame, ImportReport]:
    """Read a CSV/TSV/XLSX clinical table and map it; see :func:`build_cohort`."""
    path = Path(path)
    raw = read_table_bytes(read_bytes(path), file=path.name, sheet=sheet)
    return build_cohort(
        raw,
        file=path.name,
        mapping=mapping,
        constants=constants,
        cohort_name=cohort_name,
        time_unit=time_unit,
        scores=scores,
        recodes=recodes,
        fraction_source=fraction_source,
    )
