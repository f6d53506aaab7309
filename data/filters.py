"""The global cohort filter: which samples and patients every page looks at.

The filter holds the user's choices only (never data), so it travels in a Store and in
the URL query string; the server derives the filtered frame from it on each request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qs, urlencode

import pandas as pd

from data import schema

#: Query-string keys of the global filter (pages add their own keys beside these).
QUERY_KEYS = ("dataset", *schema.FILTER_FIELDS)


def _as_tuple(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value if v not in (None, ""))  # type: ignore[union-attr]


@dataclass(frozen=True)
class CohortFilter:
    """Selected values per field; an empty tuple means 'all'.

    ``response`` matches a patient's RECIST category (CR, PR, SD, PD, NE) or the
    study-reported response (R, NR); ``"none"`` selects patients with neither.
    """

    dataset: str = ""
    tumor_type: tuple[str, ...] = field(default_factory=tuple)
    treatment: tuple[str, ...] = field(default_factory=tuple)
    cohort: tuple[str, ...] = field(default_factory=tuple)
    timepoint: tuple[str, ...] = field(default_factory=tuple)
    response: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None) -> CohortFilter:
        """Build from a Store dict or parsed query (unknown keys are ignored)."""
        values = values or {}
        dataset = values.get("dataset") or ""
        if not isinstance(dataset, str):
            dataset = _as_tuple(dataset)[0] if _as_tuple(dataset) else ""
        return cls(
            dataset=dataset,
            **{f: _as_tuple(values.get(f)) for f in schema.FILTER_FIELDS},
        )

    @classmethod
    def from_query(cls, search: str | None) -> CohortFilter:
        """Parse ``?tumor_type=melanoma&tumor_type=NSCLC&dataset=demo``."""
        parsed = parse_qs((search or "").lstrip("?"), keep_blank_values=False)
        return cls.from_mapping({k: v for k, v in parsed.items() if k in QUERY_KEYS})

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (lists, not tuples) for a ``dcc.Store``."""
        return {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
        }

    def to_query(self) -> str:
        """Query string (without ``?``) with only the fields that are set."""
        pairs: list[tuple[str, str]] = []
        if self.dataset:
            pairs.append(("dataset", self.dataset))
        for name in schema.FILTER_FIELDS:
            pairs += [(name, v) for v in getattr(self, name)]
        return urlencode(pairs)

    def describe(self) -> str:
        """Human-readable summary for captions and provenance."""
        parts = [
            f"{name.replace('_', ' ')}: {', '.join(getattr(self, name))}"
            for name in schema.FILTER_FIELDS
            if getattr(self, name)
        ]
        return "; ".join(parts) if parts else "no filter (all samples)"


def _no_response(cohort: pd.DataFrame) -> pd.Series:
    missing = cohort["recist"].isna()
    if "response" in cohort.columns:
        missing &= cohort["response"].isna()
    return missing


def apply_filter(cohort: pd.DataFrame, flt: CohortFilter) -> pd.DataFrame:
    """Return the samples that pass the filter (a new frame; the input is untouched).

    Parameters
    ----------
    cohort
        Typed cohort table of a bundle.
    flt
        The filter; empty fields do not restrict. ``response`` values match either
        the RECIST column or the study-reported ``response`` column; ``"none"``
        matches samples with neither.
    """
    keep = pd.Series(True, index=cohort.index)
    for name in ("tumor_type", "treatment", "cohort", "timepoint"):
        chosen = getattr(flt, name)
        if chosen:
            keep &= cohort[name].isin(chosen)
    if flt.response:
        chosen = set(flt.response)
        match = cohort["recist"].isin(chosen)
        if "response" in cohort.columns:
            match |= cohort["response"].isin(chosen)
        if "none" in chosen:
            match |= _no_response(cohort)
        keep &= match
    return cohort.loc[keep].copy()


def filter_options(cohort: pd.DataFrame) -> dict[str, list[str]]:
    """Values each filter field can take in a cohort, in a stable, readable order."""
    order = {
        "timepoint": list(schema.TIMEPOINTS),
        "treatment": list(schema.TREATMENTS),
    }
    options: dict[str, list[str]] = {}
    for name in ("tumor_type", "treatment", "cohort", "timepoint"):
        present = set(cohort[name].dropna().astype(str))
        if name in order:
            options[name] = [v for v in order[name] if v in present]
        else:
            options[name] = sorted(present)
    present = set(cohort["recist"].dropna())
    if "response" in cohort.columns:
        present |= set(cohort["response"].dropna())
    if _no_response(cohort).any():
        present.add("none")
    options["response"] = [
        v
        for v in (*schema.RECIST_VALUES, *schema.RESPONSE_VALUES, "none")
        if v in present
    ]
    return options
