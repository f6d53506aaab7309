"""Pure analysis functions (statistics, NK metrics, gating). No Dash, no plotly."""
