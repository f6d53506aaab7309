"""Compare two cell sets: the comparison itself and its figures (no Dash).

:func:`run_comparison` is the one entry point of the ``/compare`` page, its exports and
``cli.py de``: sets as text (see :mod:`analysis.cellsets`) in, a
:class:`analysis.pseudobulk.DEResult` out, so all three give the same answer. The
figures state n patients per group, the design and the test, and the direction of a
fold change in words (positive log2FC: higher in set A).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis import cellsets, composition, pseudobulk
from analysis.response import DEFINITIONS, default_definition
from figures.panel import Panel
from figures.template import empty_figure, titled

PAGE_ID = "compare"
DEFAULT_A = "gate"
DEFAULT_B = "not:gate"
#: genes labelled on the volcano and shown in the per-patient heatmap
TOP_LABELLED = 12
TOP_HEATMAP = 20
PADJ_CUTOFF = 0.05
COLOR_A = "#c2185b"
COLOR_B = "#1565c0"
COLOR_NS = "rgba(150,150,150,0.45)"
COVARIATE_CHOICES = ("cohort", "tumor_type", "treatment")


@dataclass(frozen=True)
class Comparison:
    """A comparison request, as the URL and the CLI carry it."""

    a: str = DEFAULT_A
    b: str = DEFAULT_B
    covariates: tuple[str, ...] = ()
    definition: str = ""
    min_cells: int = pseudobulk.MIN_CELLS

    def to_dict(self) -> dict[str, str]:
        """URL keys of the /compare page."""
        return {
            "a": self.a,
            "b": self.b,
            "covariates": ",".join(self.covariates),
            "definition": self.definition,
            "min_cells": str(self.min_cells),
        }

    @classmethod
    def from_mapping(cls, state: Mapping[str, object] | None) -> Comparison:
        """Read URL keys (strings; odd values fall back to defaults)."""
        state = dict(state or {})

        def first(key: str) -> str:
            value = state.get(key)
            if isinstance(value, list | tuple):
                value = value[0] if value else ""
            return "" if value is None else str(value).strip()

        covariates = tuple(
            c for c in first("covariates").split(",") if c in COVARIATE_CHOICES
        )
        try:
            min_cells = max(1, int(first("min_cells") or pseudobulk.MIN_CELLS))
        except ValueError:
            min_cells = pseudobulk.MIN_CELLS
        definition = first("definition")
        return cls(
            a=first("a") or DEFAULT_A,
            b=first("b") or DEFAULT_B,
            covariates=covariates,
            definition=definition if definition in DEFINITIONS else "",
            min_cells=min_cells,
        )


def cell_context(view, definition: str):
    """The CD8 cells of the view as a :class:`analysis.cellsets.CellContext`, plus
    the :class:`figures.cd8_state.CellData` behind it (``None`` without cells)."""
    from figures.cd8_state import PageState, cached_cell_data

    page = PageState(metric="", definition=definition)
    data = cached_cell_data(view, page)
    if data is None:
        return None, None
    store = data.store
    ctx = cellsets.CellContext(
        patients=data.patients,
        patient_codes=data.patient_codes,
        state_codes=data.state_codes,
        state_names=data.state_names,
        umap=None if store.umap is None else store.umap[data.cells],
        expression=lambda gene: store.gene(gene)[data.cells],
        genes=store.var_names,
    )
    return ctx, data


@dataclass
class ComparisonResult:
    """A finished comparison: the request, the sets, the DE and the composition."""

    request: Comparison
    set_a: cellsets.CellSet
    set_b: cellsets.CellSet
    definition: str
    de: pseudobulk.DEResult
    provenance: dict

    def to_dict(self, *, top: int | None = None) -> dict:
        out = dict(self.provenance)
        out.update(self.de.to_dict(top=top))
        return out


def run_comparison(
    view,
    request: Comparison,
    *,
    saved: Mapping[str, str] | None = None,
    n_cpus: int = 1,
    progress: pseudobulk.Progress | None = None,
) -> ComparisonResult:
    """Evaluate both sets on the view's CD8 cells and test A against B.

    Raises
    ------
    analysis.cellsets.CellSetError, analysis.pseudobulk.DEError
        A set cannot be read or evaluated, or the comparison cannot be run; the
        message says what to change.
    """
    report = progress or (lambda _f, _m: None)
    definition = request.definition or default_definition(view.samples)
    set_a = cellsets.parse_set(request.a, saved=saved)
    set_b = cellsets.parse_set(request.b, saved=saved)
    report(0.02, "reading cells")
    ctx, data = cell_context(view, definition)
    if ctx is None:
        raise pseudobulk.DEError(
            "this dataset has no CD8 single-cell data (with a UMAP) in the filtered "
            "samples"
        )
    mask_a = cellsets.evaluate_set(set_a, ctx)
    mask_b = cellsets.evaluate_set(set_b, ctx)
    for label, cell_set, mask in (("A", set_a, mask_a), ("B", set_b, mask_b)):
        if not mask.any():
            raise pseudobulk.DEError(
                f"set {label} ({cell_set.label}) holds no cell in this view"
            )
    report(0.08, "summing per patient")
    pb = pseudobulk.pseudobulk(
        data.store.path,
        data.cells,
        data.patients["key"].tolist(),
        data.patient_codes,
        mask_a,
        mask_b,
        progress=report,
    )
    labels = {"A": set_a.label, "B": set_b.label}
    de = pseudobulk.compare(
        pb,
        patients=data.patients,
        covariates=request.covariates,
        min_cells=request.min_cells,
        labels=labels,
        n_cpus=n_cpus,
        progress=report,
    )
    provenance = dict(view.provenance)
    provenance.update(
        {
            "set_a": cellsets.set_to_string(set_a),
            "set_b": cellsets.set_to_string(set_b),
            "set_a_label": set_a.label,
            "set_b_label": set_b.label,
            "response_definition": definition,
            "design": de.design,
            "test": de.method,
            "n_patients_A": de.n_patients["A"],
            "n_patients_B": de.n_patients["B"],
            "n_dropped_samples": len(de.dropped),
            "gene_filter": de.gene_filter,
            "min_cells_per_patient_and_set": request.min_cells,
            "counts_source": pb.counts_source or "none (fallback)",
        }
    )
    return ComparisonResult(request, set_a, set_b, definition, de, provenance)


# ------------------------------------------------------------------ result cache
#: seconds a finished comparison is kept (the key changes anyway with data or code)
CACHE_TIMEOUT = 24 * 3600
_CODE_FILES = ("analysis/pseudobulk.py", "analysis/cellsets.py", "figures/de.py")


def comparison_key(view, request: Comparison, saved: Mapping[str, str]) -> str:
    """Cache key of a comparison: its definition (saved names expanded), the
    dataset files' versions, the filter and the code version."""
    import hashlib
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    path = view.bundle.path
    stamps = [
        (path / name).stat().st_mtime_ns if (path / name).exists() else 0
        for name in ("dataset.json", "cohort.csv", "cd8_cells.h5ad")
    ]
    code = [(root / f).stat().st_mtime_ns for f in _CODE_FILES]
    state = dict(
        request.to_dict(),
        a=cellsets.expand_saved(request.a, saved),
        b=cellsets.expand_saved(request.b, saved),
    )
    payload = json.dumps(
        [code, str(path), stamps, view.filter.to_dict(), state],
        sort_keys=True,
        default=str,
    )
    return "de:" + hashlib.sha256(payload.encode()).hexdigest()


def result_store():
    """Where finished comparisons are kept: Redis with ``REDIS_URL`` (shared by
    every worker machine), else a folder under ``CACHE_DIR`` (shared by the
    workers of one machine). Plain cachelib, so background jobs - which run outside
    Flask - read and write it too."""
    from cachelib import FileSystemCache, RedisCache

    from config import get_settings

    settings = get_settings()
    if settings.redis_url:
        import redis

        return RedisCache(
            redis.from_url(settings.redis_url),
            key_prefix="icb-de:",
            default_timeout=CACHE_TIMEOUT,
        )
    folder = settings.cache_dir / "de"
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemCache(str(folder), threshold=200, default_timeout=CACHE_TIMEOUT)


def cached_comparison(
    view,
    request: Comparison,
    *,
    saved: Mapping[str, str] | None = None,
    n_cpus: int = 1,
    progress: pseudobulk.Progress | None = None,
) -> tuple[ComparisonResult, str]:
    """:func:`run_comparison` through :func:`result_store`; returns (result, key).

    A store that cannot be reached costs time, never the answer.
    """
    import logging

    log = logging.getLogger("icb.de")
    saved = dict(saved or {})
    key = comparison_key(view, request, saved)
    try:
        store = result_store()
        hit = store.get(key)
    except Exception as err:  # any backend error: compute instead
        log.warning("DE cache read failed: %s", err)
        store, hit = None, None
    if isinstance(hit, ComparisonResult):
        return hit, key
    result = run_comparison(
        view, request, saved=saved, n_cpus=n_cpus, progress=progress
    )
    if store is not None:
        try:
            store.set(key, result)
        except Exception as err:
            log.warning("DE cache write failed: %s", err)
    return result, key


def load_cached(key: str) -> ComparisonResult | None:
    """A finished comparison by its key (``None`` when absent or expired)."""
    try:
        hit = result_store().get(key)
    except Exception:
        return None
    return hit if isinstance(hit, ComparisonResult) else None


# ------------------------------------------------------------------ figures
def _neg_log10(p: pd.Series) -> np.ndarray:
    values = p.to_numpy(dtype=float)
    floor = np.nanmin(values[values > 0]) if np.any(values > 0) else 1e-300
    return -np.log10(np.clip(values, floor, 1.0))


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def design_line(result: ComparisonResult) -> str:
    de = result.de
    n = de.n_patients
    unit = "pairs" if de.paired else "patients"
    return (
        f"{n['A']} vs {n['B']} {unit}; design {de.design}; "
        + ("fallback: t-test on patient means" if de.fallback else "PyDESeq2 Wald")
        + f", BH; {len(de.table):,} genes tested"
    )


#: a labelled gene keeps this share of the axis ranges free around its label (the
#: label sits above its point); shares, so the rule holds at every export size
LABEL_ROOM_X, LABEL_ROOM_Y = 0.14, 0.07


def _spread_labels(top: pd.DataFrame, all_x: pd.Series, all_y: np.ndarray) -> list:
    """Rows of ``top`` (most significant first) whose labels do not collide.

    A gene whose point lies within the label room of an already labelled gene is
    left unlabelled (it stays in the plot and its hover), so no two labels overlap
    on screen or in a column-sized export.
    """
    x_span = float(np.nanmax(all_x) - np.nanmin(all_x)) or 1.0
    y_span = float(np.nanmax(all_y) - np.nanmin(all_y)) or 1.0
    kept, placed = [], []
    for row in top.itertuples():
        padj = row.padj if row.padj == row.padj else 1.0
        x = row.log2FC / x_span
        y = float(_neg_log10(pd.Series([padj]))[0]) / y_span
        if all(
            abs(x - px) >= LABEL_ROOM_X or abs(y - py) >= LABEL_ROOM_Y
            for px, py in placed
        ):
            kept.append(row)
            placed.append((x, y))
    return kept


def volcano(result: ComparisonResult, *, top: int = TOP_LABELLED) -> go.Figure:
    """log2FC (A over B) vs -log10 adjusted p; the ``top`` genes by p labelled."""
    table = result.de.table
    if table.empty:
        return empty_figure("No gene was tested")
    y = _neg_log10(table["padj"].fillna(1.0))
    significant = (table["padj"] < PADJ_CUTOFF).to_numpy()
    up = significant & (table["log2FC"] > 0).to_numpy()
    down = significant & (table["log2FC"] < 0).to_numpy()
    label_a, label_b = _short(result.set_a.label), _short(result.set_b.label)
    fig = go.Figure()
    for name, mask, color in (
        (f"higher in A: {label_a} ({int(up.sum())})", up, COLOR_A),
        (f"higher in B: {label_b} ({int(down.sum())})", down, COLOR_B),
        (f"padj ≥ {PADJ_CUTOFF} ({int((~significant).sum())})", ~significant,
         COLOR_NS),
    ):  # fmt: skip
        fig.add_trace(
            go.Scattergl(
                x=table["log2FC"].to_numpy()[mask],
                y=y[mask],
                mode="markers",
                name=name,
                marker={"color": color, "size": 6},
                customdata=table["gene"].to_numpy()[mask],
                text=table["gene"].to_numpy()[mask],
                hovertemplate="%{text}<br>log2FC %{x:.2f}<br>-log10 padj %{y:.1f}"
                "<extra></extra>",
            )
        )
    for row in _spread_labels(table.head(top), table["log2FC"], y):
        fig.add_annotation(
            x=row.log2FC,
            y=_neg_log10(pd.Series([row.padj if row.padj == row.padj else 1.0]))[0],
            text=row.gene,
            showarrow=True,
            arrowhead=0,
            ax=0,
            ay=-18,
            font={"size": 11},
        )
    fig.add_hline(y=-math.log10(PADJ_CUTOFF), line_dash="dot", line_color="#888")
    fig.update_layout(
        title=titled(
            f"Pseudobulk DE: {label_a} vs {label_b}",
            design_line(result),
            "right: higher in A, left: higher in B; click a gene: CD8 UMAP by it",
        ),
        xaxis_title="log2 fold change (A over B)",
        yaxis_title="-log10 adjusted p (BH)",
        legend={"orientation": "h", "y": -0.2},
        height=520,
        margin={"t": 110},
    )
    return fig


def patient_heatmap(result: ComparisonResult, *, top: int = TOP_HEATMAP) -> go.Figure:
    """Per-patient mean log-normalized expression of the top genes (z-score per
    gene across the pseudobulk samples), set A's samples first."""
    de = result.de
    genes = de.table["gene"].head(top).tolist()
    if not genes:
        return empty_figure("No gene was tested")
    samples = de.samples.sort_values(["group", "key"])
    values = de.patient_means.loc[samples.index, genes].T
    sd = values.std(axis=1, ddof=0).replace(0, np.nan)
    z = values.sub(values.mean(axis=1), axis=0).div(sd, axis=0).fillna(0.0)
    columns = [
        f"{g} | {k}" for g, k in zip(samples["group"], samples["key"], strict=True)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z.to_numpy(),
            x=columns,
            y=genes,
            colorscale="RdBu_r",
            zmid=0,
            colorbar={"title": "z-score"},
            customdata=values.to_numpy(),
            hovertemplate="%{y}<br>%{x}<br>mean log-norm %{customdata:.3f}"
            "<extra></extra>",
        )
    )
    n = de.n_patients
    fig.update_layout(
        title=titled(
            f"Top {len(genes)} genes per patient and set",
            f"columns: set A ({n['A']} samples) then set B ({n['B']}); colour: mean "
            "log-normalized expression of the patient's cells in the set, z-scored "
            "per gene",
        ),
        xaxis={
            "showticklabels": False,
            "title": "pseudobulk sample (A | patient, then B | patient)",
        },
        yaxis={"autorange": "reversed"},
        height=max(360, 22 * len(genes) + 160),
        margin={"t": 100},
    )
    fig.add_vline(x=n["A"] - 0.5, line_color="black", line_width=2)
    return fig


def table_for_export(result: ComparisonResult) -> pd.DataFrame:
    """The full gene table with readable column names (the CSV download)."""
    return result.de.table.rename(
        columns={
            "pct_A": "pct_expressing_A",
            "pct_B": "pct_expressing_B",
            "mean_A": "mean_lognorm_A",
            "mean_B": "mean_lognorm_B",
        }
    )


# ------------------------------------------------------------------ composition
def composition_result(view, definition: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient state counts (patients x states) and the test table."""
    definition = definition or default_definition(view.samples)
    ctx, _ = cell_context(view, definition)
    if ctx is None:
        return pd.DataFrame(), pd.DataFrame()
    counts = composition.state_counts(
        ctx.patient_codes,
        ctx.state_codes,
        ctx.patients["key"].tolist(),
        ctx.state_names,
    )
    groups = pd.Series(ctx.patients["group"].to_numpy(), index=counts.index)
    return counts.assign(group=groups), composition.composition_test(counts, groups)


def composition_figure(counts: pd.DataFrame, table: pd.DataFrame) -> go.Figure:
    """CLR of each state per patient, responders vs non-responders."""
    from analysis.response import NON_RESPONDER, RESPONDER
    from analysis.stats import format_p
    from figures.template import RESPONSE_COLORS

    if table.empty:
        return empty_figure("No CD8 cells in the filtered samples")
    groups = counts["group"].astype("string")
    values = composition.clr(counts.drop(columns="group"))
    fig = go.Figure()
    for group in (RESPONDER, NON_RESPONDER):
        mask = (groups == group).fillna(False).to_numpy()
        long = values[mask].melt(var_name="state", value_name="clr")
        fig.add_trace(
            go.Box(
                x=long["state"],
                y=long["clr"],
                name=f"{group} (n={int(mask.sum())})",
                marker_color=RESPONSE_COLORS.get(group, "#777"),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
            )
        )
    ticks = [
        f"{row.state}<br>{format_p(row.p_adj).replace('p', 'padj', 1)}"
        for row in table.itertuples()
    ]
    fig.update_xaxes(tickvals=list(table["state"]), ticktext=ticks)
    n_r, n_nr = int(table["n_R"].max()), int(table["n_NR"].max())
    fig.update_layout(
        boxmode="group",
        title=titled(
            "CD8 state composition by response (each patient once)",
            f"{n_r} responders vs {n_nr} non-responders; " + composition.METHOD,
            "CLR > 0: the state is more common than the patient's average state",
        ),
        yaxis_title="centred log-ratio (CLR)",
        height=600,
        margin={"t": 140, "b": 190},
        legend={"orientation": "h", "y": -0.62, "x": 0},
    )
    return fig


def composition_caption(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    best = table.sort_values("p").iloc[0]
    from analysis.stats import format_p

    return (
        f"Most different state: {best['direction']}; {format_p(best['p'])}, "
        f"BH-adjusted {format_p(best['p_adj']).replace('p ', '', 1)}. "
        f"Method: {composition.METHOD}."
    )


# ------------------------------------------------------------------ panels
def de_panels(view, state: dict) -> list[Panel]:
    """Panels of the /compare page (for export-all and the CLI)."""
    request = Comparison.from_mapping(state)
    panels = []
    try:
        result, _ = cached_comparison(view, request, saved=saved_sets_of(view))
    except (cellsets.CellSetError, pseudobulk.DEError) as err:
        blocked = empty_figure(str(err))
        panels.append(Panel("volcano", "Volcano", blocked, caption=str(err)))
    else:
        prov = result.provenance
        caption = design_line(result) + "."
        panels += [
            Panel("volcano", "Volcano", volcano(result), table_for_export(result),
                  caption, prov),
            Panel("heatmap", "Top genes per patient", patient_heatmap(result),
                  result.de.patient_means.reset_index(), caption, prov),
        ]  # fmt: skip
    counts, table = composition_result(view, request.definition)
    panels.append(
        Panel(
            "composition",
            "State composition by response",
            composition_figure(counts, table),
            table,
            composition_caption(table),
            dict(view.provenance, test=composition.METHOD),
        )
    )
    return panels


def saved_sets_of(view) -> dict[str, str]:
    """Saved sets of the view's dataset (name -> definition)."""
    from data.cellsets_store import load_saved_sets

    return load_saved_sets(view.bundle.path)


def lasso_sets(store, selection: Mapping | None) -> tuple[str, str] | None:
    """``lasso:...`` and ``not:lasso:...`` for a lasso drawn on the CD8 UMAP.

    The CD8 page draws the embedding quantized to ``uint16`` over its full range
    (:func:`figures.cd8_umap.quantize_embedding`); the polygon is mapped back to
    UMAP units so the definition does not depend on how the plot was drawn.
    ``None`` for a box or no selection.
    """
    from figures.cd8_state import QUANT_MAX

    lasso = (selection or {}).get("lassoPoints") or {}
    if store is None or store.umap is None or len(lasso.get("x") or []) < 3:
        return None
    low = np.nanmin(store.umap, axis=0).astype(float)
    span = np.nanmax(store.umap, axis=0).astype(float) - low
    span[span == 0] = 1.0
    xs = low[0] + np.asarray(lasso["x"], float) / QUANT_MAX * span[0]
    ys = low[1] + np.asarray(lasso["y"], float) / QUANT_MAX * span[1]
    polygon = cellsets.polygon_from_lasso({"lassoPoints": {"x": xs, "y": ys}})
    return (f"lasso:{polygon}", f"not:lasso:{polygon}") if polygon else None


def filter_params(filter_data) -> list[tuple[str, str]]:
    """The global filter (Store form) as query pairs."""
    return [
        (k, str(v))
        for k, values in (filter_data or {}).items()
        for v in (values if isinstance(values, list | tuple) else [values])
        if v not in (None, "")
    ]


def compare_href(a: str, b: str, filter_data) -> str:
    """``/compare?<filter>&a=A&b=B`` (the CD8 page links a lasso here)."""
    from urllib.parse import urlencode

    return "/compare?" + urlencode([*filter_params(filter_data), ("a", a), ("b", b)])


def heatmap_genes(result: ComparisonResult, top: int = TOP_HEATMAP) -> Sequence[str]:
    return result.de.table["gene"].head(top).tolist()
