"""Load and validate a dataset bundle (dataset.json, cohort.csv, cd8_cells.h5ad).

Loading never writes to disk. Every problem is reported as a
:class:`data.errors.Problem` naming file, column, rows and the fix;
:func:`load_bundle` raises one
:class:`data.errors.DataError` carrying all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data import schema
from data.errors import DataError, Problem
from data.tables import read_csv_file

_ROW_OFFSET = 2  # data row i (0-based) is spreadsheet row i + 2 (header is row 1)


@dataclass(frozen=True)
class DatasetMeta:
    """Contents of ``dataset.json``."""

    name: str
    title: str
    description: str
    source: str
    license: str
    synthetic: bool
    version: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Title with a 'synthetic' mark where it applies."""
        return f"{self.title} (synthetic)" if self.synthetic else self.title


@dataclass(frozen=True)
class Bundle:
    """A validated dataset. Treat every attribute as read-only: it may be cached."""

    path: Path
    meta: DatasetMeta
    cohort: pd.DataFrame
    n_cells: int
    warnings: tuple[Problem, ...] = ()

    @property
    def has_cells(self) -> bool:
        return self.n_cells > 0

    @property
    def cells_path(self) -> Path:
        return self.path / schema.CELLS_H5AD

    @property
    def fraction_columns(self) -> list[str]:
        return [c for c in self.cohort.columns if c.startswith(schema.FRACTION_PREFIX)]

    @property
    def score_columns(self) -> list[str]:
        return [c for c in self.cohort.columns if c.startswith(schema.SCORE_PREFIX)]


def _rows(mask: pd.Series | np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) + _ROW_OFFSET for i in np.flatnonzero(np.asarray(mask)))


# --------------------------------------------------------------------------- metadata


def read_meta(path: Path) -> DatasetMeta:
    """Read and check ``dataset.json`` of a bundle folder."""
    file = schema.DATASET_JSON
    meta_path = path / file
    if not meta_path.is_file():
        raise DataError(
            Problem(
                file=file,
                message=f"the bundle folder `{path.name}` has no {file}.",
                fix="add a dataset.json with name, title, description, source, "
                "license, synthetic and version (see README, 'Dataset bundle format').",
            )
        )
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(
            Problem(file=file, message="not UTF-8 text.", fix="save it as UTF-8.")
        ) from None
    except json.JSONDecodeError as err:
        raise DataError(
            Problem(
                file=file,
                rows=(err.lineno,),
                message=f"not valid JSON ({err.msg}, column {err.colno}).",
                fix="check quotes, commas and braces.",
            )
        ) from None
    if not isinstance(raw, dict):
        raise DataError(Problem(file=file, message="must hold a JSON object {...}."))
    missing = [k for k in schema.DATASET_JSON_REQUIRED if k not in raw]
    if missing:
        raise DataError(
            Problem(
                file=file,
                message=f"missing key(s): {', '.join(missing)}.",
                fix="add them; `synthetic` is true or false.",
            )
        )
    if not isinstance(raw["synthetic"], bool):
        raise DataError(
            Problem(
                file=file,
                column="synthetic",
                message=f"must be true or false, not {raw['synthetic']!r}.",
                fix='write "synthetic": true or "synthetic": false.',
            )
        )
    known = set(schema.DATASET_JSON_REQUIRED)
    return DatasetMeta(
        **{k: (raw[k] if k == "synthetic" else str(raw[k])) for k in known},
        extra={k: v for k, v in raw.items() if k not in known},
    )


# ---------------------------------------------------------------------------- cohort


def _check_vocabulary(
    frame: pd.DataFrame,
    column: str,
    allowed: tuple[str, ...],
    *,
    file: str,
    allow_empty: bool,
) -> list[Problem]:
    values = frame[column]
    bad = ~values.isin(allowed)
    if allow_empty:
        bad &= values != ""
    if not bad.any():
        return []
    problems = []
    for value in pd.unique(values[bad]):
        where = values == value
        shown = "an empty value" if value == "" else f"value `{value}`"
        expected = ", ".join(allowed) + (" or empty" if allow_empty else "")
        problems.append(
            Problem(
                file=file,
                column=column,
                rows=_rows(where),
                message=f"has {shown}; expected one of {expected}.",
                fix=f"replace `{value}` with one of {expected}"
                + (
                    " (`python cli.py import clinical` maps common synonyms)."
                    if column in ("recist", "response", "treatment")
                    else "."
                ),
            )
        )
    return problems


def _check_numeric(
    frame: pd.DataFrame,
    column: str,
    *,
    file: str,
    low: float | None = None,
    high: float | None = None,
) -> tuple[list[Problem], pd.Series]:
    raw = frame[column]
    numbers = pd.to_numeric(raw.where(raw != ""), errors="coerce")
    problems = []
    not_number = numbers.isna() & (raw != "") & ~raw.str.lower().isin(["na", "nan"])
    if not_number.any():
        examples = ", ".join(f"`{v}`" for v in pd.unique(raw[not_number])[:3])
        problems.append(
            Problem(
                file=file,
                column=column,
                rows=_rows(not_number),
                message=f"has non-numeric value(s) {examples}.",
                fix="use plain numbers with a dot as decimal separator; leave the cell "
                "empty when unknown.",
            )
        )
    infinite = np.isinf(numbers.to_numpy(dtype=float, na_value=np.nan))
    if infinite.any():
        problems.append(
            Problem(
                file=file,
                column=column,
                rows=_rows(infinite),
                message="has infinite value(s).",
                fix="replace them with a finite number or leave the cell empty.",
            )
        )
    finite = numbers.where(~infinite)
    if low is not None or high is not None:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        is_fraction = column.startswith(schema.FRACTION_PREFIX)
        below = (finite < low) if low is not None else pd.Series(False, frame.index)
        above = (finite > high) if high is not None else pd.Series(False, frame.index)
        if below.any():
            examples = ", ".join(f"{v:g}" for v in pd.unique(finite[below])[:3])
            what = "negative value(s)" if low == 0 else f"value(s) below {lo}"
            # a negative number is never a percentage: say what usually causes it
            fix = (
                "check the sign, and that unknown values are left empty rather "
                "than coded as -1 or -99"
            )
            if is_fraction:
                fix = (
                    "a fraction of CD45+ cells cannot be negative: "
                    + fix
                    + ", and that the column is not a log-ratio or a score (name "
                    f"such a column {schema.SCORE_PREFIX}<name>); fractions lie in "
                    f"[{lo}, {hi}]."
                )
            else:
                fix += f"; values must lie in [{lo}, {hi}]."
            problems.append(
                Problem(
                    file=file,
                    column=column,
                    rows=_rows(below),
                    message=f"has {what} (out of range): {examples}.",
                    fix=fix,
                )
            )
        if above.any():
            examples = ", ".join(f"{v:g}" for v in pd.unique(finite[above])[:3])
            fix = f"values must lie in [{lo}, {hi}]."
            if is_fraction and finite.min() >= 0 and finite.max() <= 100:
                fix = (
                    "these look like percentages (0-100): divide the column by 100 "
                    "so it holds fractions of CD45+ cells in [0, 1]."
                )
            problems.append(
                Problem(
                    file=file,
                    column=column,
                    rows=_rows(above),
                    message=f"has value(s) out of range: {examples}.",
                    fix=fix,
                )
            )
    return problems, finite


def validate_cohort(
    frame: pd.DataFrame, *, file: str = schema.COHORT_CSV
) -> tuple[list[Problem], pd.DataFrame | None]:
    """Check a cohort table read as strings and return it typed when valid.

    Parameters
    ----------
    frame
        Table as read by :func:`data.tables.read_csv_file` (all strings).
    file
        File name used in messages.

    Returns
    -------
    problems, typed
        Every problem found (errors and warnings) and, when there is no error, the
        typed table: ids and categories as strings, empty RECIST/response as ``NA``,
        numbers as ``float``.
    """
    problems: list[Problem] = []
    if frame.empty:
        return [
            Problem(
                file=file,
                message="the table has a header but no rows.",
                fix="add one row per sample.",
            )
        ], None
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in frame.columns]
    for column in missing:
        problems.append(
            Problem(
                file=file,
                column=column,
                message="required column is missing.",
                fix=f"add a `{column}` column (required: "
                f"{', '.join(schema.REQUIRED_COLUMNS)}), or map your own column name "
                "with `python cli.py import clinical --map`.",
            )
        )
    for column in schema.REQUIRED_FRACTIONS:
        if column not in frame.columns:
            problems.append(
                Problem(
                    file=file,
                    column=column,
                    message="required cell-frequency column is missing.",
                    fix=f"add `{column}` as the fraction of CD45+ immune cells in "
                    "[0, 1] (empty where unknown).",
                )
            )
    if missing:
        return problems, None

    for column in ("sample_id", "patient_id", "cohort", "tumor_type"):
        empty = frame[column] == ""
        if empty.any():
            problems.append(
                Problem(
                    file=file,
                    column=column,
                    rows=_rows(empty),
                    message="has empty cells.",
                    fix=f"every sample needs a `{column}`.",
                )
            )
    dup = frame["sample_id"].duplicated(keep=False) & (frame["sample_id"] != "")
    if dup.any():
        examples = ", ".join(
            f"`{v}`" for v in pd.unique(frame.loc[dup, "sample_id"])[:3]
        )
        problems.append(
            Problem(
                file=file,
                column="sample_id",
                rows=_rows(dup),
                message=f"has duplicated id(s) {examples}; sample ids must be unique.",
                fix="give each sample its own id (e.g. append _pre / _on).",
            )
        )
    problems += _check_vocabulary(
        frame, "timepoint", schema.TIMEPOINTS, file=file, allow_empty=False
    )
    problems += _check_vocabulary(
        frame, "recist", schema.RECIST_VALUES, file=file, allow_empty=True
    )
    problems += _check_vocabulary(
        frame, "treatment", schema.TREATMENTS, file=file, allow_empty=False
    )
    if "response" in frame.columns:
        problems += _check_vocabulary(
            frame, "response", schema.RESPONSE_VALUES, file=file, allow_empty=True
        )

    typed = frame.copy()
    numeric_columns: list[tuple[str, float | None, float | None]] = []
    for column in frame.columns:
        if column.startswith(schema.FRACTION_PREFIX):
            numeric_columns.append((column, 0.0, 1.0))
        elif column.startswith(schema.SCORE_PREFIX):
            numeric_columns.append((column, None, None))
    for column in ("os_months", "pfs_months"):
        if column in frame.columns:
            numeric_columns.append((column, 0.0, None))
    if schema.CIBERSORT_P in frame.columns:
        numeric_columns.append((schema.CIBERSORT_P, 0.0, 1.0))
    for column, low, high in numeric_columns:
        found, values = _check_numeric(frame, column, file=file, low=low, high=high)
        problems += found
        typed[column] = values.astype(float)
    for column in ("os_event", "pfs_event"):
        if column in frame.columns:
            found, values = _check_numeric(frame, column, file=file)
            bad = values.notna() & ~values.isin([0.0, 1.0])
            if bad.any():
                found.append(
                    Problem(
                        file=file,
                        column=column,
                        rows=_rows(bad),
                        message="must be 1 (event: death or progression) or 0 "
                        "(censored).",
                        fix="recode the column as 0/1.",
                    )
                )
            problems += found
            typed[column] = values.astype(float)
    for time_col, event_col in (("os_months", "os_event"), ("pfs_months", "pfs_event")):
        if (time_col in frame.columns) != (event_col in frame.columns):
            have, lack = (
                (time_col, event_col)
                if time_col in frame.columns
                else (event_col, time_col)
            )
            problems.append(
                Problem(
                    file=file,
                    column=lack,
                    message=f"`{have}` is present but `{lack}` is not; survival needs "
                    "both.",
                    fix=f"add `{lack}` or remove `{have}`.",
                    severity="warning",
                )
            )

    fractions = [c for c in frame.columns if c.startswith(schema.FRACTION_PREFIX)]
    if not any(p.severity == "error" for p in problems):
        total = typed[fractions].sum(axis=1, min_count=1)
        over = total > 1.01
        if over.any():
            problems.append(
                Problem(
                    file=file,
                    rows=_rows(over),
                    message=f"the frac_* columns add up to more than 1 "
                    f"(up to {total.max():.3f}).",
                    fix="check that they are disjoint fractions of CD45+ cells.",
                    severity="warning",
                )
            )
        for column in schema.REQUIRED_FRACTIONS:
            empty = typed[column].isna()
            if empty.any():
                problems.append(
                    Problem(
                        file=file,
                        column=column,
                        rows=_rows(empty),
                        message="is empty for some samples; they are left out of NK "
                        "statistics.",
                        severity="warning",
                    )
                )
        problems += _check_patient_consistency(typed, file=file)

    if any(p.severity == "error" for p in problems):
        return problems, None
    for column in ("recist", "response"):
        if column in typed.columns:
            typed[column] = typed[column].replace("", pd.NA)
    return problems, typed.reset_index(drop=True)


def _check_patient_consistency(frame: pd.DataFrame, *, file: str) -> list[Problem]:
    """Patient-level fields must agree across a patient's samples."""
    problems = []
    patient_fields = ["tumor_type", "treatment", "recist"]
    patient_fields += [c for c in schema.OPTIONAL_COLUMNS if c in frame.columns]
    # pandas' built-in distinct count per patient (missing counts as a value); a
    # Python function per patient took 0.8 s for a 10,000-patient cohort
    patient = frame.groupby(list(schema.PATIENT_KEY), sort=False).ngroup()
    for column in patient_fields:
        bad = frame[column].astype(str).groupby(patient).transform("nunique") > 1
        if bad.any():
            first = frame.loc[bad].iloc[0]
            problems.append(
                Problem(
                    file=file,
                    column=column,
                    rows=_rows(bad),
                    message=f"differs between samples of one patient (e.g. patient "
                    f"`{first['patient_id']}` in cohort `{first['cohort']}`); it is a "
                    "property of the patient.",
                    fix="use one value per patient across all of its samples.",
                )
            )
    return problems


# ----------------------------------------------------------------------------- cells


def read_cell_obs(
    path: Path,
) -> tuple[pd.DataFrame, dict[str, tuple[int, ...]], tuple[int, int]]:
    """Read ``obs``, the shapes of ``obsm`` entries and the matrix shape of an h5ad.

    Only the small parts are read (no expression matrix), so this is cheap for a
    million cells. The result is cached per process for the file's current version
    (validation, the cell store and the pages share one read): never modify the
    returned frame in place.
    """
    path = Path(path)
    stat = path.stat()
    return _read_cell_obs(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=2)
def _read_cell_obs(
    path: str, _mtime_ns: int, _size: int
) -> tuple[pd.DataFrame, dict[str, tuple[int, ...]], tuple[int, int]]:
    import anndata
    import h5py

    with h5py.File(path, "r") as handle:
        x = handle["X"]
        if isinstance(x, h5py.Dataset):
            shape = tuple(x.shape)
        else:
            shape = tuple(int(v) for v in x.attrs["shape"])
        # the columns only: decoding the cell names (the index) took ~0.7 s of a
        # 1.2 s read at 10^6 cells, and only a hovered cell's name is ever shown
        # (read_cell_name); the frame gets a RangeIndex (cell number)
        group = handle["obs"]
        order = [str(c) for c in group.attrs.get("column-order", [])]
        obs = pd.DataFrame(
            {c: anndata.io.read_elem(group[c]) for c in order},
            index=pd.RangeIndex(shape[0]),
        )
        obsm = {}
        if "obsm" in handle:
            for key in handle["obsm"]:
                item = handle["obsm"][key]
                item_shape = item.shape if hasattr(item, "shape") else ()
                obsm[key] = tuple(item_shape)
    return obs, obsm, shape


def read_cell_name(path: Path, cell: int) -> str:
    """The name (barcode) of cell number ``cell`` in an h5ad, read from disk alone."""
    import h5py

    with h5py.File(path, "r") as handle:
        group = handle["obs"]
        value = group[group.attrs.get("_index", "_index")][cell]
    return value.decode() if isinstance(value, bytes) else str(value)


def read_cell_names(path: Path, cells: np.ndarray) -> np.ndarray:
    """Names (barcodes) of the cells numbered ``cells`` in an h5ad (exports).

    The whole index is read once and indexed: reading it costs ~0.7 s at 10^6
    cells, paid only when a table of cells is written, never on a page.
    """
    import anndata
    import h5py

    with h5py.File(path, "r") as handle:
        group = handle["obs"]
        names = anndata.io.read_elem(group[group.attrs.get("_index", "_index")])
    return np.asarray(names, dtype=object)[np.asarray(cells, dtype=np.int64)]


def validate_cells(
    path: Path, cohort: pd.DataFrame | None, *, file: str = schema.CELLS_H5AD
) -> tuple[list[Problem], int]:
    """Check a ``cd8_cells.h5ad`` against the bundle rules and its cohort table.

    Returns
    -------
    problems, n_cells
    """
    try:
        obs, obsm, shape = read_cell_obs(path)
    except (OSError, KeyError, ValueError, TypeError) as err:
        return [
            Problem(
                file=file,
                message=f"cannot be read as AnnData ({type(err).__name__}: {err}).",
                fix="write it with anndata (adata.write_h5ad).",
            )
        ], 0
    problems: list[Problem] = []
    for column in schema.CELL_OBS_REQUIRED:
        if column not in obs.columns:
            problems.append(
                Problem(
                    file=file,
                    column=f"obs.{column}",
                    message="required cell annotation is missing.",
                    fix=f"add adata.obs['{column}'] (required: "
                    f"{', '.join(schema.CELL_OBS_REQUIRED)}); "
                    "`python cli.py prepare` computes cd8_state when absent.",
                )
            )
    umap_shape = obsm.get(schema.UMAP_KEY)
    if umap_shape is None:
        problems.append(
            Problem(
                file=file,
                column=f"obsm.{schema.UMAP_KEY}",
                message="has no UMAP embedding.",
                fix="run `python cli.py prepare` on the file to compute it.",
            )
        )
    elif len(umap_shape) != 2 or umap_shape[0] != shape[0] or umap_shape[1] < 2:
        problems.append(
            Problem(
                file=file,
                column=f"obsm.{schema.UMAP_KEY}",
                message=f"has shape {umap_shape}; expected ({shape[0]}, 2).",
                fix="recompute the UMAP with `python cli.py prepare`.",
            )
        )
    if cohort is not None and "sample_id" in obs.columns:
        known = set(cohort["sample_id"])
        cell_samples = obs["sample_id"].astype(str)
        unknown = ~cell_samples.isin(known)
        if unknown.any():
            examples = ", ".join(f"`{v}`" for v in pd.unique(cell_samples[unknown])[:3])
            problems.append(
                Problem(
                    file=file,
                    column="obs.sample_id",
                    rows=tuple(
                        int(i) + 1 for i in np.flatnonzero(unknown.to_numpy())[:50]
                    ),
                    message=f"{int(unknown.sum())} cells have sample id(s) not in "
                    f"cohort.csv: {examples} (rows are cell numbers, 1-based).",
                    fix="add those samples to cohort.csv or fix the ids in the h5ad.",
                )
            )
        elif "patient_id" in obs.columns:
            expected = cohort.set_index("sample_id")["patient_id"]
            mismatch = (
                obs["patient_id"].astype(str).to_numpy()
                != expected.reindex(cell_samples).to_numpy()
            )
            if mismatch.any():
                problems.append(
                    Problem(
                        file=file,
                        column="obs.patient_id",
                        rows=tuple(int(i) + 1 for i in np.flatnonzero(mismatch)[:50]),
                        message=f"{int(mismatch.sum())} cells name a different patient "
                        "than cohort.csv gives for their sample.",
                        fix="make obs.patient_id agree with cohort.csv.",
                    )
                )
    return problems, int(shape[0])


# ---------------------------------------------------------------------------- bundle


def validate_bundle(path: Path | str) -> list[Problem]:
    """Return every problem of a bundle folder (empty list when it is clean).

    Never raises for problems in the data and never writes anything.
    """
    try:
        _, problems = _load(Path(path))
    except DataError as err:
        return list(err.problems)
    return problems


def load_bundle(path: Path | str) -> Bundle:
    """Load a bundle folder, raising :class:`DataError` on any error.

    Parameters
    ----------
    path
        Folder holding ``dataset.json``, ``cohort.csv`` and optionally
        ``cd8_cells.h5ad``.
    """
    bundle, problems = _load(Path(path))
    errors = [p for p in problems if p.severity == "error"]
    if errors or bundle is None:
        raise DataError(errors or problems)
    return bundle


def _load(path: Path) -> tuple[Bundle | None, list[Problem]]:
    if not path.is_dir():
        raise DataError(
            Problem(
                file=str(path.name) or str(path),
                message="no such dataset folder.",
                fix="give the path of a bundle folder or a dataset name.",
            )
        )
    meta = read_meta(path)
    cohort_path = path / schema.COHORT_CSV
    if not cohort_path.is_file():
        raise DataError(
            Problem(
                file=schema.COHORT_CSV,
                message=f"the bundle `{path.name}` has no cohort.csv.",
                fix="add a cohort.csv with one row per sample.",
            )
        )
    problems, cohort = validate_cohort(read_csv_file(cohort_path))
    n_cells = 0
    cells_path = path / schema.CELLS_H5AD
    if cells_path.exists():
        cell_problems, n_cells = validate_cells(cells_path, cohort)
        problems += cell_problems
    if any(p.severity == "error" for p in problems) or cohort is None:
        return None, problems
    return (
        Bundle(
            path=path,
            meta=meta,
            cohort=cohort,
            n_cells=n_cells,
            warnings=tuple(p for p in problems if p.severity == "warning"),
        ),
        problems,
    )
