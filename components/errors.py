"""What the browser sees when a callback fails: a short message, never a traceback."""

from __future__ import annotations

import logging

from dash import set_props

from components import ids
from data.errors import DataError

log = logging.getLogger("icb.callbacks")


def handle_callback_error(err: Exception) -> None:
    """Log the detail server-side and show the user a short, actionable message."""
    if isinstance(err, DataError):
        message = str(err.problems[0]) if err.problems else str(err)
        log.warning("data problem in a callback: %s", message)
    else:
        log.exception("callback failed")
        message = (
            "Something went wrong while updating this view. The error was logged on "
            "the "
            "server; try another filter or reload the page."
        )
    set_props(ids.ERROR_ALERT, {"children": message, "is_open": True})
