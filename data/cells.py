"""Single-cell data of a bundle: annotations read once, expression lazily."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from data.bundle import Bundle, read_cell_obs


@lru_cache(maxsize=4)
def _cell_obs(path: str, mtime: float) -> pd.DataFrame:
    obs, _, _ = read_cell_obs(Path(path))
    return obs


def cell_obs(bundle: Bundle) -> pd.DataFrame:
    """``obs`` of the bundle's ``cd8_cells.h5ad`` (empty frame when it has none).

    Shared and cached: never modify the returned frame in place.
    """
    if not bundle.has_cells:
        return pd.DataFrame(columns=["sample_id", "patient_id", "cd8_state"])
    path = bundle.cells_path
    return _cell_obs(str(path), path.stat().st_mtime)


def cells_per_sample(bundle: Bundle) -> pd.Series:
    """Number of CD8 cells per ``sample_id`` (samples without cells are absent)."""
    obs = cell_obs(bundle)
    return obs["sample_id"].astype(str).value_counts()
