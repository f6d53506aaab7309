"""Page modules register themselves with Dash: the app must exist before they import."""

import app  # noqa: F401
