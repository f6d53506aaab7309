"""The global cohort filter: which samples and patients every page looks at.

The filter holds the user's choices only (never data), so it travels in a Store and in
the URL query string; the server derives the filtered frame from it on each request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import parse_qs, urlencode

import pandas as pd

from data import schema
from data.errors import DataError, Problem

#: Query-string keys of the global filter (pages add their own keys beside these).
QUERY_KEYS = ("dataset", *schema.FILTER_FIELDS)

#: Each filter key as the sidebar labels it (notices and CLI messages use these words).
FIELD_LABELS = {
    "dataset": "Dataset",
    "tumor_type": "Tumor type",
    "treatment": "Treatment",
    "cohort": "Cohort",
    "timepoint": "Timepoint",
    "response": "Response",
}

#: "all ..." in the reader's words, for what an unrestricted field shows.
FIELD_PLURALS = {
    "tumor_type": "tumor types",
    "treatment": "treatments",
    "cohort": "cohorts",
    "timepoint": "timepoints",
    "response": "response categories",
}

#: An unknown value as the resolver reports it: (query key, value as given).
Unknown = tuple[str, str]


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


def sort_categories(values) -> list[str]:
    """Category labels in reading order: case-insensitive (HNSCC, melanoma, NSCLC).

    Plain ``sorted`` puts every capitalised label before every lower-case one;
    ties between spellings that differ only in case keep a stable, exact order.
    """
    return sorted((str(v) for v in values), key=lambda v: (v.casefold(), v))


def filter_options(cohort: pd.DataFrame) -> dict[str, list[str]]:
    """Values each filter field can take in a cohort, in a stable, readable order.

    Timepoints, treatments and response categories follow the schema's order;
    tumor types and cohorts are sorted alphabetically, ignoring case.
    """
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
            options[name] = sort_categories(present)
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


def _normal(value: str) -> str:
    """Comparison form of a filter value: case and runs of spaces do not count."""
    return " ".join(str(value).split()).casefold()


def match_value(value: str, allowed: Sequence[str]) -> str | None:
    """The allowed value ``value`` names, ignoring case and extra spaces; else None.

    An exact match wins over a case-insensitive one, so a dataset that has both
    ``NSCLC`` and ``nsclc`` keeps them apart.
    """
    if value in allowed:
        return value
    wanted = _normal(value)
    return next((a for a in allowed if _normal(a) == wanted), None)


FilterOptions = Mapping[str, Sequence[str]]


def resolve_filter(
    flt: CohortFilter,
    options: FilterOptions | Callable[[str], FilterOptions],
    *,
    datasets: Sequence[str] | None = None,
    default_dataset: str = "",
) -> tuple[CohortFilter, list[Unknown]]:
    """Match a filter's values to what a dataset offers; report what matches nothing.

    The one place where a link (``?tumor_type=Melanoma``), a sidebar choice or a
    CLI flag becomes the filter that is applied: values match case-insensitively
    and are returned in the dataset's own spelling; each value that matches
    nothing is dropped and reported, so callers can say so (never a silent
    fallback).

    Parameters
    ----------
    flt
        The filter as asked for.
    options
        Values each field can take (:func:`filter_options` of the dataset's
        cohort), or a function from the resolved dataset name to them, needed when
        ``datasets`` is given (an unknown dataset falls back to the default, whose
        options then apply).
    datasets
        Dataset names that exist; None leaves ``flt.dataset`` as it is (e.g. a CLI
        bundle path, checked when it is loaded).
    default_dataset
        Shown when ``flt.dataset`` is empty or names no dataset in ``datasets``.

    Returns
    -------
    tuple
        ``(resolved, unknown)``: the filter to apply, and ``(key, value)`` for each
        value asked for that matches nothing, in the order asked (``key`` is the
        query key: ``dataset``, ``tumor_type``, ...).

    Examples
    --------
    >>> options = {"tumor_type": ["melanoma", "NSCLC"], "timepoint": ["pre"]}
    >>> resolve_filter(CohortFilter(tumor_type=("Melanoma", "martian")), options)
    (CohortFilter(dataset='', tumor_type=('melanoma',), treatment=(), cohort=(), \
timepoint=(), response=()), [('tumor_type', 'martian')])
    """
    unknown: list[Unknown] = []
    dataset = flt.dataset
    if datasets is not None:
        found = match_value(dataset, datasets) if dataset else None
        if dataset and found is None:
            unknown.append(("dataset", dataset))
        dataset = found or default_dataset
    elif not dataset:
        dataset = default_dataset
    values = options(dataset) if callable(options) else options
    chosen: dict[str, tuple[str, ...]] = {}
    for name in schema.FILTER_FIELDS:
        allowed = list(values.get(name, ()))
        kept: list[str] = []
        for value in getattr(flt, name):
            found = match_value(value, allowed)
            if found is None:
                unknown.append((name, value))
            elif found not in kept:
                kept.append(found)
        chosen[name] = tuple(kept)
    return replace(flt, dataset=dataset, **chosen), unknown


def shown_instead(key: str, resolved: CohortFilter, dataset_title: str = "") -> str:
    """What a view shows in place of an unknown value, in the reader's words.

    "all tumor types" when nothing of that field is left, "only melanoma" when other
    chosen values remain, "the default dataset “<title>”" for a dataset.
    """
    if key == "dataset":
        return f"the default dataset “{dataset_title or resolved.dataset}”"
    kept = getattr(resolved, key)
    if kept:
        return f"only {', '.join(kept)}"
    return f"all {FIELD_PLURALS[key]}"


#: How the CLI spells each filter key (``cli.py stats`` and the export filter).
CLI_FLAGS = {
    "dataset": "--dataset",
    "tumor_type": "--tumor-type",
    "treatment": "--treatment",
    "cohort": "--cohort",
    "timepoint": "--timepoint",
    "response": "--response",
}


def require_known_values(
    flt: CohortFilter,
    options: FilterOptions,
    *,
    flags: Mapping[str, str] | None = None,
    source: str = "filter",
) -> CohortFilter:
    """:func:`resolve_filter` for scripts: a value that matches nothing is an error.

    A script that asked for ``--tumor-type martian`` must not silently analyse all
    tumor types, so every value that matches nothing is reported with the values
    that would match.

    Parameters
    ----------
    flt
        The filter asked for; ``flt.dataset`` is kept as given (load the bundle
        first and pass its :func:`filter_options`).
    options
        Values each field can take in the dataset.
    flags
        How the user typed each key (``--tumor-type``); default :data:`CLI_FLAGS`.
    source
        Where the values came from, for the message (``filter``, ``settings.json``).

    Returns
    -------
    CohortFilter
        The filter in the dataset's own spelling (values match ignoring case).

    Raises
    ------
    data.errors.DataError
        One problem per value that matches nothing, listing the valid values.
    """
    resolved, unknown = resolve_filter(flt, options)
    if not unknown:
        return resolved
    flags = CLI_FLAGS if flags is None else flags
    problems = []
    for key, value in unknown:
        valid = list(options.get(key, ()))
        problems.append(
            Problem(
                file=source,
                message=f"{flags.get(key, key)} {value!r} matches no "
                f"{FIELD_LABELS[key].lower()} in this dataset.",
                fix=(
                    "use one of (case does not matter): " + ", ".join(valid)
                    if valid
                    else f"this dataset has no {FIELD_LABELS[key].lower()} "
                    "values; drop the filter."
                ),
            )
        )
    raise DataError(problems)
