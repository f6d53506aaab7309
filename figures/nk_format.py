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


def titled(main: str, *subs: str, width: int = 80) -> str:
    """Title with small subtitle lines (each ``sub`` on its own line, long ones
    wrapped so a half-width card does not cut them off)."""
    lines = [
        line
        for sub in subs
        if sub
        for line in (
            textwrap.wrap(sub, width, break_on_hyphens=False)
            if "<" not in sub
            else [sub]
        )
    ]
    return main + "".join(f"<br><sup>{line}</sup>" for line in lines)


def top_margin(title: str, minimum: int) -> int:
    """Top margin that fits a title of this many lines (see :func:`top_title`)."""
    # plotly spaces every title line at the main font's height, <sup> lines too
    return max(minimum, 62 + 21 * title.count("<br>"))


def top_title(title: str) -> dict:
    """A title hung from the top of the figure: plotly centres a title in the top
    margin by default, so a long one spills into the plot."""
    return {
        "text": title,
        "yref": "container",
        "y": 1,
        "yanchor": "top",
        "pad": {"t": 34},  # below the modebar
    }


def group_color(group: str, i: int) -> str:
    return RESPONSE_COLORS.get(group) or QUALITATIVE[i % len(QUALITATIVE)]


def html_wrap(text: str, width: int = 62) -> str:
    return "<br>".join(textwrap.wrap(text, width))
