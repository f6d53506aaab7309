"""Pure plotly figure builders and the shared template. No Dash."""

from figures.template import register_template

register_template()
