"""A panel: one figure with the data behind it, its caption and its provenance.

Pages show panels, exports write them (image + CSV + metadata), and the CLI rebuilds
them from saved settings, so all three agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go


@dataclass(frozen=True)
class Panel:
    """One figure of a page.

    Attributes
    ----------
    key
        Stable id within the page (``nk-box``); used for file names in exports.
    title
        Card title.
    figure
        The plotly figure (already states n per group, metric and test).
    table
        The data behind the figure, one row per plotted unit (patient, group...).
    caption
        One or two sentences: n per group, metric, test, exclusions.
    provenance
        Machine-readable context: dataset, filters, metric, response definition,
        gate, test, p-value, n per group.
    """

    key: str
    title: str
    figure: go.Figure
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    caption: str = ""
    provenance: dict = field(default_factory=dict)
