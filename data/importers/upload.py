"""Uploaded clinical tables: staged on the server's disk, never in a browser Store.

The Data page receives a file as base64 inside a callback, checks its size, and
stages the bytes under ``<cache_dir>/uploads/<token>/`` where every worker process
can read them; the browser keeps only the token. Tokens are random hex strings
checked before use, so a client can never name a path.
"""

from __future__ import annotations

import base64
import binascii
import re
import shutil
import time
import uuid
from pathlib import Path

import pandas as pd

from data.errors import DataError, Problem
from data.importers.reading import read_table_bytes

STAGED_FILE = "upload.bin"
#: Staged uploads older than this are removed when a new one arrives.
STAGE_MAX_AGE_S = 24 * 3600
_TOKEN = re.compile(r"^[0-9a-f]{32}$")


def display_name(filename: str | None) -> str:
    """A file name safe to show and to use in messages (no folders)."""
    name = Path(str(filename or "upload")).name
    return re.sub(r"[^\w.\- ()]", "_", name)[:80] or "upload"


def suggest_dataset_name(filename: str | None) -> str:
    """A valid dataset name from a file name (``My cohort (v2).xlsx`` -> ``My_cohort_v2``)."""  # noqa: E501
    stem = Path(display_name(filename)).stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.-")
    name = re.sub(r"\.\.+", ".", name)
    return (name or "my_cohort")[:64]


def decode_upload(contents: str, filename: str | None, *, max_bytes: int) -> bytes:
    """Bytes of a ``dcc.Upload`` data URL, refusing files above ``max_bytes``.

    Raises
    ------
    DataError
        Too large, or not a base64 data URL.
    """
    file = display_name(filename)
    _, _, payload = str(contents or "").partition(",")
    # base64 holds 3 bytes per 4 characters: check before decoding anything large
    if len(payload) * 3 // 4 > max_bytes:
        size_mb = len(payload) * 3 / 4 / 2**20
        raise DataError(
            Problem(
                file=file,
                message=f"the file is {size_mb:.1f} MB; uploads are limited to "
                f"{max_bytes / 2**20:.0f} MB.",
                fix="upload only the clinical table (one row per sample), or import "
                "large files with `python cli.py import` (or raise MAX_UPLOAD_MB).",
            )
        )
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(
            Problem(
                file=file,
                message="the upload arrived damaged (not base64 data).",
                fix="upload the file again.",
            )
        ) from None
    if len(raw) > max_bytes:
        raise DataError(
            Problem(
                file=file,
                message=f"the file is larger than {max_bytes / 2**20:.0f} MB.",
                fix="upload only the clinical table.",
            )
        )
    return raw


def stage_upload(raw: bytes, staging_dir: Path) -> str:
    """Store uploaded bytes under a new random token and return the token."""
    staging_dir = Path(staging_dir)
    staging_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in staging_dir.iterdir():
        if _TOKEN.match(old.name) and now - old.stat().st_mtime > STAGE_MAX_AGE_S:
            shutil.rmtree(old, ignore_errors=True)
    token = uuid.uuid4().hex
    folder = staging_dir / token
    folder.mkdir()
    (folder / STAGED_FILE).write_bytes(raw)
    return token


def staged_path(token: str, staging_dir: Path) -> Path:
    """Path of a staged upload; :class:`DataError` for unknown or malformed tokens."""
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise DataError(
            Problem(
                file="upload", message="unknown upload.", fix="upload the file again."
            )
        )
    path = Path(staging_dir) / token / STAGED_FILE
    if not path.is_file():
        raise DataError(
            Problem(
                file="upload",
                message="the uploaded file is no longer on the server.",
                fix="upload it again.",
            )
        )
    return path


def read_staged(token: str, filename: str, staging_dir: Path) -> pd.DataFrame:
    """The staged table parsed as strings (see :func:`read_table_bytes`)."""
    raw = staged_path(token, staging_dir).read_bytes()
    return read_table_bytes(raw, file=display_name(filename))


def discard_staged(token: str, staging_dir: Path) -> None:
    """Remove a staged upload (after it was saved)."""
    if isinstance(token, str) and _TOKEN.match(token):
        shutil.rmtree(Path(staging_dir) / token, ignore_errors=True)


#: Most distinct values listed per column in the upload page's value table.
MAX_VALUES_PER_COLUMN = 60


def value_table(frame: pd.DataFrame, mapping: dict[str, str]) -> list[dict]:
    """Distinct values of the mapped categorical columns, for the upload page's
    editable table: column, value, rows, what the vocabulary reads it as, and a
    ``code`` (the value itself: edit it to recode; empty = missing).

    Parameters
    ----------
    frame
        The uploaded table as strings.
    mapping
        Bundle column -> source column (``a|b`` allowed).
    """
    from data.importers.recode import CATEGORICAL, reads_as

    rows = []
    for target in CATEGORICAL:
        for source in str(mapping.get(target) or "").split("|"):
            source = source.strip()
            if source not in frame.columns:
                continue
            counts = frame[source].astype(str).str.strip().value_counts()
            for value, n in counts.head(MAX_VALUES_PER_COLUMN).items():
                rows.append(
                    {
                        "column": source,
                        "target": target,
                        "value": value,
                        "rows": int(n),
                        "reads_as": reads_as(target, value),
                        "code": value,
                    }
                )
    return rows
