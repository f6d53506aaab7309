"""Server-side figure export: PNG, SVG and PDF at presentation sizes, with provenance.

Every exported file carries the panel's provenance (dataset, filters, metric, response
definition, gate, test, p-value, n per group, app version, date) in its own metadata:
a PNG ``tEXt`` chunk, SVG ``<metadata>``/``<desc>``, PDF document info. Optionally the
same text is drawn as a small footnote under the figure.

This module puts one panel (or every panel of some pages) through the steps, each in
its own module: sizes and settings (``export_settings``), layout for the size
(``export_layout``), many points (``export_points``), rendering with the system
Chromium (``export_render``) and provenance (``export_provenance``). Nothing here
imports Dash: pages, the export-all job and ``cli.py export`` share it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

# PIL.Image is imported at start-up, before any request thread runs: plotly's JSON
# encoder (used by Dash for every callback answer) looks it up lazily, and a first
# import in an export thread raced it ("module 'PIL' has no attribute 'Image'",
# HTTP 500 seen once in the load test).
import PIL.Image  # noqa: F401

from figures.export_fit import layout_panel
from figures.export_layout import add_caption, restyle
from figures.export_points import prepare_points, sampling_text
from figures.export_provenance import (
    _JSON,
    APP_NAME,
    APP_VERSION,
    _pdf_with_provenance,
    _png_with_provenance,
    _svg_with_provenance,
    provenance_text,
    read_provenance,
)
from figures.export_render import browser_path, render, renderer_running
from figures.export_settings import (
    CSS_DPI,
    DEFAULT_TIMEOUT_S,
    FORMATS,
    MEDIA_TYPES,
    PRESETS,
    ExportError,
    ExportSettings,
    ExportSize,
    RendererUnavailable,
    mm_to_pixels,
    resolve_size,
)
from figures.panel import Panel

# ------------------------------------------------------------------------ export


@dataclass(frozen=True)
class ExportedFile:
    """One exported figure: file name, bytes, media type and its provenance."""

    filename: str
    content: bytes
    media_type: str
    provenance: dict = field(default_factory=dict)


def _stamp() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def figure_digest(fig: dict) -> str:
    """SHA-256 of a figure's JSON (keys sorted): equal figures, equal digests."""
    from plotly.utils import PlotlyJSONEncoder

    text = json.dumps(fig, cls=PlotlyJSONEncoder, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-``, ``_``, ``.``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return name or "figure"


def view_hash(view_state: Mapping[str, object], settings: ExportSettings) -> str:
    """Eight hex digits naming a view and its export settings, for file names.

    ``view_state`` is what the figure was drawn from (dataset, filters, page
    state); equal views with equal settings get equal names, different ones never
    overwrite each other's files.
    """
    payload = json.dumps(
        {"view": view_state, "export": settings.to_dict()},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:8]


def document_view(document: Mapping[str, object]) -> dict:
    """The view part of a ``settings.json`` (dataset, filter, pages) for hashing."""
    return {k: document.get(k) for k in ("dataset", "filter", "pages")}


def has_figure(panel: Panel) -> bool:
    """True when the panel draws data (table-only and empty panels have no traces)."""
    return len(panel.figure.data) > 0


def export_figure(
    panel: Panel,
    settings: ExportSettings,
    *,
    page: str = "",
    timeout: float = DEFAULT_TIMEOUT_S,
    exported_at: str | None = None,
    view_state: Mapping[str, object] | None = None,
) -> ExportedFile:
    """Render one panel in the chosen format and size, with provenance embedded.

    The file is named ``<page>-<panel>-<hash>.<format>``, the hash (:func:`view_hash`)
    taken over ``view_state`` and the settings.

    Parameters
    ----------
    panel
        The panel as built by ``figures.reports.build_panels``.
    settings
        Format, size, caption and many-points choices.
    page
        Page id, recorded in the provenance and the file name.
    timeout
        Seconds the render may take.
    exported_at
        ISO time stamp to record (default: now, UTC).
    view_state
        What the panel was drawn from: ``{"dataset", "filter", "pages"}`` as in
        ``settings.json`` (default: the panel's own provenance, which names the
        dataset, filters, metric and gate).

    Raises
    ------
    ExportError, RendererUnavailable
        Bad settings, or the renderer is missing or failed.
    """
    size = settings.size()
    fmt = settings.format
    fig = layout_panel(panel, size)  # restyle + per-figure-type layout
    drawn_before = sampling_text(fig)
    fig, points_note = prepare_points(
        fig,
        fmt=fmt,
        mode=settings.points,
        limit=settings.max_vector_points,
        seed=settings.seed,
    )
    caption = panel.caption
    drawn_after = sampling_text(fig)
    if drawn_before and drawn_after != drawn_before:
        # the caption (footnote, metadata) says what this file draws, like its title
        caption = caption.replace(drawn_before, drawn_after)
    if view_state is None:
        view_state = {"page": page, "panel": panel.key, **panel.provenance}
    digest = view_hash(view_state, settings)
    record = {
        "app": APP_NAME,
        "app_version": APP_VERSION,
        "exported_at": exported_at or _stamp(),
        "page": page,
        "panel": panel.key,
        "title": panel.title,
        "caption": caption,
        **{k: v for k, v in panel.provenance.items() if k not in ("export",)},
        "view_hash": digest,
        "figure_sha256": figure_digest(fig),
        "export": {
            **settings.to_dict(),
            "width_px": size.pixel_width,
            "height_px": size.pixel_height,
            "width_mm": round(size.width_mm, 2),
            "height_mm": round(size.height_mm, 2),
            "dpi": size.dpi,
            "points_note": points_note,
        },
    }
    record = json.loads(json.dumps(record, **_JSON))  # plain JSON types only
    text = provenance_text(record)
    if settings.caption:
        fig = add_caption(fig, text, size)
    if fmt == "png":
        raw = render(
            fig,
            fmt="png",
            width=size.width,
            height=size.height,
            scale=size.scale,
            timeout=timeout,
        )
        content = _png_with_provenance(raw, record, text, size.dpi)
    else:
        # WebGL layers are rasterised at 2 x scale device pixels: when there is
        # one, render at the scale that gives the preset's dpi (192 dpi at least)
        has_gl = any(t.get("type") == "scattergl" for t in fig.get("data", []))
        gl_scale = max(1.0, (size.dpi or 0) / (2 * CSS_DPI)) if has_gl else 1.0
        raw = render(
            fig,
            fmt=fmt,
            width=size.width,
            height=size.height,
            scale=gl_scale,
            timeout=timeout,
        )
        if fmt == "svg":
            content = _svg_with_provenance(raw, record, text, size)
        else:
            content = _pdf_with_provenance(raw, record, text, 1 / gl_scale)
    name = safe_name(f"{page}-{panel.key}" if page else panel.key) + f"-{digest}"
    return ExportedFile(f"{name}.{fmt}", content, MEDIA_TYPES[fmt], record)


# -------------------------------------------------------------------- export all

SETTINGS_VERSION = 1


def settings_document(
    *,
    filter_state: Mapping[str, object],
    pages: Mapping[str, Mapping[str, object]],
    export: ExportSettings,
    dataset: str,
    created: str | None = None,
) -> dict:
    """The ``settings.json`` of an export-all: everything needed to redraw it.

    ``filter_state`` is the global filter (the shell Store), ``pages`` maps each
    exported page id to its control state (``{}`` = the page's defaults).
    """
    document = {
        "settings_version": SETTINGS_VERSION,
        "app": APP_NAME,
        "app_version": APP_VERSION,
        "created": created or _stamp(),
        "dataset": dataset,
        "filter": dict(filter_state),
        "pages": {page: dict(state) for page, state in pages.items()},
        "export": export.to_dict(),
    }
    # the zip's name carries it: a reader matches a zip with its settings
    document["view_hash"] = view_hash(document_view(document), export)
    return document


def parse_settings_document(document: object) -> dict:
    """Check a ``settings.json`` and return it; raises :class:`ExportError`."""
    if not isinstance(document, Mapping):
        raise ExportError(
            "settings.json must hold a JSON object.",
            "use the settings.json written by 'Export all'.",
        )
    missing = [k for k in ("filter", "pages", "export") if k not in document]
    if missing:
        raise ExportError(
            f"settings.json lacks {', '.join(missing)}.",
            "use the settings.json written by 'Export all'.",
        )
    if not isinstance(document["pages"], Mapping) or not isinstance(
        document["filter"], Mapping
    ):
        raise ExportError(
            "settings.json: `pages` and `filter` must be JSON objects.",
            "use the settings.json written by 'Export all'.",
        )
    from figures.reports import PAGE_BUILDERS

    unknown = [page for page in document["pages"] if page not in PAGE_BUILDERS]
    if unknown:
        raise ExportError(
            f"settings.json names unknown page(s): {', '.join(map(str, unknown))}.",
            f"use pages among {', '.join(PAGE_BUILDERS)}.",
        )
    ExportSettings.from_mapping(document["export"])
    return dict(document)


#: ``progress(done, total, what)``: ``total`` is 0 while the pages' figures are
#: being built (their number is not known yet), then ``done`` counts exported panels
ProgressFn = Callable[[int, int, str], None]


def export_pages(
    view,
    document: Mapping[str, object],
    write: Callable[[str, bytes], None],
    *,
    progress: ProgressFn | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[dict]:
    """Build and export every panel of the pages in a settings document.

    Writes ``settings.json``, ``<page>/<panel>.<fmt>`` (panels that draw data),
    ``<page>/<panel>.csv`` (the table behind each panel) and ``manifest.json``
    through ``write(relative_path, bytes)``, so the same code fills a zip (the app)
    or a folder (the CLI).

    ``progress`` hears ``(0, 0, "building <page>")`` before each page is built,
    ``(0, n, <first panel>)`` when the ``n`` panels are known, and ``(i, n, <next
    panel>)`` after the ``i``-th panel is written: once per panel, counts rising.

    Returns
    -------
    list of dict
        The manifest: one entry per panel with its files and provenance.
    """
    from figures.reports import build_panels

    document = parse_settings_document(document)
    settings = ExportSettings.from_mapping(document["export"])  # type: ignore[arg-type]
    pages: Mapping[str, Mapping] = document["pages"]  # type: ignore[assignment]
    stamp = _stamp()
    view_state = document_view(document)
    write("settings.json", json.dumps(document, indent=2, default=str).encode())
    built = []
    for page, state in pages.items():
        if progress:
            progress(0, 0, f"building {page}")
        built.append((page, build_panels(page, view, state)))
    queue = [(page, panel) for page, panels in built for panel in panels]
    steps = len(queue)
    if progress and queue:
        progress(0, steps, f"{queue[0][0]}: {queue[0][1].title}")
    manifest = []
    for done, (page, panel) in enumerate(queue, start=1):
        entry: dict[str, object] = {"page": page, "panel": panel.key}
        base = f"{safe_name(page)}/{safe_name(panel.key)}"
        csv = panel.table.to_csv(index=False).encode("utf-8")
        write(f"{base}.csv", csv)
        entry["table"] = f"{base}.csv"
        if has_figure(panel):
            exported = export_figure(
                panel,
                settings,
                page=page,
                timeout=timeout,
                exported_at=stamp,
                view_state=view_state,
            )
            write(f"{base}.{settings.format}", exported.content)
            entry["figure"] = f"{base}.{settings.format}"
            entry["provenance"] = exported.provenance
        else:
            entry["figure"] = None
            entry["provenance"] = {
                **panel.provenance,
                "caption": panel.caption,
                "title": panel.title,
            }
        manifest.append(entry)
        if progress:
            following = queue[done] if done < steps else None
            what = f"{following[0]}: {following[1].title}" if following else "done"
            progress(done, steps, what)
    write("manifest.json", json.dumps(manifest, indent=2, default=str).encode())
    return manifest


def export_zip(
    view,
    document: Mapping[str, object],
    *,
    progress: ProgressFn | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> bytes:
    """:func:`export_pages` into an in-memory zip (returned as bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        export_pages(
            view,
            document,
            lambda name, data: archive.writestr(name, data),
            progress=progress,
            timeout=timeout,
        )
    return buffer.getvalue()


def zip_name(document: Mapping[str, object], scope: str) -> str:
    """File name of an export-all zip, e.g. ``icb-demo-all-pages-pdf-1a2b3c4d.zip``.

    The hash is the document's view hash (dataset, filter, page states, export
    settings): one view, one name; different views never overwrite each other.
    """
    export = ExportSettings.from_mapping(document["export"])  # type: ignore[arg-type]
    digest = view_hash(document_view(document), export)
    dataset = document.get("dataset") or "dataset"
    return safe_name(f"icb-{dataset}-{scope}-{export.format}-{digest}") + ".zip"


# ----------------------------------------------------------------- data downloads


def patient_metrics_table(
    view, pages: Mapping[str, Mapping[str, object]]
) -> pd.DataFrame:
    """One row per filtered patient: NK metric, response group and gate fraction.

    The NK metric, its timepoint and the response definition follow the NK page's
    state (its defaults when the page was not opened); the gate fraction comes from
    the CD8 page's gate panel when the dataset has CD8 cells and the gate can be
    evaluated (columns absent otherwise).

    Parameters
    ----------
    view
        A :class:`data.view.CohortView`.
    pages
        Page id -> page state, as in ``settings.json``.
    """
    from analysis.cohort import patient_table
    from analysis.nk_metrics import get_metric, patient_metric
    from analysis.nk_response import deconvolution_samples, resolve_state
    from analysis.response import DEFINITIONS, assign_response
    from figures.reports import PAGE_BUILDERS, build_panels

    keys = ["cohort", "patient_id"]
    patients = patient_table(view.samples)
    columns = [
        c
        for c in (*keys, "tumor_type", "treatment", "recist", "response")
        if c in patients.columns
    ]
    table = patients[columns].copy()
    if table.empty:
        return table
    state, _notes = resolve_state(view.samples, pages.get("nk-response"))
    # the NK page's deconvolution choice keeps the same samples here
    samples, kept = deconvolution_samples(view.samples, state.deconvolution)
    definition = DEFINITIONS[state.definition]
    table["response_definition"] = definition.label
    table["response_group"] = assign_response(table, state.definition).astype(object)
    if state.metric:
        metric = get_metric(samples, state.metric)
        values = patient_metric(samples, state.metric, timepoint=state.nk_timepoint)
        values = values[[*keys, "value", "n_samples"]].rename(
            columns={
                "value": f"nk_metric_{state.nk_timepoint}",
                "n_samples": f"nk_samples_{state.nk_timepoint}",
            }
        )
        table = table.merge(values, on=keys, how="left")
        table["nk_metric"] = metric.label
        if kept:
            table["nk_samples_used"] = kept
    if "cd8-states" in PAGE_BUILDERS:
        panels = build_panels("cd8-states", view, pages.get("cd8-states") or {})
        gate = next((p for p in panels if p.key == "gate-box"), None)
        wanted = ["gate_fraction", "n_in_gate", "n_cells"]
        if gate is not None and set(wanted) <= set(gate.table.columns):
            gates = gate.table[[*keys, *wanted]]
            table = table.merge(gates, on=keys, how="left")
            table["gate"] = gate.provenance.get("gate", "")
            missing = gate.provenance.get("gate_missing_markers") or []
            table["gate_missing_markers"] = ", ".join(map(str, missing))
    return table


__all__ = [
    "APP_NAME",
    "APP_VERSION",
    "FORMATS",
    "MEDIA_TYPES",
    "PRESETS",
    "ExportError",
    "ExportSettings",
    "ExportSize",
    "ExportedFile",
    "RendererUnavailable",
    "add_caption",
    "browser_path",
    "document_view",
    "export_figure",
    "export_pages",
    "export_zip",
    "figure_digest",
    "mm_to_pixels",
    "patient_metrics_table",
    "prepare_points",
    "provenance_text",
    "read_provenance",
    "render",
    "renderer_running",
    "resolve_size",
    "restyle",
    "safe_name",
    "settings_document",
    "view_hash",
    "zip_name",
]
