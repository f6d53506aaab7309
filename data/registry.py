"""Find datasets by name in the data directory; load them, cached read-only per process.

Each gunicorn worker loads lazily on first use; nothing here is mutated by callers, and
the cache key includes file modification times so a re-imported dataset is picked up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from data import schema
from data.bundle import Bundle, DatasetMeta, load_bundle, read_meta
from data.errors import DataError, Problem

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a valid dataset id, else raise :class:`DataError`.

    Ids are letters, digits, ``_``, ``-`` and ``.`` (not leading), at most 64
    characters, and never a path (``../../etc`` is refused).
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise DataError(
            Problem(
                file="dataset name",
                message=f"{name!r} is not a valid dataset name.",
                fix="use 1-64 letters, digits, '_', '-' or '.', starting with a letter "
                "or digit (no slashes, no '..').",
            )
        )
    return name


@dataclass(frozen=True)
class DatasetEntry:
    """One folder in the data directory, loadable or not."""

    name: str
    path: Path
    meta: DatasetMeta | None
    error: str | None


def list_datasets(data_dir: Path) -> list[DatasetEntry]:
    """Every bundle folder in ``data_dir`` (sorted by name; demo first)."""
    if not data_dir.is_dir():
        return []
    entries = []
    for path in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        if path.name.startswith(".") or not _NAME.match(path.name):
            continue  # temporary folders of an import in progress, or foreign files
        if not (path / schema.DATASET_JSON).exists():
            continue
        try:
            entries.append(DatasetEntry(path.name, path, read_meta(path), None))
        except DataError as err:
            entries.append(DatasetEntry(path.name, path, None, str(err)))
    entries.sort(key=lambda e: (e.name != "demo", e.name))
    return entries


def resolve_dataset(name_or_path: str, data_dir: Path) -> Path:
    """Folder of a dataset given by name (in ``data_dir``) or, for the CLI, by path."""
    candidate = Path(name_or_path)
    if candidate.is_dir() and (candidate / schema.DATASET_JSON).exists():
        return candidate
    name = check_dataset_name(name_or_path)
    path = data_dir / name
    if not path.is_dir():
        known = ", ".join(e.name for e in list_datasets(data_dir)) or "none"
        raise DataError(
            Problem(
                file="dataset name",
                message=f"no dataset named `{name}` in {data_dir}.",
                fix=f"choose one of: {known}; or import one with "
                "`python cli.py import`.",
            )
        )
    return path


def _stamp(path: Path) -> tuple[float, ...]:
    files = (schema.DATASET_JSON, schema.COHORT_CSV, schema.CELLS_H5AD)
    return tuple(
        (path / f).stat().st_mtime if (path / f).exists() else 0.0 for f in files
    )


@lru_cache(maxsize=8)
def _load_cached(path: str, stamp: tuple[float, ...]) -> Bundle:
    return load_bundle(Path(path))


def get_bundle(name_or_path: str, data_dir: Path) -> Bundle:
    """Load (or reuse) a dataset; raises :class:`DataError` when it is invalid.

    The returned bundle is shared: never modify its frames in place.
    """
    path = resolve_dataset(name_or_path, data_dir).resolve()
    return _load_cached(str(path), _stamp(path))
