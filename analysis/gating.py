"""Phenotype gates on single-cell expression, and their per-patient statistics.

A gate is a list of markers, each a gene with a sign and a threshold on log-normalized
expression:

* ``+`` (positive): the cell passes when its expression is **strictly greater** than
  the threshold;
* ``-`` (negative): the cell passes when its expression is **at most** the threshold.

A cell is in the gate when it passes every evaluated marker. The default threshold is
``0``: with log-normalized counts ``> 0`` means "at least one transcript detected", the
usual reading of a ``+`` in scRNA-seq gating, and ``<= 0`` means "not detected". Values
exactly on a threshold therefore count as negative, for both signs.

Statistics are per patient: the fraction of each patient's CD8 cells in the gate; cells
are never treated as independent samples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from data.schema import PROTEIN_NAMES, SONG_GATE

#: Default threshold for every marker (log-normalized expression; see module doc).
DEFAULT_THRESHOLD = 0.0
DEFAULT_GATE_NAME = "Song et al. CD8 state"
#: Name of a gate that differs from the published one and was not named by the user.
CUSTOM_GATE_NAME = "custom (modified from Song et al.)"
SIGNS = ("+", "-")
#: Separators of the URL form: characters that need no escaping in a query string
#: and do not occur in gene symbols.
_MARKER_SEP = "~"
_SIGN_CODES = {"+": "gt", "-": "le"}
_CODE_SIGNS = {v: k for k, v in _SIGN_CODES.items()}
_MARKER_RE = re.compile(r"^(?P<gene>.+)\.(?P<sign>gt|le)\.(?P<threshold>[-+0-9.eE]+)$")
MAX_MARKERS = 12


class GateError(ValueError):
    """A gate cannot be parsed or evaluated; the message says what to change."""


class MissingMarkersError(GateError):
    """Gate genes are absent from the data and the user has not accepted that."""

    def __init__(self, missing: Sequence[str]):
        self.missing = tuple(missing)
        super().__init__(
            f"the data lack gate marker(s) {', '.join(self.missing)}; evaluate the "
            "gate without them only if you accept that"
        )


@dataclass(frozen=True)
class Marker:
    """One gate condition.

    Attributes
    ----------
    gene
        Gene symbol as in ``var_names``.
    sign
        ``"+"`` (expression > threshold) or ``"-"`` (expression <= threshold).
    threshold
        Cut-off on log-normalized expression.
    """

    gene: str
    sign: str = "+"
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self):
        if self.sign not in SIGNS:
            raise GateError(f"marker sign must be '+' or '-', not {self.sign!r}")
        if not np.isfinite(self.threshold):
            raise GateError(f"threshold of {self.gene} must be a finite number")

    @property
    def label(self) -> str:
        """``HAVCR2- (TIM-3)``: gene, sign and protein name where it differs."""
        protein = PROTEIN_NAMES.get(self.gene)
        extra = f" ({protein})" if protein and protein != self.gene else ""
        return f"{self.gene}{self.sign}{extra}"

    @property
    def rule(self) -> str:
        """``CD69 > 0`` / ``HAVCR2 <= 0``."""
        op = ">" if self.sign == "+" else "≤"
        return f"{self.gene} {op} {self.threshold:g}"

    def passes(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of cells passing this marker."""
        values = np.asarray(values)
        if self.sign == "+":
            return values > self.threshold
        return values <= self.threshold


@dataclass(frozen=True)
class Gate:
    """An ordered set of markers, and the name the user gave it (``""``: none).

    Show :attr:`display_name`, never ``name``: a gate that differs from the published
    one must not carry the published name (see :func:`gate_display_name`).
    """

    markers: tuple[Marker, ...]
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "name", user_gate_name(self.name))

    @property
    def display_name(self) -> str:
        """The name every figure, caption and export shows."""
        return gate_display_name(self)

    @property
    def genes(self) -> list[str]:
        return [m.gene for m in self.markers]

    @property
    def phenotype(self) -> str:
        """``CD69+ BCL2+ EOMES+ GZMB+ HAVCR2- TNFRSF18-``."""
        return " ".join(f"{m.gene}{m.sign}" for m in self.markers)

    def marker(self, gene: str) -> Marker:
        for m in self.markers:
            if m.gene == gene:
                return m
        raise KeyError(gene)

    def with_marker(self, marker: Marker) -> Gate:
        """A copy with ``marker`` replacing the marker of the same gene (or added)."""
        markers = [marker if m.gene == marker.gene else m for m in self.markers]
        if marker.gene not in self.genes:
            markers.append(marker)
        return replace(self, markers=tuple(markers))

    def without(self, gene: str) -> Gate:
        """A copy without the marker of ``gene``."""
        return replace(self, markers=tuple(m for m in self.markers if m.gene != gene))


def default_gate() -> Gate:
    """The Song et al. gate CD69+ BCL2+ EOMES+ GZMB+ HAVCR2- TNFRSF18-, thresholds 0."""
    return Gate(
        markers=tuple(
            Marker(gene, sign, DEFAULT_THRESHOLD) for gene, _, sign in SONG_GATE
        )
    )


def user_gate_name(name: str | None) -> str:
    """The name a user gave a gate, ``""`` when none (at most 80 characters).

    The two names the app gives itself (the published and the custom one) are not a
    user's name: a link written before this rule carried ``gate_name=Song et al. CD8
    state`` for every gate, modified or not.
    """
    text = " ".join((name or "").split())[:80]
    return "" if text in (DEFAULT_GATE_NAME, CUSTOM_GATE_NAME) else text


def is_published_gate(gate: Gate) -> bool:
    """True when ``gate`` has exactly the published markers, signs and thresholds
    (in any order: a cell passes every marker, so the order does not matter)."""
    published = {(m.gene, m.sign, float(m.threshold)) for m in default_gate().markers}
    mine = [(m.gene, m.sign, float(m.threshold)) for m in gate.markers]
    return len(mine) == len(published) and set(mine) == published


def gate_display_name(gate: Gate) -> str:
    """The name shown for ``gate`` in every figure, caption and export.

    The user's own name when they typed one; otherwise the published name
    (:data:`DEFAULT_GATE_NAME`) only while the gate is the published one, and
    :data:`CUSTOM_GATE_NAME` as soon as a marker, sign or threshold differs.
    """
    if gate.name:
        return gate.name
    return DEFAULT_GATE_NAME if is_published_gate(gate) else CUSTOM_GATE_NAME


def gate_to_string(gate: Gate) -> str:
    """URL-safe form: ``CD69.gt.0~HAVCR2.le.0.5`` (``gt`` = '+', ``le`` = '-')."""
    return _MARKER_SEP.join(
        f"{m.gene}.{_SIGN_CODES[m.sign]}.{m.threshold:g}" for m in gate.markers
    )


def parse_gate(text: str | None, *, name: str | None = None) -> Gate:
    """Parse :func:`gate_to_string` output; empty text gives :func:`default_gate`.

    Raises
    ------
    GateError
        A marker is malformed, repeated, or there are more than ``MAX_MARKERS``.
    """
    gate_name = user_gate_name(name)
    if text is None or not str(text).strip():
        return replace(default_gate(), name=gate_name)
    markers: list[Marker] = []
    for part in str(text).strip().split(_MARKER_SEP):
        match = _MARKER_RE.match(part)
        if not match:
            raise GateError(
                f"cannot read gate marker {part!r}; expected GENE.gt.THRESHOLD or "
                "GENE.le.THRESHOLD, e.g. CD69.gt.0"
            )
        try:
            threshold = float(match["threshold"])
        except ValueError:
            raise GateError(f"threshold of {match['gene']} is not a number") from None
        gene = match["gene"]
        if gene in (m.gene for m in markers):
            raise GateError(f"gene {gene} appears twice in the gate")
        markers.append(Marker(gene, _CODE_SIGNS[match["sign"]], threshold))
    if len(markers) > MAX_MARKERS:
        raise GateError(f"a gate has at most {MAX_MARKERS} markers")
    return Gate(markers=tuple(markers), name=gate_name)


def with_dataset_spelling(gate: Gate, available: Sequence[str] | pd.Index) -> Gate:
    """The gate with each gene spelled as the dataset spells it.

    A link typed by hand (``gate=cd69.gt.0``) names the same gene as ``CD69``; the
    gene then matches ignoring case. Genes with no match are kept as written (they
    are reported as missing markers, never silently dropped).

    Raises
    ------
    GateError
        Two markers name the same gene once spelled as the dataset does.
    """
    by_folded = {str(g).casefold(): str(g) for g in available}
    markers = []
    for marker in gate.markers:
        gene = by_folded.get(marker.gene.casefold(), marker.gene)
        if gene in (m.gene for m in markers):
            raise GateError(f"gene {gene} appears twice in the gate")
        markers.append(replace(marker, gene=gene))
    return replace(gate, markers=tuple(markers))


def missing_markers(gate: Gate, available: Sequence[str] | pd.Index) -> list[str]:
    """Gate genes absent from ``available`` (in gate order)."""
    present = set(available)
    return [g for g in gate.genes if g not in present]


def missing_note(missing: Sequence[str]) -> str:
    """``gate evaluated without BCL2, TNFRSF18`` (empty when nothing is missing)."""
    return f"gate evaluated without {', '.join(missing)}" if missing else ""


@dataclass(frozen=True)
class GateResult:
    """Gate membership of cells.

    Attributes
    ----------
    in_gate
        Boolean per cell.
    evaluated
        Markers actually evaluated.
    missing
        Gate genes absent from the data (skipped because the user accepted it).
    per_marker
        Fraction of cells passing each evaluated marker on its own.
    ranges
        Observed (min, max) expression of each evaluated marker in these cells.
    """

    in_gate: np.ndarray
    evaluated: tuple[Marker, ...]
    missing: tuple[str, ...] = ()
    per_marker: dict[str, float] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return int(self.in_gate.sum())

    @property
    def empty(self) -> bool:
        """No cell passes the gate: there is nothing to compare."""
        return self.n_in == 0

    @property
    def warnings(self) -> list[str]:
        """:func:`threshold_warnings` of this result."""
        return threshold_warnings(self.evaluated, self.ranges)

    @property
    def note(self) -> str:
        return missing_note(self.missing)


ExpressionSource = Callable[[str], np.ndarray] | Mapping[str, np.ndarray]


def _getter(expression: ExpressionSource) -> Callable[[str], np.ndarray]:
    if isinstance(expression, Mapping):
        return expression.__getitem__
    return expression


def evaluate_gate(
    gate: Gate,
    expression: ExpressionSource,
    *,
    available: Sequence[str] | pd.Index,
    n_cells: int,
    accept_missing: bool = False,
    cells: np.ndarray | None = None,
) -> GateResult:
    """Which cells pass every marker of ``gate``.

    Parameters
    ----------
    gate
        The gate.
    expression
        Gene -> expression of all cells (a mapping, or a function such as
        ``CellStore.gene``).
    available
        Genes of the data set.
    n_cells
        Number of cells (the length of every expression vector).
    accept_missing
        Evaluate the gate on the markers present when some are missing. Without it,
        missing markers raise :class:`MissingMarkersError`.
    cells
        Optional index (or boolean mask) of the cells to evaluate; the result then
        has one entry per selected cell.

    Raises
    ------
    MissingMarkersError
        Markers are missing and ``accept_missing`` is false.
    GateError
        The gate has no marker present in the data.
    """
    missing = missing_markers(gate, available)
    if missing and not accept_missing:
        raise MissingMarkersError(missing)
    evaluated = tuple(m for m in gate.markers if m.gene not in missing)
    if not evaluated:
        raise GateError(
            "none of the gate's markers is in the data; add a marker that is"
        )
    get = _getter(expression)
    size = n_cells if cells is None else len(np.arange(n_cells)[cells])
    in_gate = np.ones(size, dtype=bool)
    per_marker, ranges = {}, {}
    for marker in evaluated:
        values = get(marker.gene)
        if cells is not None:
            values = values[cells]
        passes = marker.passes(values)
        per_marker[marker.gene] = float(passes.mean()) if size else float("nan")
        if size:
            ranges[marker.gene] = (float(np.min(values)), float(np.max(values)))
        in_gate &= passes
    return GateResult(in_gate, evaluated, tuple(missing), per_marker, ranges)


def threshold_warnings(
    markers: Sequence[Marker], ranges: Mapping[str, tuple[float, float]]
) -> list[str]:
    """A warning for each threshold outside the observed expression range.

    Such a threshold does not split the cells: the marker passes every cell or none.

    Parameters
    ----------
    markers
        The evaluated markers.
    ranges
        Gene -> (min, max) expression in the cells the gate was evaluated on.

    Returns
    -------
    list of str
        E.g. "CD69 threshold 99 is outside the observed CD69 range in the filtered
        cells (0.00 to 4.20): no cell passes CD69+".
    """
    out = []
    for marker in markers:
        if marker.gene not in ranges:
            continue
        low, high = ranges[marker.gene]
        threshold = marker.threshold
        if low <= threshold <= high:
            continue
        above = threshold > high
        # '+' passes above the threshold, '-' at or below it
        none_pass = above if marker.sign == "+" else not above
        out.append(
            f"{marker.gene} threshold {threshold:g} is outside the observed "
            f"{marker.gene} range in the filtered cells ({low:.2f} to {high:.2f}): "
            f"{'no cell passes' if none_pass else 'every cell passes'} "
            f"{marker.gene}{marker.sign}"
        )
    return out


def patient_fractions(
    in_gate: np.ndarray, patient_codes: np.ndarray, n_patients: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells in the gate, cells in total and their fraction per patient.

    Parameters
    ----------
    in_gate
        Boolean per cell.
    patient_codes
        Integer patient index per cell (``0 .. n_patients-1``; negative = no patient,
        such cells are ignored).
    n_patients
        Number of patients.

    Returns
    -------
    (n_in, n_cells, fraction)
        Arrays of length ``n_patients``; ``fraction`` is ``NaN`` for a patient
        without cells.
    """
    codes = np.asarray(patient_codes)
    keep = codes >= 0
    codes = codes[keep]
    gate = np.asarray(in_gate, dtype=bool)[keep]
    n_cells = np.bincount(codes, minlength=n_patients)[:n_patients]
    n_in = np.bincount(codes, weights=gate, minlength=n_patients)[:n_patients]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(n_cells > 0, n_in / np.maximum(n_cells, 1), np.nan)
    return n_in.astype(np.int64), n_cells.astype(np.int64), fraction


@dataclass(frozen=True)
class Association:
    """Per-patient values compared between responders and non-responders.

    ``auc`` is P(value of a responder > value of a non-responder) + half the ties,
    i.e. the Mann-Whitney U of the responders divided by ``n_pos * n_neg``; ``p`` is the
    two-sided Mann-Whitney U test p-value (scipy, asymptotic with tie correction or
    exact for small samples without ties). Both are ``NaN`` when a group is empty.
    """

    auc: float
    p: float
    n_pos: int
    n_neg: int


def response_association(
    values: np.ndarray | pd.Series,
    groups: np.ndarray | pd.Series,
    *,
    positive: str,
    negative: str,
) -> Association:
    """Mann-Whitney U test and AUC of ``values`` between two response groups.

    Patients with a missing value or a group other than ``positive``/``negative`` are
    left out.
    """
    from scipy import stats

    values = np.asarray(values, dtype=float)
    groups = np.asarray(pd.Series(groups).astype(object).fillna(""), dtype=object)
    ok = np.isfinite(values)
    pos = values[ok & (groups == positive)]
    neg = values[ok & (groups == negative)]
    if len(pos) == 0 or len(neg) == 0:
        return Association(float("nan"), float("nan"), len(pos), len(neg))
    result = stats.mannwhitneyu(pos, neg, alternative="two-sided")
    auc = float(result.statistic) / (len(pos) * len(neg))
    return Association(auc, float(result.pvalue), len(pos), len(neg))


def sweep_thresholds(values: np.ndarray, *, n_steps: int = 15) -> np.ndarray:
    """Thresholds spanning a marker's observed range.

    From the minimum to the 99th percentile of the cells' values (beyond it a '+'
    marker keeps almost no cells), ``n_steps`` evenly spaced values, rounded to 3
    decimals.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.array([DEFAULT_THRESHOLD])
    low, high = float(np.min(values)), float(np.quantile(values, 0.99))
    if high <= low:
        high = float(np.max(values))
    if high <= low:
        return np.array([round(low, 3)])
    return np.unique(np.round(np.linspace(low, high, n_steps), 3))


def sensitivity(
    gate: Gate,
    expression: ExpressionSource,
    *,
    available: Sequence[str] | pd.Index,
    n_cells: int,
    patient_codes: np.ndarray,
    patient_groups: np.ndarray | pd.Series,
    positive: str,
    negative: str,
    accept_missing: bool = False,
    cells: np.ndarray | None = None,
    n_steps: int = 15,
) -> pd.DataFrame:
    """How the per-patient gate fraction's association with response depends on
    each marker's threshold.

    For every evaluated marker, its threshold is swept over its observed range
    (:func:`sweep_thresholds`) with the other markers fixed; for each threshold the
    per-patient gate fraction is compared between responders and non-responders
    (:func:`response_association`).

    Parameters
    ----------
    patient_codes
        Patient index per evaluated cell (``-1`` = ignore).
    patient_groups
        Response group per patient index (``NA`` = not evaluable).

    Returns
    -------
    DataFrame
        ``gene``, ``sign``, ``threshold``, ``current`` (the gate's own threshold),
        ``cells_in_gate``, ``median_fraction``, ``auc``, ``p``, ``n_pos``, ``n_neg``.
        ``auc`` and ``p`` are NaN where every compared patient has the same gate
        fraction (e.g. no cell in the gate): there is nothing to test.
    """
    from scipy import stats

    result = evaluate_gate(
        gate,
        expression,
        available=available,
        n_cells=n_cells,
        accept_missing=accept_missing,
        cells=cells,
    )
    get = _getter(expression)
    n_patients = len(patient_groups)
    passes = {}
    for marker in result.evaluated:
        values = get(marker.gene)
        passes[marker.gene] = (
            values if cells is None else values[cells],
            marker.passes(values if cells is None else values[cells]),
        )
    groups = np.asarray(pd.Series(patient_groups).astype(object).fillna(""))
    codes = np.asarray(patient_codes).astype(np.int64)
    codes = np.where(codes < 0, n_patients, codes)  # extra row: cells w/o patient
    n_cells = np.bincount(codes, minlength=n_patients + 1)[:n_patients]
    has_cells = n_cells > 0
    rows = []
    for marker in result.evaluated:
        others = np.ones(len(result.in_gate), dtype=bool)
        for gene, (_, mask) in passes.items():
            if gene != marker.gene:
                others &= mask
        values = passes[marker.gene][0]
        grid = np.union1d(sweep_thresholds(values, n_steps=n_steps), [marker.threshold])
        # One pass over the cells for all thresholds: k = number of grid values
        # below the cell's value; '+' (v > t) passes grid[j] for j < k, '-' (v <= t)
        # for j >= k. Count cells per (patient, k), then cumulate over k.
        n_grid = len(grid)
        k = np.searchsorted(grid, values[others], side="left")
        table = np.bincount(
            codes[others] * (n_grid + 1) + k, minlength=(n_patients + 1) * (n_grid + 1)
        ).reshape(n_patients + 1, n_grid + 1)
        if marker.sign == "+":
            in_gate = np.cumsum(table[:, ::-1], axis=1)[:, ::-1][:, 1:]
        else:
            in_gate = np.cumsum(table, axis=1)[:, :n_grid]
        cells_in_gate = in_gate.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            fractions = (in_gate[:n_patients] / np.maximum(n_cells, 1)[:, None]).T
        fractions[:, ~has_cells] = np.nan
        pos = fractions[:, has_cells & (groups == positive)]
        neg = fractions[:, has_cells & (groups == negative)]
        if pos.shape[1] and neg.shape[1]:
            if min(pos.shape[1], neg.shape[1]) > 8:
                # one vectorised scipy call per marker (rows = thresholds); with
                # more than 8 in both groups scipy is asymptotic row by row too
                test = stats.mannwhitneyu(pos, neg, alternative="two-sided", axis=1)
                stat, ps = np.asarray(test.statistic), np.asarray(test.pvalue)
            else:
                # small groups: scipy picks the exact test per row, keep its choice
                tests = [
                    stats.mannwhitneyu(a, b, alternative="two-sided")
                    for a, b in zip(pos, neg, strict=True)
                ]
                stat = np.array([t.statistic for t in tests])
                ps = np.array([t.pvalue for t in tests])
            aucs = stat / (pos.shape[1] * neg.shape[1])
            # every compared patient has the same fraction: there is nothing to rank
            # (scipy would answer AUC 0.5, p = 1); no test, as on the page's box plot
            both = np.concatenate([pos, neg], axis=1)
            constant = np.all(both == both[:, :1], axis=1)
            aucs = np.where(constant, np.nan, aucs)
            ps = np.where(constant, np.nan, ps)
        else:
            aucs = ps = np.full(len(grid), np.nan)
        for i, threshold in enumerate(grid):
            finite = fractions[i][has_cells]
            rows.append(
                {
                    "gene": marker.gene,
                    "sign": marker.sign,
                    "threshold": float(threshold),
                    "current": bool(np.isclose(threshold, marker.threshold)),
                    "cells_in_gate": int(cells_in_gate[i]),
                    "median_fraction": float(np.median(finite))
                    if finite.size
                    else float("nan"),
                    "auc": float(aucs[i]),
                    "p": float(ps[i]),
                    "n_pos": int(pos.shape[1]),
                    "n_neg": int(neg.shape[1]),
                }
            )
    return pd.DataFrame(rows)
