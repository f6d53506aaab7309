"""Cell sets: named definitions of a group of CD8 cells, kept as text, never as ids.

A set is one or more *terms* joined by ``+`` (a cell must match every term):

``gate``
    cells passing the published Song et al. gate; ``gate:CD69.gt.0~HAVCR2.le.0`` (the
    rule as in the CD8 page's URL, optionally in double quotes) for another gate.
``not:gate`` / ``not:gate:<rule>``
    the other cells.
``state:<name>``
    cells of a differentiation state (the name matches ignoring case).
``response:R`` / ``response:NR``
    every cell of responders / non-responders (under the page's response definition).
``patients:<key>,<key>``
    every cell of these patients (``cohort|patient_id``).
``lasso:<x>,<y>;<x>,<y>;...``
    cells inside a polygon in UMAP coordinates (at least three vertices);
    ``not:lasso:...`` the cells outside it.

``response:R+state:Exhausted (HAVCR2+TOX+)`` is the exhausted cells of responders: a
``+`` starts a new term only when a term name follows it, so state names holding ``+``
stay whole. The same text is used in the URL of ``/compare`` and by ``cli.py de``;
:func:`parse_set` / :func:`set_to_string` convert both ways. A saved set is a name
for such a text, stored per dataset (``parse_set(..., saved=...)`` resolves it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import gating
from analysis.response import NON_RESPONDER, RESPONDER

KINDS = ("gate", "not:gate", "state", "response", "patients", "lasso", "not:lasso")
_TERM_START = r"(?:not:gate|gate|state:|response:|patients:|lasso:|not:lasso:)"
_SPLIT = re.compile(r"\+(?=" + _TERM_START + r")")
MAX_LASSO_VERTICES = 200
RESPONSE_CODES = {"R": RESPONDER, "NR": NON_RESPONDER}


class CellSetError(ValueError):
    """A set definition cannot be read or evaluated; the message says what to change."""


@dataclass(frozen=True)
class Term:
    """One condition of a set: ``kind`` in :data:`KINDS` and its argument."""

    kind: str
    value: str = ""

    def to_string(self) -> str:
        if self.kind in ("gate", "not:gate"):
            return self.kind + (f":{self.value}" if self.value else "")
        return f"{self.kind}:{self.value}"

    def label(self) -> str:
        """Reader's words: ``gate+ (Song et al. CD8 state)``, ``state Exhausted``."""
        if self.kind in ("gate", "not:gate"):
            gate = gating.parse_gate(self.value)
            sign = "in" if self.kind == "gate" else "not in"
            return f"cells {sign} gate {gate.display_name} ({gate.phenotype})"
        if self.kind == "state":
            return f"state {self.value}"
        if self.kind == "response":
            return RESPONSE_CODES[self.value].lower() + "s"
        if self.kind == "patients":
            n = len(self.value.split(","))
            return f"{n} chosen patient{'s' if n != 1 else ''}"
        where = "outside" if self.kind == "not:lasso" else "inside"
        return f"cells {where} a lasso ({len(self.value.split(';'))} vertices, UMAP)"


@dataclass(frozen=True)
class CellSet:
    """A set definition: terms that must all hold, and an optional name."""

    terms: tuple[Term, ...]
    name: str = ""

    def to_string(self) -> str:
        return set_to_string(self)

    @property
    def label(self) -> str:
        """``name`` if given, else the terms in words joined by 'and'."""
        return self.name or " and ".join(t.label() for t in self.terms)

    @property
    def patient_only(self) -> bool:
        """True when membership depends only on the patient (response, patients)."""
        return all(t.kind in ("response", "patients") for t in self.terms)


def _parse_term(text: str) -> Term:
    text = text.strip()
    if text in ("gate", "not:gate"):
        return Term(text)
    for kind in ("not:gate", "gate"):
        if text.startswith(kind + ":"):
            rule = text[len(kind) + 1 :].strip().strip('"').strip()
            try:
                gate = gating.parse_gate(rule)
            except gating.GateError as err:
                raise CellSetError(f"set term {text!r}: {err}") from None
            rule = gating.gate_to_string(gate)
            published = gating.gate_to_string(gating.default_gate())
            return Term(kind, "" if rule == published else rule)
    if text.startswith("not:lasso:"):
        polygon = parse_polygon(text[len("not:lasso:") :].strip())
        return Term("not:lasso", polygon_to_string(polygon))
    if ":" not in text:
        raise CellSetError(
            f"cannot read set term {text!r}; use gate, not:gate, state:<name>, "
            "response:R or response:NR, patients:<cohort|id>,..., lasso:x,y;x,y;x,y "
            "or the name of a saved set"
        )
    kind, value = text.split(":", 1)
    value = value.strip().strip('"').strip()
    if kind == "state":
        if not value:
            raise CellSetError("state: needs a state name, e.g. state:Naive/stem-like")
        return Term("state", value)
    if kind == "response":
        code = value.upper()
        if code not in RESPONSE_CODES:
            raise CellSetError(f"response:{value} - use response:R or response:NR")
        return Term("response", code)
    if kind == "patients":
        keys = [k.strip() for k in value.split(",") if k.strip()]
        if not keys or any("|" not in k for k in keys):
            raise CellSetError(
                f"patients:{value} - list patient keys cohort|patient_id separated "
                "by commas, e.g. patients:SYN-A|P001,SYN-B|P002"
            )
        return Term("patients", ",".join(sorted(set(keys))))
    if kind == "lasso":
        polygon = parse_polygon(value)
        return Term("lasso", polygon_to_string(polygon))
    raise CellSetError(
        f"unknown set term {kind!r} in {text!r}; terms are gate, not:gate, state, "
        "response, patients, lasso"
    )


def parse_set(text: str, *, saved: Mapping[str, str] | None = None) -> CellSet:
    """Read a set definition (or the name of a saved set).

    Parameters
    ----------
    text
        The definition, e.g. ``gate``, ``not:gate``, ``response:R+state:Exhausted
        (HAVCR2+TOX+)``.
    saved
        Saved sets of the dataset, name -> definition; a text equal to a saved
        name (ignoring case) is that set, named.

    Raises
    ------
    CellSetError
        The text is empty or a term cannot be read.
    """
    text = (text or "").strip()
    if not text:
        raise CellSetError("the set is empty; e.g. gate, not:gate or state:<name>")
    for name, definition in (saved or {}).items():
        if name.casefold() == text.casefold():
            inner = parse_set(definition)
            return CellSet(inner.terms, name=name)
    terms = tuple(_parse_term(part) for part in _SPLIT.split(text))
    kinds = [t.kind for t in terms]
    for kind in ("gate", "not:gate", "response", "lasso", "not:lasso"):
        if kinds.count(kind) > 1:
            raise CellSetError(f"{kind} appears twice in {text!r}")
    return CellSet(terms)


def set_to_string(cell_set: CellSet) -> str:
    """The URL / CLI form of a set (terms joined by ``+``)."""
    return "+".join(t.to_string() for t in cell_set.terms)


def parse_polygon(text: str) -> np.ndarray:
    """``x,y;x,y;x,y`` -> ``(n, 2)`` float array (3 to 200 finite vertices)."""
    try:
        points = np.array(
            [[float(v) for v in pair.split(",")] for pair in text.split(";") if pair],
            dtype=float,
        )
    except ValueError:
        points = np.empty((0, 0))
    if points.ndim != 2 or points.shape[1:] != (2,) or not np.isfinite(points).all():
        raise CellSetError(
            f"lasso:{text[:60]} - expected x,y pairs separated by ';' (UMAP units)"
        )
    if not 3 <= len(points) <= MAX_LASSO_VERTICES:
        raise CellSetError(
            f"a lasso needs 3 to {MAX_LASSO_VERTICES} vertices, not {len(points)}"
        )
    return points


def polygon_to_string(points: np.ndarray | Sequence[Sequence[float]]) -> str:
    """Polygon in UMAP units, 3 decimals (sub-pixel on any UMAP plot)."""
    return ";".join(f"{x:.3f},{y:.3f}" for x, y in np.asarray(points, dtype=float))


def polygon_from_lasso(selected: Mapping | None) -> str:
    """The polygon of a plotly ``selectedData`` lasso (``lassoPoints``), or ``""``."""
    lasso = (selected or {}).get("lassoPoints") or {}
    xs, ys = list(lasso.get("x", [])), list(lasso.get("y", []))
    if len(xs) < 3 or len(xs) != len(ys):
        return ""
    points = np.column_stack([xs, ys]).astype(float)
    if len(points) > MAX_LASSO_VERTICES:  # keep evenly spaced vertices
        keep = np.linspace(0, len(points) - 1, MAX_LASSO_VERTICES).astype(int)
        points = points[keep]
    return polygon_to_string(points)


# ------------------------------------------------------------------ evaluation
@dataclass(frozen=True)
class CellContext:
    """The cells a set is evaluated on (the CD8 cells of the filtered samples).

    Attributes
    ----------
    patients
        One row per patient: ``key`` (``cohort|patient_id``), ``group`` (response
        group under the chosen definition, NA when not evaluable), and patient fields
        (``cohort``, ``tumor_type`` ...).
    patient_codes
        Row of ``patients`` for each cell.
    state_codes, state_names
        Differentiation state of each cell (code -1: none).
    umap
        ``(n_cells, 2)`` embedding of these cells, or ``None``.
    expression
        Gene -> log-normalized expression of these cells.
    genes
        Genes of the data.
    """

    patients: pd.DataFrame
    patient_codes: np.ndarray
    state_codes: np.ndarray
    state_names: list[str]
    umap: np.ndarray | None
    expression: Callable[[str], np.ndarray]
    genes: pd.Index

    @property
    def n_cells(self) -> int:
        return len(self.patient_codes)


def _match_state(value: str, names: Sequence[str]) -> int:
    folded = value.casefold()
    for code, name in enumerate(names):
        if name.casefold() == folded:
            return code
    raise CellSetError(
        f"state {value!r} is not a state of this dataset; states: " + "; ".join(names)
    )


def _gate_mask(term: Term, ctx: CellContext) -> np.ndarray:
    gate = gating.with_dataset_spelling(gating.parse_gate(term.value), ctx.genes)
    missing = gating.missing_markers(gate, ctx.genes)
    if missing:
        raise CellSetError(
            f"the gate needs {', '.join(missing)}, which this dataset lacks; give a "
            "gate rule without them (gate:<rule> as in the CD8 page's URL)"
        )
    result = gating.evaluate_gate(
        gate, ctx.expression, available=ctx.genes, n_cells=ctx.n_cells
    )
    return result.in_gate


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of ``points`` inside ``polygon`` (even-odd rule, as plotly's
    lasso; points on the boundary may fall either way)."""
    from matplotlib.path import Path

    return Path(polygon).contains_points(points)


def evaluate_set(cell_set: CellSet, ctx: CellContext) -> np.ndarray:
    """Boolean mask over the context's cells: cells matching every term.

    Raises
    ------
    CellSetError
        A state, patient or gate marker is not in the data, or a lasso is asked
        for on data without a UMAP.
    """
    mask = np.ones(ctx.n_cells, dtype=bool)
    for term in cell_set.terms:
        if term.kind == "gate":
            mask &= _gate_mask(term, ctx)
        elif term.kind == "not:gate":
            mask &= ~_gate_mask(term, ctx)
        elif term.kind == "state":
            mask &= ctx.state_codes == _match_state(term.value, ctx.state_names)
        elif term.kind == "response":
            group = ctx.patients["group"].astype("string")
            wanted = (group == RESPONSE_CODES[term.value]).fillna(False).to_numpy()
            mask &= wanted[ctx.patient_codes]
        elif term.kind == "patients":
            keys = term.value.split(",")
            known = set(ctx.patients["key"])
            unknown = [k for k in keys if k not in known]
            if len(unknown) == len(keys):
                raise CellSetError(
                    "none of the patients " + ", ".join(unknown[:5]) + " has CD8 "
                    "cells in this view (check the filter and the cohort|id keys)"
                )
            wanted = ctx.patients["key"].isin(keys).to_numpy()
            mask &= wanted[ctx.patient_codes]
        elif term.kind in ("lasso", "not:lasso"):
            if ctx.umap is None:
                raise CellSetError("this dataset has no UMAP, so a lasso cannot apply")
            inside = points_in_polygon(ctx.umap, parse_polygon(term.value))
            mask &= inside if term.kind == "lasso" else ~inside
    return mask


def expand_saved(text: str, saved: Mapping[str, str]) -> str:
    """The definition behind a saved set's name (``text`` itself otherwise)."""
    for name, definition in saved.items():
        if name.casefold() == text.strip().casefold():
            return definition
    return text
