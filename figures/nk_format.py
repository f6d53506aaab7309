"""Text and colour helpers shared by the NK page's figure modules.

Numbers with their confidence intervals, wrapped titles hung from the top of the
figure, axis labels broken onto two lines, and the NK / response group colours.
"""

from __future__ import annotations

import math
import textwrap

from figures.template import QUALITATIVE, RESPONSE_COLORS

NK_GROUP_COLORS = {"NK-low": "#4477aa", "NK-mid": "#999999", "NK-high": "#ee6677"}
SPLIT_LABELS = {
    "median": {"NK-low": "NK-low (≤ median)", "NK-high": "NK-high (> median)"},
    "tertile": {
        "NK-low": "NK-low (lowest third)",
        "NK-mid": "NK-mid (middle third)",
        "NK-high": "NK-high (highest third)",
    },
}


def number(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def ci_text(low: float, high: float, digits: int = 2) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "CI n/a"
    return f"95% CI {low:.{digits}f} to {high:.{digits}f}"


def axis_label(label: str) -> str:
    """Break a long metric label onto two lines for an axis title."""
    if len(label) > 30 and ", " in label:
        head, tail = label.split(", ", 1)
        return f"{head},<br>{tail}"
    return label


def group_color(group: str, i: int) -> str:
    return RESPONSE_COLORS.get(group) or QUALITATIVE[i % len(QUALITATIVE)]


def html_wrap(text: str, width: int = 62) -> str:
    return "<br>".join(textwrap.wrap(text, width))
