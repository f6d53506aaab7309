"""One domain error type for every problem with a user's data."""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def _format_rows(rows: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    more = len(rows) - limit
    return shown + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in a data file.

    Parameters
    ----------
    file
        File name the problem is in (``cohort.csv``), never a full server path.
    message
        What is wrong, in a biologist's words.
    fix
        What to do about it.
    column
        Column concerned, if any.
    rows
        1-based data row numbers as a spreadsheet shows them (header is row 1, so the
        first data row is row 2).
    severity
        ``"error"`` blocks loading; ``"warning"`` is shown but allowed.
    """

    file: str
    message: str
    fix: str = ""
    column: str | None = None
    rows: tuple[int, ...] = field(default_factory=tuple)
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file
        if self.column is not None:
            where += f", column `{self.column}`"
        if self.rows:
            noun = "row" if len(self.rows) == 1 else "rows"
            where += f", {noun} {_format_rows(self.rows)}"
        text = f"{where}: {self.message}"
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


class DataError(Exception):
    """Raised when a data file cannot be used; carries every problem found.

    The message names file, column, row and fix for each problem, so it can be shown
    to the user as is (never a traceback).
    """

    def __init__(self, problems: Iterable[Problem] | Problem | str, *, file: str = ""):
        if isinstance(problems, str):
            problems = [Problem(file=file or "input", message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


def redacted_traceback(err: BaseException, _depth: int = 0) -> str:
    """``err``'s type and stack (file:line in function), without any message text.

    For logs: exception messages can quote data values, patient identifiers among
    them; the type and the code location are what finding the bug needs.
    """
    frames = traceback.extract_tb(err.__traceback__)
    lines = [f"  {f.filename}:{f.lineno} in {f.name}" for f in frames]
    cause = err.__cause__ or err.__context__
    text = f"{type(err).__module__}.{type(err).__qualname__} (message withheld)\n"
    text += "\n".join(lines)
    if cause is not None and cause is not err and _depth < 5:
        text += "\ncaused by " + redacted_traceback(cause, _depth + 1)
    return text
