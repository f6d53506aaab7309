"""Saved cell sets of a dataset: names for set definitions, in ``cellsets.json``.

A saved set is its *definition* (text as in :mod:`analysis.cellsets`), never a list of
cell ids, so it applies to any filter and survives a re-import of the same data. The
file sits in the dataset's bundle folder (shared by every worker and by ``cli.py``)
and is replaced atomically.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

SETS_FILE = "cellsets.json"
MAX_SETS = 200
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.()/+-]{0,59}$")


class SavedSetError(ValueError):
    """A set name or the sets file is invalid; the message says what to change."""


def load_saved_sets(bundle_path: Path | str) -> dict[str, str]:
    """Name -> definition of the saved sets (empty when there are none).

    An unreadable file is reported by name, never silently replaced.
    """
    path = Path(bundle_path) / SETS_FILE
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        sets = raw["sets"]
        return {str(k): str(v) for k, v in sets.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise SavedSetError(
            f"{path} cannot be read ({err}); fix or delete the file"
        ) from None


def check_name(name: str) -> str:
    """The name, stripped; letters, digits, space and ``_.()/+-`` (1-60 characters)."""
    name = " ".join((name or "").split())
    if not _NAME_RE.match(name) or name.casefold() in {"gate", "not:gate"}:
        raise SavedSetError(
            f"set name {name!r}: use 1-60 letters, digits, spaces or _.()/+- "
            "(starting with a letter or digit), not gate"
        )
    return name


def save_set(bundle_path: Path | str, name: str, definition: str) -> dict[str, str]:
    """Add or replace a saved set; returns all saved sets of the dataset."""
    name = check_name(name)
    sets = load_saved_sets(bundle_path)
    sets = {k: v for k, v in sets.items() if k.casefold() != name.casefold()}
    if len(sets) >= MAX_SETS:
        raise SavedSetError(f"at most {MAX_SETS} saved sets per dataset")
    sets[name] = definition
    path = Path(bundle_path) / SETS_FILE
    tmp = path.with_name(f".{SETS_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"sets": sets}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return sets
