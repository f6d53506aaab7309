"""Response definitions: how patients are grouped for statistics.

Each definition maps a patient's RECIST category (or the study-reported R/NR) to a group
label; patients a definition cannot place (NE, missing) are *not evaluable* and are
excluded from statistics, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

RESPONDER = "Responder"
NON_RESPONDER = "Non-responder"


@dataclass(frozen=True)
class ResponseDefinition:
    """One way of calling response.

    Attributes
    ----------
    key
        Stable id used in URLs, the CLI and exports.
    label
        Name shown on axes and titles.
    groups
        Group labels in display order; for binary definitions the first is the
        positive class (responders).
    """

    key: str
    label: str
    groups: tuple[str, ...]

    @property
    def binary(self) -> bool:
        return len(self.groups) == 2


DEFINITIONS: dict[str, ResponseDefinition] = {
    "objective": ResponseDefinition(
        "objective",
        "Objective response (CR/PR vs SD/PD)",
        (RESPONDER, NON_RESPONDER),
    ),
    "benefit": ResponseDefinition(
        "benefit",
        "Clinical benefit (CR/PR/SD vs PD)",
        (RESPONDER, NON_RESPONDER),
    ),
    "recist": ResponseDefinition(
        "recist", "RECIST best overall response", ("CR", "PR", "SD", "PD")
    ),
    "reported": ResponseDefinition(
        "reported",
        "Response as reported by the study (R vs NR)",
        (RESPONDER, NON_RESPONDER),
    ),
}

_MAPS = {
    "objective": {
        "CR": RESPONDER,
        "PR": RESPONDER,
        "SD": NON_RESPONDER,
        "PD": NON_RESPONDER,
    },
    "benefit": {"CR": RESPONDER, "PR": RESPONDER, "SD": RESPONDER, "PD": NON_RESPONDER},
    "recist": {"CR": "CR", "PR": "PR", "SD": "SD", "PD": "PD"},
    "reported": {"R": RESPONDER, "NR": NON_RESPONDER},
}


def available_definitions(table: pd.DataFrame) -> list[str]:
    """Definitions the table supports (RECIST-based need RECIST values; 'reported'
    needs a ``response`` column with values)."""
    keys = []
    if table["recist"].isin(["CR", "PR", "SD", "PD"]).any():
        keys += ["objective", "benefit", "recist"]
    if "response" in table.columns and table["response"].notna().any():
        keys.append("reported")
    return keys


def default_definition(table: pd.DataFrame) -> str:
    """Objective response where RECIST exists, else the study's reported response."""
    keys = available_definitions(table)
    return keys[0] if keys else "objective"


def assign_response(table: pd.DataFrame, definition: str) -> pd.Series:
    """Group label per row under ``definition`` (``NA`` = not evaluable).

    Parameters
    ----------
    table
        Rows with ``recist`` (and ``response`` for 'reported').
    definition
        A key of :data:`DEFINITIONS`.
    """
    if definition not in DEFINITIONS:
        raise ValueError(
            f"unknown response definition {definition!r}; use one of "
            f"{', '.join(DEFINITIONS)}"
        )
    source = "response" if definition == "reported" else "recist"
    if source not in table.columns:
        return pd.Series(pd.NA, index=table.index, dtype="string")
    labels = table[source].map(_MAPS[definition]).astype("string")
    return labels
