"""Provenance of an exported figure: readable text and the record in the file itself.

A PNG ``tEXt`` chunk, SVG ``<metadata>``/``<desc>``, PDF document info; and
:func:`read_provenance` reads any of them back.
"""

from __future__ import annotations

import io
import json
import re
import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

from figures.export_settings import PRESETS, ExportError, ExportSize

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
