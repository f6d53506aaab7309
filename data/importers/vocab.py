"""Vocabulary normalization for imported tables, with a record of every mapping.

Real clinical tables name the same thing many ways (``Pembrolizumab``, ``anti-PD1``,
``PD-1/PD-L1``; ``Responder``, ``R``, ``CR``; days or months). Each function here
maps one column to the bundle vocabulary (:mod:`data.schema`), returns the new values
and a list of plain-language notes saying what was mapped, and raises
:class:`data.errors.DataError` naming file, column, rows and fix for anything it cannot
map. Nothing is guessed silently: every conversion is in the notes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

import numpy as np
import pandas as pd

from data import schema
from data.errors import DataError, Problem

ROW_OFFSET = 2  # data row i (0-based) is spreadsheet row i + 2 (header is row 1)

#: Values read as "unknown" in every column (compared lower-case, stripped); the
#: README lists them ("Use your own data").
MISSING = frozenset(
    {
        "", "na", "n/a", "#n/a", "n.a.", "n.a", "#na", "<na>", "nan", "none",
        "null", "unknown", "not available", "not reported", "missing", "nd",
        "n.d.", "-", "--", ".", "?",
    }
)  # fmt: skip
#: Footnote marks that tables append to values (``PD*``, ``CR†``).
FOOTNOTE = re.compile(r"^[*†‡§¶^]+|[*†‡§¶^¹²³]+$")

RESPONSE_SYNONYMS = {
    "r": "R",
    "responder": "R",
    "responders": "R",
    "response": "R",
    "yes": "R",
    "nr": "NR",
    "nonresponder": "NR",
    "nonresponders": "NR",
    "nonresponse": "NR",
    "noresponse": "NR",
    "no": "NR",
}
RECIST_SYNONYMS = {
    "cr": "CR",
    "completeresponse": "CR",
    "pr": "PR",
    "partialresponse": "PR",
    "sd": "SD",
    "stabledisease": "SD",
    "pd": "PD",
    "progressivedisease": "PD",
    "progression": "PD",
    "ne": "NE",
    "notevaluable": "NE",
    "nonevaluable": "NE",
}
#: RECIST best overall response -> responder status (objective response).
RECIST_TO_RESPONSE = {"CR": "R", "PR": "R", "SD": "NR", "PD": "NR"}
TIMEPOINT_SYNONYMS = {
    "pre": "pre",
    "pretreatment": "pre",
    "baseline": "pre",
    "screening": "pre",
    "before": "pre",
    "on": "on",
    "ontreatment": "on",
    "during": "on",
    "edt": "on",
    "post": "post",
    "posttreatment": "post",
    "after": "post",
    "progression": "post",
}
EVENT_SYNONYMS = {
    "1": 1.0,
    "0": 0.0,
    "1.0": 1.0,
    "0.0": 0.0,
    "true": 1.0,
    "false": 0.0,
    "yes": 1.0,
    "no": 0.0,
    "dead": 1.0,
    "deceased": 1.0,
    "died": 1.0,
    "death": 1.0,
    "alive": 0.0,
    "living": 0.0,
    "censored": 0.0,
    "event": 1.0,
    "progressed": 1.0,
    "progression": 1.0,
    "1:deceased": 1.0,
    "0:living": 0.0,
    "1:progressed": 1.0,
    "0:censored": 0.0,
}
#: Survival time units -> factor to months (a month is 365.25 / 12 days).
TIME_UNITS = {
    "day": 12 / 365.25,
    "days": 12 / 365.25,
    "d": 12 / 365.25,
    "week": 7 * 12 / 365.25,
    "weeks": 7 * 12 / 365.25,
    "wk": 7 * 12 / 365.25,
    "month": 1.0,
    "months": 1.0,
    "mo": 1.0,
    "m": 1.0,
    "year": 12.0,
    "years": 12.0,
    "yr": 12.0,
    "y": 12.0,
}


def squash(value: object) -> str:
    """Lower-case, with spaces, hyphens, underscores and dots removed."""
    return re.sub(r"[\s\-_.]", "", str(value).strip().lower())


def is_missing(values: pd.Series) -> pd.Series:
    """True where a cell is empty or a usual 'unknown' marker (NA, NaN, n/a, ...)."""
    return values.isna() | values.astype(str).str.strip().str.lower().isin(MISSING)


def rows_of(mask: Iterable[bool]) -> tuple[int, ...]:
    """Spreadsheet row numbers (header = row 1) where ``mask`` is true."""
    return tuple(int(i) + ROW_OFFSET for i in np.flatnonzero(np.asarray(mask)))


def strip_footnotes(value: str) -> str:
    """``PD*`` -> ``PD``, ``CR†`` -> ``CR`` (marks at either end)."""
    return FOOTNOTE.sub("", str(value)).strip()


def recode_line(source: str, value: str, code: str) -> str:
    """The exact ``--recode`` option that maps ``value`` of ``source`` to ``code``."""
    return "--recode " + shlex.quote(f"{source}:{value}={code}")


def _unknown_values(
    values: pd.Series,
    bad: pd.Series,
    *,
    file: str,
    column: str,
    source: str,
    expected: str,
    fix: str,
    suggest: str = "",
) -> DataError:
    """One problem listing every distinct unknown value with its count, and the
    ``--recode`` line that fixes each (``suggest`` is the code proposed)."""
    counts = values[bad].astype(str).value_counts(sort=False)
    shown = ", ".join(
        f"`{v}` ({n} row{'s' if n != 1 else ''})" for v, n in counts.items()
    )
    # a fallback spec `a | b` is recoded through the bundle column it fills
    name = column if "|" in source else source
    lines = " ".join(recode_line(name, str(v), suggest) for v in counts.index)
    what = "missing" if suggest == "" else f"`{suggest}`"
    return DataError(
        Problem(
            file=file,
            column=source,
            rows=rows_of(bad),
            message=f"has {len(counts)} value(s) that cannot be read as `{column}` "
            f"(expected {expected}): {shown}.",
            fix=f"{fix} Or recode them on the command line (here as {what}; put any "
            f"of {expected} after `=`): {lines}",
        )
    )


def _describe(mapping: dict[str, str], limit: int = 6) -> str:
    items = [f"{k} -> {v}" for k, v in sorted(mapping.items())]
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


# -------------------------------------------------------------------- treatment


def classify_treatment(value: str) -> tuple[str | None, str | None]:
    """Map one treatment cell to the vocabulary (see :mod:`.treatments`).

    Returns
    -------
    treatment, pooled
        The vocabulary value (``None`` when nothing is recognised) and, for pooled
        labels that do not name one drug (``PD-1/PD-L1``), what they stand for.
    """
    from data.importers.treatments import classify_treatment as classify

    result = classify(value)
    pooled = {
        "anti-PD-(L)1": "anti-PD-1 or anti-PD-L1 (pooled)",
        "ICB, unspecified": "a checkpoint inhibitor of unspecified target",
    }.get(result or "")
    return result, pooled


def normalize_treatment(
    values: pd.Series, *, file: str, source: str
) -> tuple[pd.Series, list[str], list[Problem]]:
    """Drug or class names -> the checkpoint classes of :data:`schema.TREATMENTS`.

    Every unrecognised name is listed in one :class:`DataError`; pooled class
    names (``PD-1/PD-L1``) keep their pooled class and are counted in the notes.
    """
    text = values.astype(str).str.strip()
    missing = is_missing(values)
    if missing.any():
        raise DataError(
            Problem(
                file=file,
                column=source,
                rows=rows_of(missing),
                message="has empty treatment cells.",
                fix="fill them in, or give one treatment for all rows with "
                "--set treatment=anti-PD-1.",
            )
        )
    mapped: dict[str, str] = {}
    pooled: dict[str, str] = {}
    out = pd.Series(index=values.index, dtype=object)
    unknown = pd.Series(False, index=values.index)
    for raw in pd.unique(text):
        result, doubt = classify_treatment(raw)
        where = text == raw
        if result is None:
            unknown |= where
            continue
        out[where] = result
        if doubt:
            pooled[raw] = doubt
        if raw != result:
            mapped[raw] = result
    if unknown.any():
        raise _unknown_values(
            text,
            unknown,
            file=file,
            column="treatment",
            source=source,
            expected=", ".join(schema.TREATMENTS),
            fix="drug names (pembrolizumab, nivolumab, atezolizumab, durvalumab, "
            "avelumab, ipilimumab, tremelimumab, cemiplimab, ...), targets "
            "(anti-PD-1) and pooled labels (PD-1/PD-L1, ICI, IO+combo) are "
            "recognised; see README 'Use your own data' for the vocabulary.",
            suggest="other",
        )
    notes = [f"treatment: {_describe(mapped)}."] if mapped else []
    for raw, doubt in pooled.items():
        notes.append(
            f"treatment: `{raw}` ({int((text == raw).sum())} samples) is a pooled "
            f"label for {doubt}; recorded as `{out[text == raw].iloc[0]}`."
        )
    return out.astype(str), notes, []


# ------------------------------------------------------------- response, RECIST


def normalize_recist(
    values: pd.Series, *, file: str, source: str
) -> tuple[pd.Series, list[str]]:
    """RECIST best overall response -> CR/PR/SD/PD/NE ('' where unknown)."""
    missing = is_missing(values)
    keys = values.astype(str).map(squash)
    out = keys.map(RECIST_SYNONYMS)
    bad = out.isna() & ~missing
    if bad.any():
        if keys[bad].isin(RESPONSE_SYNONYMS).all():
            fix = (
                "this column holds responder status (R/NR), not RECIST: map it to "
                "`response` instead (--map response=" + source + ")."
            )
        else:
            fix = "use CR, PR, SD, PD or NE (or leave the cell empty when unknown)."
        raise _unknown_values(
            values.astype(str),
            bad,
            file=file,
            column="recist",
            source=source,
            expected="CR, PR, SD, PD, NE",
            fix=fix,
            suggest="",
        )
    out = out.where(~missing, "")
    changed = {
        str(v): out[values.astype(str) == str(v)].iloc[0]
        for v in pd.unique(values[~missing].astype(str))
        if str(v) != out[values.astype(str) == str(v)].iloc[0]
    }
    notes = [f"recist: {_describe(changed)}."] if changed else []
    if missing.any():
        notes.append(f"recist: {int(missing.sum())} empty/NA value(s) left empty.")
    return out.astype(str), notes


def normalize_response(
    values: pd.Series, *, file: str, source: str
) -> tuple[pd.Series, list[str]]:
    """Responder status -> R/NR ('' where unknown).

    Accepts R/NR, Responder/Non-responder, yes/no, and RECIST values (CR/PR -> R,
    SD/PD -> NR, NE -> unknown), saying so in the notes.
    """
    missing = is_missing(values)
    keys = values.astype(str).map(squash)
    out = keys.map(RESPONSE_SYNONYMS)
    recist = keys.map(RECIST_SYNONYMS)
    from_recist = out.isna() & recist.notna() & ~missing
    out = out.where(~from_recist, recist.map(RECIST_TO_RESPONSE))
    # NE is "not evaluable": unknown response, not a non-responder
    ne = from_recist & (recist == "NE")
    out = out.where(~ne, "")
    bad = out.isna() & ~missing
    if bad.any():
        raise _unknown_values(
            values.astype(str),
            bad,
            file=file,
            column="response",
            source=source,
            expected="R/NR, Responder/Non-responder, or CR/PR/SD/PD",
            fix="recode the column as R (responder) or NR (non-responder); leave "
            "the cell empty when unknown.",
            suggest="",
        )
    out = out.where(~missing, "")
    raw = values.astype(str)
    changed = {
        v: out[raw == v].iloc[0]
        for v in pd.unique(raw[~missing])
        if v != out[raw == v].iloc[0]
    }
    notes = []
    if changed:
        notes.append(
            f"response: {_describe({k: v or 'unknown' for k, v in changed.items()})}."
        )
    if from_recist.any():
        notes.append(
            "response: RECIST values converted as objective response (CR/PR -> R, "
            "SD/PD -> NR, NE -> unknown)."
        )
    if missing.any():
        notes.append(f"response: {int(missing.sum())} empty/NA value(s) left empty.")
    return out.astype(str), notes


def normalize_timepoint(
    values: pd.Series, *, file: str, source: str
) -> tuple[pd.Series, list[str]]:
    """Biopsy timing -> pre/on/post; empty/NA cells are taken as ``pre`` (the
    caller records them as not reported, see :data:`schema.TIMEPOINT_ASSUMED`)."""
    missing = is_missing(values)
    keys = values.astype(str).map(squash)
    out = keys.map(TIMEPOINT_SYNONYMS)
    bad = out.isna() & ~missing
    if bad.any():
        raise _unknown_values(
            values.astype(str),
            bad,
            file=file,
            column="timepoint",
            source=source,
            expected="pre, on or post (pre-treatment, baseline, on-treatment, ...)",
            fix="recode it as pre, on or post; or --set timepoint=pre when every "
            "sample was taken before treatment.",
            suggest="pre",
        )
    out = out.where(~missing, "pre")
    raw = values.astype(str)
    changed = {
        v: out[raw == v].iloc[0]
        for v in pd.unique(raw[~missing])
        if v != out[raw == v].iloc[0]
    }
    notes = [f"timepoint: {_describe(changed)}."] if changed else []
    if missing.any():
        notes.append(
            f"timepoint: {int(missing.sum())} empty/NA cell(s) recorded as "
            f"`{schema.TIMEPOINT_ASSUMED}`."
        )
    return out.astype(str), notes


# ----------------------------------------------------------------- numbers


def to_numbers(values: pd.Series, *, file: str, source: str) -> pd.Series:
    """Cells -> float (NaN where empty/NA); non-numbers and infinities raise."""
    missing = is_missing(values)
    numbers = pd.to_numeric(values.where(~missing), errors="coerce").astype(float)
    bad = numbers.isna() & ~missing
    if bad.any():
        examples = ", ".join(f"`{v}`" for v in pd.unique(values[bad].astype(str))[:3])
        comma = values[bad].astype(str).str.fullmatch(r"-?\d+,\d+").any()
        raise DataError(
            Problem(
                file=file,
                column=source,
                rows=rows_of(bad),
                message=f"has non-numeric value(s) {examples}.",
                fix=(
                    "decimal commas found: save the table with '.' as decimal "
                    "separator (or as a comma-separated CSV from an English locale)."
                    if comma
                    else "use plain numbers; leave the cell empty when unknown."
                ),
            )
        )
    infinite = np.isinf(numbers.to_numpy())
    if infinite.any():
        raise DataError(
            Problem(
                file=file,
                column=source,
                rows=rows_of(infinite),
                message="has infinite value(s) (inf).",
                fix="replace them with a finite number or leave the cell empty.",
            )
        )
    return numbers


def normalize_events(
    values: pd.Series, *, file: str, source: str, column: str
) -> tuple[pd.Series, list[str]]:
    """Event indicators (1/0, dead/alive, ...) -> 1.0/0.0 (NaN where unknown)."""
    missing = is_missing(values)
    keys = values.astype(str).str.strip().str.lower().str.replace(" ", "")
    out = keys.map(EVENT_SYNONYMS)
    bad = out.isna() & ~missing
    if bad.any():
        raise _unknown_values(
            values.astype(str),
            bad,
            file=file,
            column=column,
            source=source,
            expected="1/0, dead/alive, deceased/living, yes/no",
            fix="recode it as 1 (event: death or progression) or 0 (censored).",
            suggest="",
        )
    raw = values.astype(str)
    words = {v for v in pd.unique(raw[~missing]) if v.strip() not in {"0", "1"}}
    codes = {v: str(int(EVENT_SYNONYMS[squash_event(v)])) for v in words}
    notes = [f"{column}: {_describe(codes)}."] if codes else []
    return out.astype(float), notes


def squash_event(value: str) -> str:
    return value.strip().lower().replace(" ", "")


def unit_from_name(name: str) -> str | None:
    """A time unit named in a column name (``OS_days`` -> ``days``), else None."""
    for token in re.split(r"[^a-z]+", name.lower()):
        if token in {
            "day",
            "days",
            "week",
            "weeks",
            "month",
            "months",
            "year",
            "years",
        }:
            return token
        if token in {"mo", "mos", "mths"}:
            return "months"
    return None


def survival_to_months(
    values: pd.Series,
    *,
    file: str,
    source: str,
    column: str,
    unit: str | pd.Series | None,
) -> tuple[pd.Series, list[str]]:
    """Survival times -> months.

    Parameters
    ----------
    unit
        One unit for the column (``days``, ``weeks``, ``months``, ``years``), a
        per-row Series of units (a ``survival_unit`` column), or ``None`` to read it
        from the column name and otherwise assume months (said in the notes).
    """
    numbers = to_numbers(values, file=file, source=source)
    negative = numbers < 0
    if negative.any():
        raise DataError(
            Problem(
                file=file,
                column=source,
                rows=rows_of(negative),
                message="has negative survival time(s).",
                fix="survival is time from treatment start to event or censoring; "
                "check the sign.",
            )
        )
    if isinstance(unit, pd.Series):
        units = unit.astype(str).str.strip().str.lower()
        factors = units.map(TIME_UNITS)
        bad = factors.isna() & numbers.notna()
        if bad.any():
            raise _unknown_values(
                unit.astype(str),
                bad,
                file=file,
                column=f"{column} unit",
                source=str(unit.name),
                expected="days, weeks, months or years",
                fix="use one of days, weeks, months, years.",
            )
        found = sorted(set(units[numbers.notna()]))
        if not found:
            return numbers, [f"{column}: `{source}` is empty."]
        note = f"{column}: from `{source}` with units from `{unit.name}` ({', '.join(found)})"  # noqa: E501
        converted = numbers * factors.astype(float)
        if set(found) <= {"month", "months", "mo", "m"}:
            return converted, [note + ", already months."]
        return converted, [note + ", converted to months."]
    named = unit or unit_from_name(source)
    if named is None:
        return numbers, [f"{column}: `{source}` taken as months (no unit given)."]
    factor = TIME_UNITS.get(named.lower())
    if factor is None:
        raise DataError(
            Problem(
                file=file,
                column=source,
                message=f"unknown time unit `{named}`.",
                fix="use --time-unit days, weeks, months or years.",
            )
        )
    if factor == 1.0:
        return numbers, [f"{column}: `{source}` in months."]
    return numbers * factor, [
        f"{column}: `{source}` converted from {named} to months "
        f"(x {factor:.5g}; a month is 365.25/12 days)."
    ]


def fractions_from_percent(
    table: pd.DataFrame, columns: list[str], *, file: str, sources: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """Detect percentages (0-100) in ``frac_*`` columns and convert them to fractions.

    A table whose cell-frequency values exceed 1 is read as percentages and divided
    by 100. Rows that look like fractions in such a table (their frequencies add up
    to at most 1 while other rows add up to several percent) mean the table mixes
    the two scales: that is an error, since no rule can tell which rows are which.
    Negative values and values above 100 are left for bundle validation to report.
    """
    if not columns:
        return table, []
    values = table[columns]
    finite = values.where(np.isfinite(values))
    above = finite > 100
    if above.any().any():
        bad = [c for c in columns if above[c].any()]
        raise DataError(
            Problem(
                file=file,
                column=", ".join(sources.get(c, c) for c in bad),
                rows=rows_of(above.any(axis=1)),
                message="has cell frequencies above 100, which are neither fractions "
                "(0-1) nor percentages (0-100).",
                fix="give fractions of CD45+ immune cells in [0, 1] or percentages "
                "in [0, 100]; counts must be divided by the immune cell total.",
            )
        )
    if not (finite > 1).any().any():
        return table, []
    row_sum = finite.sum(axis=1, min_count=1)
    percent_rows = (finite > 1).any(axis=1)
    typical = row_sum[percent_rows].median()
    fraction_like = ~percent_rows & row_sum.notna() & (row_sum > 0) & (row_sum <= 1.0)
    if typical > 5 and fraction_like.any():
        shown = ", ".join(sources.get(c, c) for c in columns)
        raise DataError(
            Problem(
                file=file,
                column=shown,
                rows=rows_of(fraction_like),
                message="mixes percentages and fractions: most rows hold percentages "
                f"(they add up to ~{typical:.0f}) but these rows look like fractions "
                "(they add up to at most 1).",
                fix="use one scale for the whole table: multiply these rows by 100 "
                "(percentages) or divide the others by 100 (fractions).",
            )
        )
    out = table.copy()
    out[columns] = values / 100.0
    shown = ", ".join(f"`{sources.get(c, c)}`" for c in columns)
    notes = [
        f"cell frequencies {shown} hold values above 1 (up to "
        f"{float(finite.max().max()):g}): read as percentages and divided by 100."
    ]
    for column in columns:
        # a rare population (NK cells: often < 1% of CD45+) can stay below 1 in
        # percent; it is divided too, and the user is told to check
        if finite[column].notna().any() and not (finite[column] > 1).any():
            notes.append(
                f"CHECK: `{sources.get(column, column)}` never exceeds 1 (max "
                f"{float(finite[column].max()):g}) but was divided by 100 as well, "
                "since the table holds percentages; if this column already held "
                "fractions, convert it to percent before importing."
            )
    return out, notes
