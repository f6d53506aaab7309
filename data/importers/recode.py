"""``--recode COLUMN:VALUE=CODE`` and the automatic clean-up of categorical cells.

Published tables mark values with footnotes (``PD*``), vary case (``pd``) and leave
spaces around cells (``PD ``); these are normalized automatically and counted in the
import notes. Anything else a column's vocabulary does not know is mapped by the user
with a recode (empty CODE = missing), on the command line or on the upload page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from data.errors import DataError, Problem
from data.importers import vocab

#: Bundle columns whose cells are categories (recodes and clean-up apply).
CATEGORICAL = ("treatment", "timepoint", "recist", "response", "os_event", "pfs_event")


@dataclass(frozen=True)
class Recode:
    """One ``COLUMN:VALUE=CODE`` rule (``code == ""`` means missing)."""

    column: str
    value: str
    code: str

    @property
    def key(self) -> str:
        return _key(self.value)


def _key(value: object) -> str:
    return vocab.squash(vocab.strip_footnotes(str(value)))


def parse_recodes(
    items: Iterable[str] | None, *, file: str = "--recode"
) -> list[Recode]:
    """``["BOR:PD*=PD", "BOR:Only scanned at baseline="]`` -> rules.

    The column is what comes before the first ``:`` (a source column or a bundle
    column such as ``recist``), the code what comes after the last ``=``.
    """
    rules = []
    for item in items or ():
        column, colon, rest = str(item).partition(":")
        value, equals, code = rest.rpartition("=")
        if not colon or not equals or not column.strip() or not value.strip():
            raise DataError(
                Problem(
                    file=file,
                    message=f"`{item}` is not of the form COLUMN:VALUE=CODE.",
                    fix="write e.g. --recode 'BOR:PD*=PD' or --recode "
                    "'BOR:Only scanned at baseline=' (empty code = missing).",
                )
            )
        rules.append(Recode(column.strip(), value.strip(), code.strip()))
    return rules


def recodes_from_rows(rows: Iterable[Mapping[str, object]]) -> list[Recode]:
    """Rules from the upload page's value table (``column``, ``value``, ``code``);
    rows whose code is left as the value itself are no rule."""
    rules = []
    for row in rows or ():
        column = str(row.get("column") or "").strip()
        value = str(row.get("value") or "").strip()
        code = str(row.get("code") if row.get("code") is not None else "").strip()
        if column and value and code != value:
            rules.append(Recode(column, value, code))
    return rules


def apply_recodes(
    out: pd.DataFrame,
    rules: Sequence[Recode],
    *,
    sources: Mapping[str, str],
    file: str,
) -> tuple[pd.DataFrame, list[str]]:
    """Apply rules to the mapped bundle columns; notes say how many cells changed.

    A rule's column is a bundle column (``recist``) or the source column feeding it
    (``BOR``); values match ignoring case, spaces and footnote marks.
    """
    notes: list[str] = []
    out = out.copy()
    for rule in rules:
        target = _target_of(rule.column, out, sources)
        if target is None:
            raise DataError(
                Problem(
                    file="--recode",
                    column=rule.column,
                    message=f"`{rule.column}` is not a mapped categorical column "
                    f"of {file}.",
                    fix="name the source column (as in the file) or the bundle "
                    "column (" + ", ".join(c for c in CATEGORICAL if c in out) + ").",
                )
            )
        keys = out[target].astype(str).map(_key)
        hit = keys == rule.key
        if not hit.any():
            notes.append(
                f"recode {rule.column}:{rule.value}={rule.code} matched no cell."
            )
            continue
        out.loc[hit, target] = rule.code
        shown = f"`{rule.code}`" if rule.code else "missing"
        notes.append(
            f"{target}: `{rule.value}` -> {shown} in {int(hit.sum())} row(s) "
            "(--recode)."
        )
    return out, notes


def _target_of(
    column: str, out: pd.DataFrame, sources: Mapping[str, str]
) -> str | None:
    if column in CATEGORICAL and column in out:
        return column
    for target in CATEGORICAL:
        spec = sources.get(target, "")
        if target in out and column in [s.strip() for s in spec.split("|")]:
            return target
    return None


def clean_categories(
    out: pd.DataFrame,
    *,
    sources: Mapping[str, str],
    trimmed: Mapping[str, Mapping[str, int]],
) -> tuple[pd.DataFrame, list[str]]:
    """Remove footnote marks from categorical cells; notes count footnote marks and
    the surrounding spaces the reader trimmed (``trimmed``: source -> {raw: n})."""
    out = out.copy()
    notes = []
    for target in CATEGORICAL:
        if target not in out:
            continue
        parts = []
        text = out[target].astype(str).str.strip()
        cleaned = text.map(vocab.strip_footnotes)
        marked = (cleaned != text) & (cleaned != "")
        if marked.any():
            counts = text[marked].value_counts()
            parts.append(
                f"{int(marked.sum())} footnote mark(s) removed ("
                + ", ".join(f"`{v}` x{n}" for v, n in counts.head(6).items())
                + ")"
            )
            out[target] = out[target].where(~marked, cleaned)
        spaced = {
            raw: n
            for source in sources.get(target, "").split("|")
            for raw, n in trimmed.get(source.strip(), {}).items()
        }
        if spaced:
            parts.append(
                f"{sum(spaced.values())} cell(s) with surrounding spaces trimmed ("
                + ", ".join(f"`{v}` x{n}" for v, n in list(spaced.items())[:6])
                + ")"
            )
        if parts:
            notes.append(f"{target}: normalized automatically: " + "; ".join(parts))
    return out, notes


def case_note(target: str, before: pd.Series, after: pd.Series) -> list[str]:
    """A note counting cells whose value changed only in case (``pd`` -> ``PD``)."""
    b, a = before.astype(str), after.astype(str)
    changed = (b != a) & (b.str.lower() == a.str.lower()) & (a != "")
    if not changed.any():
        return []
    return [
        f"{target}: {int(changed.sum())} cell(s) normalized for case ("
        + ", ".join(f"`{v}` x{n}" for v, n in b[changed].value_counts().head(6).items())
        + ")."
    ]


def reads_as(target: str, value: str) -> str:
    """What the import makes of one cell of bundle column ``target`` ("PD",
    "missing", or "unknown: give a code")."""
    series = pd.Series([vocab.strip_footnotes(value)])
    if bool(vocab.is_missing(series).iloc[0]):
        return "missing"
    kwargs = {"file": "upload", "source": target}
    try:
        if target == "treatment":
            out = vocab.normalize_treatment(series, **kwargs)[0]
        elif target == "timepoint":
            out = vocab.normalize_timepoint(series, **kwargs)[0]
        elif target == "recist":
            out = vocab.normalize_recist(series, **kwargs)[0]
        elif target == "response":
            out = vocab.normalize_response(series, **kwargs)[0]
        else:
            out = vocab.normalize_events(series, column=target, **kwargs)[0]
    except DataError:
        return "unknown: give a code"
    shown = out.iloc[0]
    if isinstance(shown, float):
        shown = f"{shown:g}"
    return str(shown) or "missing"
