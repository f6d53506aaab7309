"""Write a bundle into the data directory atomically.

Everything is written to a hidden temporary folder inside ``data_dir`` (same file
system), validated there with :func:`data.bundle.load_bundle`, and only then renamed
to its name. A failure at any step removes the temporary folder, so the data
directory is left exactly as it was; an existing dataset is replaced only with
``force=True`` and only after the new one is complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from data import schema
from data.bundle import load_bundle
from data.errors import DataError, Problem
from data.importers.report import ImportReport
from data.registry import check_dataset_name
from data.tables import read_csv_file


def dataset_exists(data_dir: Path, name: str) -> bool:
    """True when ``data_dir/name`` exists (a bundle or anything else)."""
    return (Path(data_dir) / check_dataset_name(name)).exists()


def existing_cohort(data_dir: Path, name: str) -> pd.DataFrame:
    """The typed cohort table of an existing dataset (to add columns to it)."""
    path = Path(data_dir) / check_dataset_name(name)
    if not (path / schema.DATASET_JSON).is_file():
        raise DataError(
            Problem(
                file="dataset name",
                message=f"there is no dataset `{name}` in {data_dir} to add to.",
                fix="import the clinical table first (`python cli.py import clinical "
                f"--name {name}`), or give it here with --clinical FILE.",
            )
        )
    return load_bundle(path).cohort


def existing_meta(data_dir: Path, name: str) -> dict[str, Any]:
    """``dataset.json`` of an existing dataset as a dict."""
    path = Path(data_dir) / check_dataset_name(name) / schema.DATASET_JSON
    return json.loads(path.read_text(encoding="utf-8"))


def make_meta(
    name: str,
    *,
    title: str | None = None,
    description: str | None = None,
    source: str | None = None,
    license: str | None = None,
    files: list[str] | None = None,
    report: ImportReport | None = None,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``dataset.json`` content for an imported (never synthetic) dataset."""
    meta = dict(base or {})
    today = dt.date.today().isoformat()
    meta.update(
        name=name,
        title=title or meta.get("title") or name,
        description=description
        or meta.get("description")
        or f"Imported on {today} from {', '.join(files or [])}.",
        source=source or meta.get("source") or ", ".join(files or []) or "unknown",
        license=license or meta.get("license") or "unknown (set with --license)",
        synthetic=False,
        version=str(meta.get("version") or today),
    )
    history = list(meta.get("imports", []))
    history.append(
        {"date": today, "files": files or [], **(report.to_dict() if report else {})}
    )
    meta["imports"] = history
    return meta


OWNER_FILE = ".import-owner"
_TEMP = re.compile(r"^\.(?P<name>.+)-(?P<kind>import|old)-[^/]+$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def remove_stale_imports(data_dir: Path, *, started: float) -> list[str]:
    """Remove hidden folders left by killed imports; return their names.

    A ``.NAME-import-*`` folder is stale when it is older than ``started`` (the
    start of the running import) and the process that made it is gone (its pid is
    in the folder's owner file; folders from before owner files count as gone).
    A ``.NAME-old-*`` backup is removed only when ``NAME`` exists again (its swap
    completed), so an interrupted replacement never loses the old dataset.
    """
    removed = []
    if not Path(data_dir).is_dir():
        return removed
    for path in Path(data_dir).iterdir():
        match = _TEMP.match(path.name)
        if not match or not path.is_dir():
            continue
        try:
            if path.stat().st_mtime >= started:
                continue
            owner = path / OWNER_FILE
            pid = int(owner.read_text().split()[0]) if owner.is_file() else None
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue
        if match["kind"] == "old" and not (Path(data_dir) / match["name"]).exists():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM while a dataset is swapped in (two renames), so an
    interruption never leaves the data directory between them."""
    block = getattr(signal, "pthread_sigmask", None)
    if block is None:
        yield
        return
    old = block(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        block(signal.SIG_SETMASK, old)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same file system: instant, and the source is never opened
    except OSError:
        shutil.copy2(src, dst)


def write_dataset(
    data_dir: Path | str,
    name: str,
    cohort: pd.DataFrame,
    meta: Mapping[str, Any],
    *,
    cells: Any = None,
    keep_cells_from: Path | None = None,
    force: bool = False,
    replace: bool = False,
    started: float | None = None,
) -> Path:
    """Write (or replace) a bundle ``data_dir/name`` atomically.

    Parameters
    ----------
    cohort
        Typed cohort table (written as ``cohort.csv``).
    meta
        ``dataset.json`` content.
    cells
        AnnData to write as ``cd8_cells.h5ad`` (optional).
    keep_cells_from
        An existing ``cd8_cells.h5ad`` to carry over (hard-linked, else copied).
    force
        Replace an existing dataset of that name.
    replace
        The caller is adding to this very dataset (e.g. CIBERSORT added to an
        imported clinical table): replacing it is the point, no ``force`` needed.
    started
        Start time of this import (``time.time()``); hidden folders of killed
        imports older than it are removed first (:func:`remove_stale_imports`).

    Returns
    -------
    Path
        The bundle folder.
    """
    name = check_dataset_name(name)
    data_dir = Path(data_dir)
    target = data_dir / name
    if target.exists() and not (force or replace):
        raise _exists_error(name, data_dir)
    created_dir = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_imports(data_dir, started=time.time() if started is None else started)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-import-", dir=data_dir))
    umask = os.umask(0)
    os.umask(umask)
    try:
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a bundle is not
        (tmp / OWNER_FILE).write_text(f"{os.getpid()}\n", encoding="utf-8")
        (tmp / schema.DATASET_JSON).write_text(
            json.dumps(dict(meta), indent=2, default=str) + "\n", encoding="utf-8"
        )
        cohort.to_csv(tmp / schema.COHORT_CSV, index=False)
        if cells is not None:
            cells.write_h5ad(tmp / schema.CELLS_H5AD, compression="gzip")
        elif keep_cells_from is not None and Path(keep_cells_from).exists():
            _link_or_copy(Path(keep_cells_from), tmp / schema.CELLS_H5AD)
            copy = _gene_major_path(Path(keep_cells_from))
            if copy is not None and copy.exists():
                _link_or_copy(copy, _gene_major_path(tmp / schema.CELLS_H5AD))
        load_bundle(tmp)  # never publish a bundle that does not load
        h5ad = tmp / schema.CELLS_H5AD
        major = _gene_major_path(h5ad)
        if h5ad.exists() and major is not None and not major.exists():
            _write_gene_major(h5ad)
        if target.exists() and not (force or replace):
            # another import published this name while this one was running
            raise _exists_error(name, data_dir, during=True)
        (tmp / OWNER_FILE).unlink()
        with signals_deferred():
            _publish(tmp, target, data_dir, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_dir:
            # only if still empty: a concurrent import may have written to it
            with contextlib.suppress(OSError):
                data_dir.rmdir()
        raise
    return target


def _publish(tmp: Path, target: Path, data_dir: Path, name: str) -> None:
    """Rename the finished folder to its name (swapping out an old one)."""
    if target.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=data_dir))
        backup.rmdir()
        target.rename(backup)
        try:
            tmp.rename(target)
        except OSError:
            backup.rename(target)
            raise
        shutil.rmtree(backup, ignore_errors=True)
    else:
        try:
            tmp.rename(target)
        except OSError:
            if target.exists():  # published by a concurrent import just now
                raise _exists_error(name, data_dir, during=True) from None
            raise


def _exists_error(name: str, data_dir: Path, *, during: bool = False) -> DataError:
    message = (
        f"a dataset named `{name}` was created in {data_dir} by another import while "
        "this one ran."
        if during
        else f"a dataset named `{name}` already exists in {data_dir}."
    )
    return DataError(
        Problem(
            file="dataset name",
            message=message,
            fix="choose another --name, or replace it with --force.",
        )
    )


def _write_gene_major(h5ad_path: Path) -> None:
    """Gene-major expression copy for fast gene lookup (when data.cells offers it)."""
    from data import cells

    writer = getattr(cells, "write_gene_major", None)
    if writer is not None:
        writer(h5ad_path)


def _gene_major_path(h5ad_path: Path) -> Path | None:
    from data import cells

    finder = getattr(cells, "gene_major_path", None)
    return finder(h5ad_path) if finder is not None else None


def read_cohort_strings(path: Path) -> pd.DataFrame:
    """``cohort.csv`` of a bundle as strings (for re-validation)."""
    return read_csv_file(path / schema.COHORT_CSV)
