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


def read_excel_bytes(raw: bytes, *, file: str) -> pd.DataFrame:
    """First sheet of an .xlsx workbook as strings ('' for empty cells)."""
    try:
        frame = pd.read_excel(
            io.BytesIO(raw), sheet_name=0, dtype=str, engine="openpyxl"
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
    header = [str(c).strip() for c in frame.columns]
    unnamed = [i + 1 for i, c in enumerate(header) if c.startswith("Unnamed:")]
    if unnamed:
        raise DataError(
            Problem(
                file=file,
                rows=(1,),
                message=f"column(s) number {', '.join(map(str, unnamed))} of the first "
                "sheet have no name.",
                fix="the first row of the first sheet must hold the column names.",
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
    return frame.fillna("").apply(lambda col: col.astype(str).str.strip())


def _is_pandas_dupe(name: str, header: list[str]) -> bool:
    # pandas renames a repeated Excel header `x` to `x.1`
    base, _, suffix = name.rpartition(".")
    return bool(base) and suffix.isdigit() and base in header


def read_table_bytes(raw: bytes, *, file: str) -> pd.DataFrame:
    """Parse a clinical-style table (CSV, TSV, semicolon CSV or XLSX) as strings.

    The format is taken from the content, not the file name: an Excel workbook is a
    zip file; text is decoded as UTF-8 and its delimiter sniffed from the header.

    Raises
    ------
    DataError
        Empty or binary file, legacy .xls, non-UTF-8 text, bad header, ragged rows,
        a single column when the header suggests another delimiter.
    """
    if raw[:4] == _ZIP_MAGIC or file.lower().endswith(EXCEL_SUFFIXES):
        return read_excel_bytes(raw, file=file)
    if raw[:4] == _OLE_MAGIC:
        raise DataError(
            Problem(
                file=file,
                message="this is a legacy Excel .xls workbook.",
                fix="save it as .xlsx or as CSV UTF-8.",
            )
        )
    text = decode_text(raw, file=file)
    frame = read_csv_text(text, file=file)
    if frame.shape[1] == 1:
        header = text.splitlines()[0]
        for delimiter, label in (("|", "'|'"), (" ", "spaces")):
            if header.count(delimiter) >= 2:
                raise DataError(
                    Problem(
                        file=file,
                        column=frame.columns[0][:40],
                        rows=(1,),
                        message=f"only one column was found; the header seems to be "
                        f"separated by {label}, which is not a table delimiter here.",
                        fix="save the table as CSV (comma), TSV (tab) or with ';'.",
                    )
                )
    return frame


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a table file as strings; see :func:`read_table_bytes`."""
    path = Path(path)
    return read_table_bytes(read_bytes(path), file=path.name)
