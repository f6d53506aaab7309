"""What an import did: notes on every mapping and conversion, and warnings."""

from __future__ import annotations

from dataclasses import dataclass, field

from data.errors import Problem


@dataclass
class ImportReport:
    """Plain-language record of an import, shown by the CLI and the Data page.

    Attributes
    ----------
    notes
        One line per mapping or conversion ("treatment: Pembrolizumab -> anti-PD-1").
    warnings
        Problems that do not block the import (unmatched ids, ambiguous classes).
    """

    notes: list[str] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def extend(self, other: ImportReport) -> None:
        """Append another report's notes and warnings."""
        self.notes += other.notes
        self.warnings += other.warnings

    def lines(self) -> list[str]:
        """Notes then warnings, one string each, for printing."""
        return [f"  - {n}" for n in self.notes] + [
            f"  WARNING {w}" for w in self.warnings
        ]

    def to_dict(self) -> dict[str, list[str]]:
        """JSON-able form (stored in ``dataset.json`` as ``import_report``)."""
        return {"notes": list(self.notes), "warnings": [str(w) for w in self.warnings]}
