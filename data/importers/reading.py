"""Read user tables (CSV, TSV, XLSX) as strings; every failure is a DataError."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd

from data.errors import DataError, Problem
from data.tables import decode_text, read_csv_text

EXCEL_SUFFIXES = (".xlsx", ".xlsm")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls


def read_bytes(path: Path) -> bytes:
    """File content, or a :class:`DataError` naming the file."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(
            Problem(
                file=Path(path).name,
                message="the file does not exist.",
                fix="check the path.",
            )
        ) from None
    except IsADirectoryError:
        raise DataError(
            Problem(
                file=Path(path).name,
                message="this is a folder, not a file.",
                fix="give the path of the table file.",
            )
        ) from None
    except OSError as err:
        raise DataError(
            Problem(file=Path(path).name, message=f"cannot be read ({err.strerror}).")
        ) from None


def excel_sheet_names(raw: bytes) -> list[str]:
    """Names of the sheets of an .xlsx workbook ([] when it cannot be opened)."""
    try:
        return [
            str(n) for n in pd.ExcelFile(io.BytesIO(raw), engine="openpyxl").sheet_names
        ]
    except (ValueError, KeyError, OSError, zipfile.BadZipFile):
        return []


def read_excel_bytes(
    raw: bytes, *, file: str, sheet: str | None = None
) -> pd.DataFrame:
    """One sheet of an .xlsx workbook as strings ('' for empty cells).

    ``sheet`` names the sheet (or its 1-based number); the first one by default.
    The frame's ``attrs`` carry ``sheets`` (all names), ``sheet`` (the one read)
    and ``read_notes`` (said in the import report).
    """
    sheets = excel_sheet_names(raw)
    chosen: str | int = 0
    if sheet:
        if sheet in sheets:
            chosen = sheet
        elif sheet.isdigit() and 1 <= int(sheet) <= len(sheets):
            chosen = sheets[int(sheet) - 1]
        else:
            raise DataError(
                Problem(
                    file=file,
                    message=f"has no sheet `{sheet}`; its sheets are "
                    + ", ".join(f"`{n}`" for n in sheets)
                    + ".",
                    fix="give one of them with --sheet NAME (or its number, 1 = "
                    "first).",
                )
            )
    try:
        frame = pd.read_excel(
            io.BytesIO(raw), sheet_name=chosen, dtype=str, engine="openpyxl"
        )
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as err:
        raise DataError(
            Problem(
                file=file,
                message=f"cannot be read as an Excel workbook ({err}).",
                fix="open it in Excel and save it again as .xlsx, or export the "
                "sheet as CSV.",
            )
        ) from None
    name = chosen if isinstance(chosen, str) else (sheets[0] if sheets else "1")
    header = [str(c).strip() for c in frame.columns]
    unnamed = [i + 1 for i, c in enumerate(header) if c.startswith("Unnamed:")]
    if unnamed:
        raise DataError(
            Problem(
                file=file,
                rows=(1,),
                message=f"column(s) number {', '.join(map(str, unnamed))} of sheet "
                f"`{name}` have no name.",
                fix="the first row of the sheet must hold the column names (or "
                "choose another sheet with --sheet).",
            )
        )
    dupes = sorted({c.rsplit(".", 1)[0] for c in header if _is_pandas_dupe(c, header)})
    if dupes:
        raise DataError(
            Problem(
                file=file,
                column=", ".join(dupes),
                rows=(1,),
                message="the column name appears more than once in the header.",
                fix="rename or remove the duplicate columns.",
            )
        )
    frame.columns = header
    frame = frame.fillna("").apply(lambda col: col.astype(str))
    notes = []
    if len(sheets) > 1:
        notes.append(
            f"read sheet `{name}` of {len(sheets)} ("
            + ", ".join(f"`{n}`" for n in sheets)
            + "); choose another with --sheet."
        )
    return _trimmed(frame, {"sheets": sheets, "sheet": name, "read_notes": notes})


def _is_pandas_dupe(name: str, header: list[str]) -> bool:
    # pandas renames a repeated Excel header `x` to `x.1`
    base, _, suffix = name.rpartition(".")
    return bool(base) and suffix.isdigit() and base in header


def read_table_bytes(
    raw: bytes, *, file: str, sheet: str | None = None
) -> pd.DataFrame:
    """Parse a clinical-style table (CSV, TSV, semicolon CSV or XLSX) as strings.

    The format is taken from the content, not the file name: an Excel workbook is a
    zip file; text is decoded as UTF-8 and its delimiter sniffed from the header.

    Leading comment lines (``#``) and title lines are skipped (see
    :func:`find_header`); ``sheet`` picks an Excel sheet. ``frame.attrs`` carry
    ``read_notes`` for the import report and ``trimmed`` (cells whose surrounding
    spaces were removed, per column).

    Raises
    ------
    DataError
        Empty or binary file, legacy .xls, non-UTF-8 text, bad header, ragged rows,
        a single column when the header suggests another delimiter.
    """
    if raw[:4] == _ZIP_MAGIC or file.lower().endswith(EXCEL_SUFFIXES):
        return read_excel_bytes(raw, file=file, sheet=sheet)
    if raw[:4] == _OLE_MAGIC:
        raise DataError(
            Problem(
                file=file,
                message="this is a legacy Excel .xls workbook.",
                fix="save it as .xlsx or as CSV UTF-8.",
            )
        )
    text = decode_text(raw, file=file)
    skipped, delimiter = find_header(text)
    body = "\n".join(text.splitlines()[skipped:]) if skipped else text
    frame = read_csv_text(body, file=file, delimiter=delimiter, strip=False)
    notes = []
    if skipped:
        notes.append(
            f"header found on line {skipped + 1} of {file} ({skipped} comment/title "
            "line(s) above it skipped); row numbers in messages count the header as "
            "row 1."
        )
    if frame.shape[1] == 1:
        header = body.splitlines()[0]
        for delim, label in (("|", "'|'"), (" ", "spaces")):
            if header.count(delim) >= 2:
                raise DataError(
                    Problem(
                        file=file,
                        column=frame.columns[0][:40],
                        rows=(skipped + 1,),
                        message=f"only one column was found; the header seems to be "
                        f"separated by {label}, which is not a table delimiter here.",
                        fix="save the table as CSV (comma), TSV (tab) or with ';'.",
                    )
                )
    return _trimmed(frame, {"header_line": skipped + 1, "read_notes": notes})


def find_header(text: str, *, probe: int = 200) -> tuple[int, str]:
    """Number of leading comment/title lines and the table delimiter.

    A line starting with ``#`` is a comment. Otherwise the header is the first
    line with at least half as many delimiters as most lines below it (a title line
    such as ``Supplementary Table 3`` has next to none). The delimiter is the one
    (comma, tab, semicolon) that splits most of the probed lines the same way.
    """
    lines = text.splitlines()
    start = 0
    while start < len(lines) and (
        not lines[start].strip() or lines[start].lstrip().startswith("#")
    ):
        start += 1
    sample = [ln for ln in lines[start : start + probe] if ln.strip()]
    best, best_count = ",", 0
    for delim in (",", "\t", ";"):
        counts = pd.Series([ln.count(delim) for ln in sample], dtype=int)
        if counts.empty:
            continue
        mode = int(counts.mode().max())
        if mode > best_count:
            best, best_count = delim, mode
    if best_count == 0:
        return start, best
    for offset, line in enumerate(lines[start : start + probe]):
        # half: quoted cells may hold the delimiter, so rows count more than the
        # header; a title line has next to none
        if line.strip() and line.count(best) * 2 >= best_count:
            return start + offset, best
    return start, best


def _trimmed(frame: pd.DataFrame, attrs: dict) -> pd.DataFrame:
    """Strip every cell, counting trimmed cells per column (said in the notes)."""
    out = frame.apply(lambda col: col.str.strip())
    trimmed = {}
    for column in frame.columns:
        changed = frame[column] != out[column]
        if changed.any():
            trimmed[column] = frame.loc[changed, column].value_counts().to_dict()
    out.attrs.update(attrs, trimmed=trimmed)
    return out


def read_table(path: Path | str, *, sheet: str | None = None) -> pd.DataFrame:
    """Read a table file as strings; see :func:`read_table_bytes`."""
    path = Path(path)
    return read_table_bytes(read_bytes(path), file=path.name, sheet=sheet)
