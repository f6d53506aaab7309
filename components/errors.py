"""What the browser sees when a callback fails: a short message, never a traceback.

Nothing here writes an exception's *message* to the log: messages of data errors and
of pandas/numpy errors can quote cell values, and cell values include patient
identifiers. The log gets a reference number, the exception type and the code
location (file, line, function) of every frame, which is what finding the bug needs;
the user gets the same reference number.
"""

from __future__ import annotations

import logging
import secrets

from dash import set_props

from components import ids
from data.errors import DataError, redacted_traceback

log = logging.getLogger("icb.callbacks")


def describe_data_error(err: DataError) -> str:
    """Where a data error is (file, column, number of rows), never its values."""
    parts = []
    for problem in err.problems[:5]:
        where = problem.file
        if problem.column is not None:
            where += f" column {problem.column!r}"
        if problem.rows:
            where += f" ({len(problem.rows)} row(s))"
        parts.append(where)
    more = len(err.problems) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def handle_callback_error(err: Exception) -> None:
    """Log the detail server-side and show the user a short, actionable message."""
    ref = secrets.token_hex(4)
    if isinstance(err, DataError):
        # the user sees the full message (their own data); the log only where it is
        message = str(err.problems[0]) if err.problems else str(err)
        log.warning(
            "data problem in a callback ref=%s: %s", ref, describe_data_error(err)
        )
    else:
        log.error("callback failed ref=%s: %s", ref, redacted_traceback(err))
        message = (
            f"Something went wrong while updating this view (reference {ref}). The "
            "error was logged on the server; try another filter or reload the page."
        )
    set_props(ids.ERROR_ALERT, {"children": message, "is_open": True})
