"""Export sizes and settings: presets, millimetres to pixels, the export menu's choices.

Also the export error types, so every export module (and its callers) raises the same
:class:`ExportError`, whose message and fix the pages and the CLI show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from data.errors import DataError, Problem

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
