"""Data layer: bundle format, validation, dataset registry, filters, demo generator.

Nothing here imports Dash or plotly, so the CLI and the tests reuse it.
"""
