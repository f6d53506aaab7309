"""The one entry point pages and the CLI use: filter choices in, filtered data out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from data.bundle import Bundle
from data.filters import CohortFilter, apply_filter
from data.registry import get_bundle


@dataclass(frozen=True)
class CohortView:
    """A dataset seen through the global filter. Frames are new objects per call."""

    bundle: Bundle
    filter: CohortFilter
    samples: pd.DataFrame

    @property
    def provenance(self) -> dict[str, object]:
        """Dataset and filter, for captions and exported files."""
        meta = self.bundle.meta
        return {
            "dataset": meta.name,
            "dataset_title": meta.title,
            "dataset_version": meta.version,
            "synthetic": meta.synthetic,
            "filters": self.filter.describe(),
        }


def cohort_view(
    choices: Mapping[str, object] | CohortFilter | None,
    *,
    data_dir: Path,
    default_dataset: str,
) -> CohortView:
    """Load the chosen dataset and apply the filter.

    Parameters
    ----------
    choices
        The global filter as stored in the shell's Store (or a :class:`CohortFilter`).
    data_dir
        Folder of dataset bundles.
    default_dataset
        Used when the choices name no dataset.

    Raises
    ------
    data.errors.DataError
        The dataset name is invalid or unknown, or the bundle does not validate.
    """
    flt = (
        choices
        if isinstance(choices, CohortFilter)
        else CohortFilter.from_mapping(choices)
    )
    bundle = get_bundle(flt.dataset or default_dataset, data_dir)
    return CohortView(
        bundle=bundle, filter=flt, samples=apply_filter(bundle.cohort, flt)
    )
