"""Server-side figure export: PNG, SVG and PDF at presentation sizes, with provenance.

Every exported file carries the panel's provenance (dataset, filters, metric, response
definition, gate, test, p-value, n per group, app version, date) in its own metadata:
a PNG ``tEXt`` chunk, SVG ``<metadata>``/``<desc>``, PDF document info. Optionally the
same text is drawn as a small footnote under the figure.

Rendering uses Kaleido with the system Chromium (``BROWSER_PATH`` overrides where it is
looked for). One browser per process is started on first use and reused: starting one
costs seconds, a warm render a fraction of a second. Kaleido's own sync server is not
thread-safe (concurrent callers can receive each other's images), so this module runs
its own event loop thread, hands every render its own future and serialises renders
with a lock. Nothing here imports Dash: pages, the export-all job and ``cli.py export``
share it.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import copy
import hashlib
import html
import io
import json
import logging
import math
import os
import re
import textwrap
import threading
import tomllib
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

# PIL.Image is imported at start-up, before any request thread runs: plotly's JSON
# encoder (used by Dash for every callback answer) looks it up lazily, and a first
# import in an export thread raced it ("module 'PIL' has no attribute 'Image'",
# HTTP 500 seen once in the load test).
import PIL.Image  # noqa: F401
import plotly.graph_objects as go

from data.errors import DataError, Problem, redacted_traceback
from figures.panel import Panel
from figures.template import FONT_FAMILY

log = logging.getLogger("icb.export")

APP_NAME = "ICB Cohort Explorer"
_ROOT = Path(__file__).resolve().parents[1]


def _app_version() -> str:
    try:
        with open(_ROOT / "pyproject.toml", "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


#: The app version written into every file (from pyproject.toml, like app.py's).
APP_VERSION = _app_version()

FORMATS = ("png", "svg", "pdf")
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
MM_PER_INCH = 25.4
#: Plotly lays figures out in CSS pixels: 96 per inch.
CSS_DPI = 96
#: Base font size of the shared template (figures.template), the reference for scaling.
SCREEN_FONT_PX = 13.0
#: Above this many marker points, SVG/PDF use the chosen many-points mode.
VECTOR_POINT_LIMIT = 20_000
DEFAULT_SEED = 0
#: Seconds one render may take before the renderer is restarted.
DEFAULT_TIMEOUT_S = 60.0
#: Largest custom PNG, in pixels (a 10k x 10k image is 400 MB in the browser).
MAX_PIXELS = 60_000_000
POINT_MODES = ("raster", "sample")
CHROMIUM_HINT = (
    "install Chromium on the server (Debian/Ubuntu: `sudo apt-get install chromium`) "
    "or set BROWSER_PATH to the Chromium/Chrome executable, then export again. "
    "The modebar camera button on each figure still saves a PNG from the browser."
)


class ExportError(DataError):
    """An export cannot be made (bad size, renderer missing or failing).

    A :class:`data.errors.DataError`, so callbacks and the CLI show its message (what
    happened and the fix) instead of a traceback.
    """

    def __init__(self, message: str, fix: str = ""):
        super().__init__(Problem(file="figure export", message=message, fix=fix))


class RendererUnavailable(ExportError):
    """Chromium was not found or did not start; the install hint is in the fix."""


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Preset:
    """A named output size.

    Publication presets are given in millimetres at a resolution (dpi); the slide
    preset in pixels. ``font_pt``/``font_px`` is the base text size the figure's
    fonts are scaled to (titles and labels keep their proportions).
    """

    key: str
    label: str
    width_mm: float | None = None
    height_mm: float | None = None
    dpi: int | None = None
    width_px: int | None = None
    height_px: int | None = None
    font_px: float = SCREEN_FONT_PX
    #: journals set titles in the figure legend: column presets drop the title
    #: (its text stays in the provenance and the optional footnote)
    keep_title: bool = True


PRESETS: dict[str, Preset] = {
    "slide": Preset(
        "slide", "Slide 16:9 (1920 × 1080 px)", width_px=1920, height_px=1080,
        font_px=26.0,
    ),
    "single": Preset(
        "single", "Publication single column (89 mm, 300 dpi, no title)",
        width_mm=89.0, height_mm=67.0, dpi=300, font_px=7 * CSS_DPI / 72,
        keep_title=False,
    ),
    "double": Preset(
        "double", "Publication double column (183 mm, 300 dpi, no title)",
        width_mm=183.0, height_mm=110.0, dpi=300, font_px=7 * CSS_DPI / 72,
        keep_title=False,
    ),
    "custom": Preset("custom", "Custom size (pixels × scale)"),
}  # fmt: skip


def mm_to_pixels(mm: float, dpi: int) -> int:
    """Pixels for ``mm`` at ``dpi``, rounded half up: 89 mm at 300 dpi is 1051 px.

    89 / 25.4 x 300 = 1051.18, so the single-column PNG is 1051 px wide; the
    layout is then set to exactly 1051 x 96 / 300 CSS px, so Chromium's rasteriser
    gives that whole number of pixels and no rounding happens on its side.
    """
    return math.floor(mm / MM_PER_INCH * dpi + 0.5)


@dataclass(frozen=True)
class ExportSize:
    """A resolved output size.

    Attributes
    ----------
    preset
        Preset key.
    width, height
        Layout size in CSS pixels (what plotly lays out).
    scale
        Raster scale: PNG pixels = layout pixels x scale.
    pixel_width, pixel_height
        Size of the PNG in pixels.
    font_px
        Base font size in layout pixels.
    dpi
        Print resolution (publication presets), else ``None``.
    """

    preset: str
    width: float
    height: float
    scale: float
    pixel_width: int
    pixel_height: int
    font_px: float
    dpi: int | None = None

    @property
    def width_mm(self) -> float:
        """Physical width at 96 CSS px per inch (the size SVG and PDF carry)."""
        return self.width / CSS_DPI * MM_PER_INCH

    @property
    def height_mm(self) -> float:
        return self.height / CSS_DPI * MM_PER_INCH


def _number(value: object, name: str, low: float, high: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ExportError(
            f"custom {name} {value!r} is not a number.",
            f"enter a {name} between {low:g} and {high:g}.",
        ) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ExportError(
            f"custom {name} {value!r} is out of range.",
            f"enter a {name} between {low:g} and {high:g}.",
        )
    return number


def resolve_size(
    preset: str,
    *,
    width: object = None,
    height: object = None,
    scale: object = None,
) -> ExportSize:
    """The output size of a preset (``width``/``height``/``scale`` for ``custom``).

    Parameters
    ----------
    preset
        One of :data:`PRESETS`.
    width, height
        Custom layout size in pixels (100-4000).
    scale
        Custom raster scale (0.5-10): a PNG has ``width x scale`` pixels.

    Raises
    ------
    ExportError
        Unknown preset, or a custom value out of range.
    """
    if preset not in PRESETS:
        raise ExportError(
            f"unknown size preset {preset!r}.", f"choose one of {', '.join(PRESETS)}."
        )
    spec = PRESETS[preset]
    if preset == "custom":
        w = _number(width, "width", 100, 4000)
        h = _number(height, "height", 100, 4000)
        s = _number(1 if scale in (None, "") else scale, "scale", 0.5, 10)
        px_w, px_h = round(w * s), round(h * s)
        if px_w * px_h > MAX_PIXELS:
            raise ExportError(
                f"{px_w} x {px_h} pixels is too large to render.",
                "lower the width, height or scale (at most 60 megapixels).",
            )
        return ExportSize(preset, w, h, s, px_w, px_h, SCREEN_FONT_PX)
    if spec.dpi:
        assert spec.width_mm and spec.height_mm
        px_w = mm_to_pixels(spec.width_mm, spec.dpi)
        px_h = mm_to_pixels(spec.height_mm, spec.dpi)
        scale_ = spec.dpi / CSS_DPI
        return ExportSize(
            preset, px_w / scale_, px_h / scale_, scale_, px_w, px_h, spec.font_px,
            spec.dpi,
        )  # fmt: skip
    assert spec.width_px and spec.height_px
    return ExportSize(
        preset,
        float(spec.width_px),
        float(spec.height_px),
        1.0,
        spec.width_px,
        spec.height_px,
        spec.font_px,
    )


@dataclass(frozen=True)
class ExportSettings:
    """What the user chose in the export menu (JSON-ready for ``settings.json``).

    Attributes
    ----------
    format
        ``png``, ``svg`` or ``pdf``.
    preset
        Key of :data:`PRESETS`.
    width, height, scale
        Custom size (used with ``preset="custom"``).
    caption
        Draw the provenance as a footnote under the figure.
    points
        Many points in SVG/PDF: ``raster`` (point layer as an image inside vector
        axes) or ``sample`` (a seeded, stratified sample as vector points).
    max_vector_points
        Points drawn as vector when ``points="sample"``.
    seed
        Seed of the sample.
    """

    format: str = "png"
    preset: str = "slide"
    width: float | None = None
    height: float | None = None
    scale: float | None = None
    caption: bool = False
    points: str = "raster"
    max_vector_points: int = VECTOR_POINT_LIMIT
    seed: int = DEFAULT_SEED

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None) -> ExportSettings:
        """Build from a menu's values or ``settings.json``; raises on bad values."""
        values = dict(values or {})
        fmt = str(values.get("format") or "png").lower()
        if fmt not in FORMATS:
            raise ExportError(
                f"unknown format {fmt!r}.", f"choose one of {', '.join(FORMATS)}."
            )
        points = str(values.get("points") or "raster")
        if points not in POINT_MODES:
            raise ExportError(
                f"unknown many-points mode {points!r}.", "choose raster or sample."
            )
        preset = str(values.get("preset") or "slide")

        def opt(name: str) -> float | None:
            raw = values.get(name)
            return None if raw in (None, "") else raw  # type: ignore[return-value]

        settings = cls(
            format=fmt,
            preset=preset,
            width=opt("width"),
            height=opt("height"),
            scale=opt("scale"),
            caption=bool(values.get("caption")),
            points=points,
            max_vector_points=int(
                _number(
                    values.get("max_vector_points") or VECTOR_POINT_LIMIT,
                    "number of vector points",
                    100,
                    500_000,
                )
            ),
            seed=int(_number(values.get("seed") or 0, "seed", 0, 2**32 - 1)),
        )
        settings.size()  # validate now, not halfway through an export-all
        return settings

    def size(self) -> ExportSize:
        return resolve_size(
            self.preset, width=self.width, height=self.height, scale=self.scale
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# ------------------------------------------------------------------------ restyle


def _array(value: object) -> np.ndarray | None:
    """A per-point array from a figure dict (list, numpy or plotly's typed array)."""
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if shape:
            dims = [int(s) for s in str(shape).split(",")]
            array = array.reshape(dims)
        return array
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        return np.asarray(value, dtype=object)
    return None


def _scale_fonts(node: object, factor: float) -> None:
    """Scale every font size and unify every font family, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("font") and isinstance(value, dict):
                size = value.get("size")
                if isinstance(size, (int, float)) and not isinstance(size, bool):
                    value["size"] = round(size * factor, 2)
                if "family" in value:
                    value["family"] = FONT_FAMILY
            if isinstance(value, (dict, list)):
                _scale_fonts(value, factor)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _scale_fonts(item, factor)


def _scale_scalar(holder: dict, key: str, factor: float, minimum: float) -> None:
    value = holder.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        holder[key] = max(minimum, round(value * factor, 2))


def _base_font(layout: dict) -> float:
    for source in (layout, layout.get("template", {}).get("layout", {})):
        size = source.get("font", {}).get("size")
        if isinstance(size, (int, float)):
            return float(size)
    return 12.0  # plotly.js default


def _margin(layout: dict) -> dict[str, float]:
    template = layout.get("template", {}).get("layout", {}).get("margin", {})
    margin = {"l": 80, "r": 80, "t": 100, "b": 80} | template | layout.get("margin", {})
    return {k: float(margin[k]) for k in ("l", "r", "t", "b")}


def restyle(figure: go.Figure | dict, size: ExportSize) -> dict:
    """A copy of ``figure`` laid out for ``size``: fonts, margins, marks, background.

    Fonts, margins, marker sizes and line widths scale by ``size.font_px`` over the
    figure's base font, so a slide has large text and a column figure 7 pt text;
    every font uses the template's one family; the background is white.

    Returns
    -------
    dict
        A plotly figure dict (the input is not modified).
    """
    fig = copy.deepcopy(figure if isinstance(figure, dict) else figure.to_dict())
    layout = fig.setdefault("layout", {})
    base = _base_font(layout)
    factor = size.font_px / base
    margin = _margin(layout)
    _scale_fonts(fig, factor)  # also scales the embedded template's fonts
    layout.setdefault("font", {})
    layout["font"]["family"] = FONT_FAMILY
    layout["font"]["size"] = round(base * factor, 2)
    for trace in fig.get("data", []):
        marker = trace.get("marker")
        if isinstance(marker, dict):
            _scale_scalar(marker, "size", factor, 1.0)
            if isinstance(marker.get("colorbar"), dict):
                _scale_scalar(marker["colorbar"], "thickness", factor, 4.0)
            if isinstance(marker.get("line"), dict):
                _scale_scalar(marker["line"], "width", factor, 0.25)
        if isinstance(trace.get("line"), dict):
            _scale_scalar(trace["line"], "width", factor, 0.5)
    margin = {k: v * factor for k, v in margin.items()}
    if not PRESETS[size.preset].keep_title:
        title = layout.get("title")
        if title:
            layout["title"] = {"text": ""}
        margin["t"] = min(margin["t"], 2 * size.font_px)
    # margins sized for a wide screen card must not eat a narrow figure: keep at
    # least half the width and height for the plot and let axes claim label room
    for pair, total in ((("l", "r"), size.width), (("t", "b"), size.height)):
        used = margin[pair[0]] + margin[pair[1]]
        if used > total / 2:
            for side in pair:
                margin[side] *= total / 2 / used
    for key in list(layout):
        if re.fullmatch(r"[xy]axis\d*", key) and isinstance(layout[key], dict):
            layout[key].setdefault("automargin", True)
    layout["margin"] = {k: round(v, 1) for k, v in margin.items()}
    layout.update(
        width=size.width,
        height=size.height,
        autosize=False,
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    return fig


# ------------------------------------------------------------------- many points


def _marker_traces(fig: dict) -> list[dict]:
    return [
        t
        for t in fig.get("data", [])
        if t.get("type", "scatter") in ("scatter", "scattergl")
        and "markers" in str(t.get("mode", "markers"))
        and _array(t.get("x")) is not None
    ]


def _n_points(trace: dict) -> int:
    x = _array(trace.get("x"))
    return 0 if x is None else len(x)


def _stratum_labels(trace: dict, n: int) -> np.ndarray:
    """Strata within a trace: its categorical colours if it has any, else one."""
    color = _array((trace.get("marker") or {}).get("color"))
    # strings are categories; integer codes are categories too (the CD8 UMAP colours
    # states, and binned expression, by uint8 codes on a stepped colour scale)
    if color is not None and len(color) == n and color.dtype.kind in "OUSiu":
        return color.astype(str)
    return np.zeros(n, dtype=int)


_PER_POINT = ("x", "y", "text", "hovertext", "customdata", "ids")
_PER_POINT_MARKER = ("color", "size", "symbol", "opacity")


def _take(trace: dict, keep: np.ndarray, n: int) -> None:
    for key in _PER_POINT:
        array = _array(trace.get(key))
        if array is not None and len(array) == n:
            trace[key] = array[keep]
    marker = trace.get("marker")
    if isinstance(marker, dict):
        for key in _PER_POINT_MARKER:
            array = _array(marker.get(key))
            if array is not None and len(array) == n:
                marker[key] = array[keep]
    trace.pop("selectedpoints", None)


def _allocate(counts: Sequence[int], total: int) -> list[int]:
    """Largest-remainder proportional allocation, at least one per non-empty group."""
    n = sum(counts)
    exact = [total * c / n for c in counts]
    take = [
        min(c, max(1 if c else 0, math.floor(e)))
        for c, e in zip(counts, exact, strict=True)
    ]
    order = sorted(range(len(counts)), key=lambda i: exact[i] - take[i], reverse=True)
    for i in order:
        if sum(take) >= total:
            break
        if take[i] < counts[i]:
            take[i] += 1
    return take


def prepare_points(
    fig: dict, *, fmt: str, mode: str, limit: int, seed: int
) -> tuple[dict, str]:
    """Decide how marker points are drawn in ``fmt``; return the figure and a note.

    PNG keeps the figure as is. In SVG and PDF, up to ``limit`` points are drawn as
    vector points (WebGL traces become SVG scatter). Above it, ``mode="raster"``
    draws the points with WebGL, which plotly embeds as one image inside the
    vector axes; ``mode="sample"`` keeps a seeded sample of ``limit`` points as
    vector points, stratified by trace and by categorical colour with proportional
    allocation, so every group keeps its share.
    """
    traces = _marker_traces(fig)
    total = sum(_n_points(t) for t in traces)
    if fmt == "png" or not traces:
        return fig, ""
    fig = copy.deepcopy(fig)
    traces = _marker_traces(fig)
    if total <= limit:
        for trace in traces:
            trace["type"] = "scatter"
        return fig, f"All {total:,} points drawn as vector points."
    if mode == "raster":
        for trace in traces:
            trace["type"] = "scattergl"
        return fig, (
            f"{total:,} points drawn as a raster layer inside vector axes "
            "(text, axes and legend stay vector)."
        )
    rng = np.random.default_rng(seed)
    strata: list[tuple[int, np.ndarray]] = []
    for index, trace in enumerate(traces):
        labels = _stratum_labels(trace, _n_points(trace))
        for value in pd.unique(labels):
            strata.append((index, np.flatnonzero(labels == value)))
    take = _allocate([len(rows) for _, rows in strata], limit)
    keep: dict[int, list[np.ndarray]] = {i: [] for i in range(len(traces))}
    for (index, rows), k in zip(strata, take, strict=True):
        keep[index].append(rng.choice(rows, size=k, replace=False))
    kept = 0
    for index, trace in enumerate(traces):
        chosen = np.sort(np.concatenate(keep[index])) if keep[index] else []
        _take(trace, np.asarray(chosen, dtype=int), _n_points(trace))
        trace["type"] = "scatter"
        kept += len(chosen)
    groups = len(strata)
    return fig, (
        f"A seeded (seed {seed}) random sample of {kept:,} of {total:,} points drawn "
        f"as vector points, stratified over {groups} group(s) in proportion to size."
    )


# ---------------------------------------------------------------------- caption


def provenance_text(provenance: Mapping[str, object]) -> str:
    """One readable paragraph from a provenance record (for footnotes, desc)."""
    skip = {
        "caption",
        "title",
        "page",
        "panel",
        "export",
        "app",
        "app_version",
        "exported_at",
        "figure_sha256",
        "dataset",
        "dataset_title",
        "dataset_version",
        "synthetic",
        "filters",
        "state",
        "stats",
    }
    parts = []
    if provenance.get("caption"):
        parts.append(str(provenance["caption"]).rstrip(".") + ".")
    title = provenance.get("dataset_title") or provenance.get("dataset")
    if title:
        kind = "synthetic data" if provenance.get("synthetic") else "real data"
        version = provenance.get("dataset_version")
        parts.append(
            f"Dataset: {title}"
            + (f" v{version}" if version not in (None, "") else "")
            + f" ({kind})."
        )
    if provenance.get("filters"):
        parts.append(f"Filters: {provenance['filters']}.")
    said = " ".join(parts)
    if provenance.get("gate_rule"):
        skip.add("gate")  # the readable rule says the same as the URL form
    for key, value in provenance.items():
        if key in skip or value in (None, "", [], {}):
            continue
        label = key.replace("_", " ")
        # nested records (full statistics, page state) stay in the metadata only
        if isinstance(value, Mapping) and (
            len(value) > 8
            or any(isinstance(v, (Mapping, list)) for v in value.values())
        ):
            continue
        if isinstance(value, (list, tuple)) and len(value) > 12:
            continue
        if isinstance(value, Mapping):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:.3g}"
        if str(value).rstrip(".") in said:
            continue  # the caption already says it (test, exclusions)
        parts.append(f"{label}: {value}.")
    export = provenance.get("export")
    if isinstance(export, Mapping) and export.get("points_note"):
        parts.append(str(export["points_note"]))
    stamp = provenance.get("exported_at", "")
    parts.append(
        f"Made with {provenance.get('app', APP_NAME)} "
        f"{provenance.get('app_version', APP_VERSION)} on {stamp}."
    )
    return " ".join(parts)


def add_caption(fig: dict, text: str, size: ExportSize) -> dict:
    """Draw ``text`` as a small footnote under the plot, growing the bottom margin.

    The footnote sits below the space the figure reserved for its x-axis labels, in
    extra margin added for it; the figure keeps its size.
    """
    fig = copy.deepcopy(fig)
    layout = fig.setdefault("layout", {})
    font_px = max(6.0, size.font_px * 0.75)
    margin = dict(layout.get("margin") or {})
    # the footnote starts at the plot's left edge; ~0.6 em per character of Arial
    room = size.width - float(margin.get("l", 0)) - font_px
    per_line = max(30, int(room / (font_px * 0.6)))
    lines = textwrap.wrap(text, per_line) or [""]
    height = len(lines) * font_px * 1.3 + font_px
    axis_room = float(margin.get("b", 60))
    margin["b"] = axis_room + height
    layout["margin"] = margin
    annotations = list(layout.get("annotations") or [])
    annotations.append(
        {
            "text": "<br>".join(html.escape(line, quote=False) for line in lines),
            "xref": "paper",
            "yref": "paper",
            "x": 0,
            "y": 0,
            "xanchor": "left",
            "yanchor": "top",
            "yshift": -axis_room,
            "align": "left",
            "showarrow": False,
            "font": {"size": round(font_px, 2), "color": "#555", "family": FONT_FAMILY},
            "name": "icb-provenance-caption",
        }
    )
    layout["annotations"] = annotations
    return fig


# --------------------------------------------------------------------- renderer


def browser_path() -> str | None:
    """The Chromium executable Kaleido will use: ``BROWSER_PATH`` or the system's."""
    from choreographer.browsers.chromium import Chromium

    explicit = os.environ.get("BROWSER_PATH")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    try:
        return str(Chromium.find_browser(skip_local=False) or "") or None
    except Exception:  # any failure of the search means "not found"
        return None


def _missing_browser() -> RendererUnavailable:
    explicit = os.environ.get("BROWSER_PATH")
    where = (
        f"BROWSER_PATH={explicit!r} is not an executable file"
        if explicit
        else "no Chromium or Chrome was found on the server"
    )
    return RendererUnavailable(
        f"Figures cannot be rendered on the server: {where}.", CHROMIUM_HINT
    )


#: Niceness of the export renderer thread and its Chromium (0 = normal, 19 = lowest).
RENDER_NICENESS = 10


def _lower_priority(tasks: Sequence[int]) -> None:
    """Set the niceness of these Linux tasks (threads) to ``RENDER_NICENESS``."""
    for task in tasks:
        try:
            if os.getpriority(os.PRIO_PROCESS, task) < RENDER_NICENESS:
                os.setpriority(os.PRIO_PROCESS, task, RENDER_NICENESS)
        except (AttributeError, OSError):  # not Linux, gone, or not permitted
            continue


class _Renderer:
    """One headless Chromium with its own event loop thread."""

    def __init__(self, path: str, timeout: float):
        import kaleido

        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._serve, name="icb-kaleido", daemon=True
        )
        self.thread.start()

        async def start():
            # mathjax=False: the default loads MathJax from a CDN, which a lab
            # server without internet would wait for on every page load.
            k = kaleido.Kaleido(n=1, timeout=timeout, mathjax=False, path=path)
            await k.open()
            return k

        try:
            self.kaleido = self._run(start(), timeout)
        except BaseException:
            self._stop_loop()
            raise
        self.lower_browser_priority()

    def _serve(self) -> None:
        # Exports are batch work: this thread yields the CPU to the interactive
        # callbacks of every user on a shared server (so does Chromium, below).
        _lower_priority([threading.get_native_id()])
        self.loop.run_forever()

    def lower_browser_priority(self) -> None:
        """Renice Chromium's processes (every thread) to ``RENDER_NICENESS``.

        Processes Chromium starts later (renderers, forked from its zygote) inherit
        the niceness; an unprivileged service user cannot raise it back.
        """
        import psutil

        browser = getattr(self.kaleido, "subprocess", None)  # choreographer's Popen
        try:
            if browser is not None:
                root = psutil.Process(browser.pid)
                processes = [root, *root.children(recursive=True)]
            else:  # only the worker's Chromium children, not its background jobs
                processes = [
                    p
                    for p in psutil.Process(self.pid).children(recursive=True)
                    if "chrom" in p.name().lower()
                ]
        except psutil.Error:
            return
        tasks = []
        for child in processes:
            try:
                tasks += [t.id for t in child.threads()]
            except psutil.Error:
                continue
        _lower_priority(tasks)

    def _run(self, coroutine, timeout: float):
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise

    def render(self, fig: dict, opts: dict, timeout: float) -> bytes:
        # Chromium starts processes as it needs them (and as root may reset
        # priorities): renice what is there before every render.
        self.lower_browser_priority()
        return self._run(self.kaleido.calc_fig(fig, opts=opts), timeout)

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def close(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child does not own the parent's browser
        try:
            self._run(self.kaleido.close(), 5)
        except Exception:  # a hung or dead browser: make sure no process is left
            process = getattr(self.kaleido, "subprocess", None)
            if process is not None and process.poll() is None:
                process.kill()
        self._stop_loop()


# One renderer per process, created on first export (so after gunicorn forks), and a
# lock: renders are serialised because a Chromium tab renders one figure at a time
# and the renderer must not be started twice by concurrent first requests.
_LOCK = threading.Lock()
_RENDERER: _Renderer | None = None


def _forget_after_fork() -> None:
    global _LOCK, _RENDERER
    _LOCK = threading.Lock()
    _RENDERER = None


os.register_at_fork(after_in_child=_forget_after_fork)


def shutdown_renderer() -> None:
    """Close this process's browser (also called at exit)."""
    global _RENDERER
    with _LOCK:
        renderer, _RENDERER = _RENDERER, None
    if renderer is not None:
        renderer.close()


def _shutdown_at_exit() -> None:
    # the browser library logs while closing; at exit the log streams may already
    # be closed (pytest), which would print "Logging error" noise
    logging.raiseExceptions = False
    shutdown_renderer()


atexit.register(_shutdown_at_exit)


def render(
    fig: dict | go.Figure,
    *,
    fmt: str,
    width: float,
    height: float,
    scale: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> bytes:
    """Render a figure with this process's Chromium; thread-safe.

    Raises
    ------
    RendererUnavailable
        Chromium is missing or does not start (message has the install hint).
    ExportError
        The render failed or took longer than ``timeout`` seconds (the browser is
        then restarted on the next export).
    """
    global _RENDERER
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}.", "use png, svg or pdf.")
    spec = fig if isinstance(fig, dict) else fig.to_dict()
    opts = {"format": fmt, "width": width, "height": height, "scale": scale}
    if not _LOCK.acquire(timeout=timeout * 4):
        raise ExportError(
            "the server is busy with other exports.", "try again in a minute."
        )
    try:
        if _RENDERER is None:
            path = browser_path()
            if path is None:
                raise _missing_browser()
            try:
                _RENDERER = _Renderer(path, timeout)
            except FutureTimeout:
                raise RendererUnavailable(
                    f"Chromium ({path}) did not start within {timeout:g} s.",
                    CHROMIUM_HINT,
                ) from None
            except Exception as err:
                raise RendererUnavailable(
                    f"Chromium ({path}) could not be started: {err}", CHROMIUM_HINT
                ) from err
        try:
            return _RENDERER.render(spec, opts, timeout)
        except (FutureTimeout, TimeoutError):
            broken, _RENDERER = _RENDERER, None
            threading.Thread(target=broken.close, daemon=True).start()
            raise ExportError(
                f"rendering took longer than {timeout:g} s and was stopped.",
                "export a smaller size, or use 'sample' for figures with many points.",
            ) from None
        except Exception as err:
            log.error("figure render failed: %s", redacted_traceback(err))
            raise ExportError(
                f"the figure could not be rendered ({type(err).__name__}).",
                "try another format or size; the error was logged on the server.",
            ) from err
    finally:
        _LOCK.release()


# -------------------------------------------------------------------- provenance

PNG_KEY = "icb:provenance"
SVG_NS = "https://github.com/icb-cohort-explorer/provenance"
PDF_KEY = "/ICBProvenance"
_JSON = {"sort_keys": True, "default": str, "ensure_ascii": True}


def _png_with_provenance(data: bytes, record: dict, text: str, dpi: int | None):
    from PIL import Image, PngImagePlugin

    image = Image.open(io.BytesIO(data))
    info = PngImagePlugin.PngInfo()
    # tEXt is Latin-1: the JSON is ASCII-escaped; the readable text goes in iTXt
    info.add_text(PNG_KEY, json.dumps(record, **_JSON))
    info.add_text("Software", f"{APP_NAME} {APP_VERSION}")
    info.add_itxt("Title", str(record.get("title", "")))
    info.add_itxt("Description", text)
    info.add_text("Creation Time", str(record.get("exported_at", "")))
    out = io.BytesIO()
    extra = {"dpi": (dpi, dpi)} if dpi else {}
    image.save(out, format="PNG", pnginfo=info, **extra)
    return out.getvalue()


def _svg_with_provenance(data: bytes, record: dict, text: str, size: ExportSize):
    svg = data.decode("utf-8")
    match = re.search(r"<svg\b[^>]*>", svg)
    if match is None:
        raise ExportError("the renderer returned an SVG without a root element.")
    root = match.group(0)
    # physical size: millimetres for print presets (Illustrator reads px as pt),
    # layout pixels otherwise; the viewBox keeps the drawing as it is
    preset = PRESETS[size.preset]
    if size.dpi and preset.width_mm and preset.height_mm:
        # the preset's nominal size (the pixels were rounded, the millimetres not)
        w, h = f"{preset.width_mm:.2f}mm", f"{preset.height_mm:.2f}mm"
    else:
        w, h = f"{size.width:g}", f"{size.height:g}"
    root = re.sub(r'\swidth="[^"]*"', f' width="{w}"', root, count=1)
    root = re.sub(r'\sheight="[^"]*"', f' height="{h}"', root, count=1)
    blob = json.dumps(record, **_JSON)
    head = (
        f"<title>{escape(str(record.get('title', '')))}</title>"
        f"<desc>{escape(text)}</desc>"
        f'<metadata><icb:provenance xmlns:icb="{SVG_NS}">{escape(blob)}'
        "</icb:provenance></metadata>"
    )
    return (svg[: match.start()] + root + head + svg[match.end() :]).encode("utf-8")


def _pdf_with_provenance(data: bytes, record: dict, text: str, shrink: float):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    if shrink != 1:
        # rendered large so the WebGL point layer has print resolution; bring the
        # page back to the physical size (vector content is unaffected)
        for page in writer.pages:
            page.scale_by(shrink)
    stamp = str(record.get("exported_at", ""))
    try:
        when = datetime.fromisoformat(stamp).strftime("D:%Y%m%d%H%M%S+00'00'")
    except ValueError:
        when = ""
    writer.add_metadata(
        {
            "/Title": str(record.get("title", "")),
            "/Subject": text,
            "/Creator": f"{APP_NAME} {APP_VERSION}",
            "/Producer": f"{APP_NAME} {APP_VERSION} (Kaleido, pypdf)",
            "/Keywords": ", ".join(
                str(record.get(k, "")) for k in ("dataset", "page", "panel")
            ),
            **({"/CreationDate": when} if when else {}),
            PDF_KEY: json.dumps(record, **_JSON),
        }
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def read_provenance(data: bytes, fmt: str) -> dict:
    """The provenance record embedded in an exported file (PNG, SVG or PDF)."""
    if fmt == "png":
        from PIL import Image

        return json.loads(Image.open(io.BytesIO(data)).text[PNG_KEY])
    if fmt == "svg":
        import xml.etree.ElementTree as ET

        root = ET.fromstring(data)
        node = root.find(f".//{{{SVG_NS}}}provenance")
        if node is None or node.text is None:
            raise ExportError("this SVG carries no provenance.")
        return json.loads(node.text)
    if fmt == "pdf":
        from pypdf import PdfReader

        info = PdfReader(io.BytesIO(data)).metadata or {}
        return json.loads(str(info[PDF_KEY]))
    raise ExportError(f"unknown format {fmt!r}.", "use png, svg or pdf.")


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
) -> ExportedFile:
    """Render one panel in the chosen format and size, with provenance embedded.

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

    Raises
    ------
    ExportError, RendererUnavailable
        Bad settings, or the renderer is missing or failed.
    """
    size = settings.size()
    fmt = settings.format
    fig = restyle(panel.figure, size)
    fig, points_note = prepare_points(
        fig,
        fmt=fmt,
        mode=settings.points,
        limit=settings.max_vector_points,
        seed=settings.seed,
    )
    record = {
        "app": APP_NAME,
        "app_version": APP_VERSION,
        "exported_at": exported_at or _stamp(),
        "page": page,
        "panel": panel.key,
        "title": panel.title,
        "caption": panel.caption,
        **{k: v for k, v in panel.provenance.items() if k not in ("export",)},
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
    name = safe_name(f"{page}-{panel.key}" if page else panel.key)
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
    return {
        "settings_version": SETTINGS_VERSION,
        "app": APP_NAME,
        "app_version": APP_VERSION,
        "created": created or _stamp(),
        "dataset": dataset,
        "filter": dict(filter_state),
        "pages": {page: dict(state) for page, state in pages.items()},
        "export": export.to_dict(),
    }


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
    write("settings.json", json.dumps(document, indent=2, default=str).encode())
    built = [(page, build_panels(page, view, state)) for page, state in pages.items()]
    steps = sum(len(panels) for _, panels in built) or 1
    done = 0
    manifest = []
    for page, panels in built:
        for panel in panels:
            if progress:
                progress(done, steps, f"{page}: {panel.title}")
            entry: dict[str, object] = {"page": page, "panel": panel.key}
            base = f"{safe_name(page)}/{safe_name(panel.key)}"
            csv = panel.table.to_csv(index=False).encode("utf-8")
            write(f"{base}.csv", csv)
            entry["table"] = f"{base}.csv"
            if has_figure(panel):
                exported = export_figure(
                    panel, settings, page=page, timeout=timeout, exported_at=stamp
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
            done += 1
    if progress:
        progress(steps, steps, "done")
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


def zip_name(dataset: str, scope: str, fmt: str) -> str:
    """File name of an export-all zip, e.g. ``icb-demo-all-pages-pdf-20261122.zip``."""
    day = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return safe_name(f"icb-{dataset}-{scope}-{fmt}-{day}") + ".zip"


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
    from analysis.nk_response import resolve_state
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
    definition = DEFINITIONS[state.definition]
    table["response_definition"] = definition.label
    table["response_group"] = assign_response(table, state.definition).astype(object)
    if state.metric:
        metric = get_metric(view.samples, state.metric)
        values = patient_metric(
            view.samples, state.metric, timepoint=state.nk_timepoint
        )
        values = values[[*keys, "value", "n_samples"]].rename(
            columns={
                "value": f"nk_metric_{state.nk_timepoint}",
                "n_samples": f"nk_samples_{state.nk_timepoint}",
            }
        )
        table = table.merge(values, on=keys, how="left")
        table["nk_metric"] = metric.label
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
    "FORMATS",
    "PRESETS",
    "ExportError",
    "ExportSettings",
    "ExportSize",
    "ExportedFile",
    "RendererUnavailable",
    "export_figure",
    "export_pages",
    "export_zip",
    "read_provenance",
    "render",
    "resolve_size",
    "settings_document",
]
