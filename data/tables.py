"""Reading text tables defensively: every failure becomes a :class:`DataError`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from data.errors import DataError, Problem

_SAVE_AS_UTF8 = (
    "save the file as UTF-8 text (in Excel: File > Save As > 'CSV UTF-8'; "
    "in R: write.csv(..., fileEncoding = 'UTF-8'))."
)


def decode_text(raw: bytes, *, file: str) -> str:
    """Decode bytes as UTF-8 text or raise a :class:`DataError` naming the line.

    Parameters
    ----------
    raw
        File content.
    file
        Name used in messages.
    """
    if not raw.strip():
        raise DataError(
            Problem(
                file=file, message="the file is empty.", fix="export the table again."
            )
        )
    if b"\x00" in raw[:65536]:
        raise DataError(
            Problem(
                file=file,
                message="this is not a text table (it contains binary data).",
                fix="export the table as CSV or TSV text.",
            )
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            Problem(
                file=file,
                rows=(line,),
                message=f"the file is not UTF-8 text (byte 0x{raw[err.start]:02x}).",
                fix=_SAVE_AS_UTF8,
            )
        ) from None


def sniff_delimiter(text: str) -> str:
    """Return the delimiter of a CSV/TSV text from its header line."""
    header = text.splitlines()[0] if text else ""
    counts = {d: header.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def read_csv_text(
    text: str, *, file: str, delimiter: str | None = None, strip: bool = True
) -> pd.DataFrame:
    """Parse a delimited text table as strings, checking its header.

    All cells are read as ``str`` (empty cells stay ``""``) so validation sees exactly
    what the user wrote; typing happens after validation.

    Raises
    ------
    DataError
        Empty header, blank or duplicated column names, ragged rows.
    """
    delimiter = delimiter or sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as err:
        raise DataError(
            Problem(file=file, message=f"cannot read the header line ({err}).")
        ) from None
    header = [h.strip() for h in header]
    if not any(header):
        # pandas would skip the blank line and take the next one as the header
        raise DataError(
            Problem(
                file=file,
                rows=(1,),
                message="the first line, which must hold the column names, is empty.",
                fix="put the column names (sample_id, patient_id, ...) on the first "
                "line.",
            )
        )
    problems: list[Problem] = []
    blank = [i + 1 for i, h in enumerate(header) if not h]
    if blank and len(header) > 1:
        problems.append(
            Problem(
                file=file,
                rows=(1,),
                message=f"column(s) number {', '.join(map(str, blank))} have no name.",
                fix="give every column a name in the header line.",
            )
        )
    seen: dict[str, int] = {}
    for name in header:
        seen[name] = seen.get(name, 0) + 1
    for name, count in seen.items():
        if name and count > 1:
            problems.append(
                Problem(
                    file=file,
                    column=name,
                    rows=(1,),
                    message=f"the column name appears {count} times in the header.",
                    fix="rename or remove the duplicate columns.",
                )
            )
    if problems:
        raise DataError(problems)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=True,
        )
    except (pd.errors.ParserError, csv.Error, ValueError) as err:
        raise DataError(
            Problem(
                file=file,
                message=f"the rows do not line up with the header ({err}).",
                fix=f"check that every row has {len(header)} fields separated by "
                f"{delimiter!r} and that quotes are closed.",
            )
        ) from None
    frame.columns = header
    # strip=False lets an importer count the cells it trims (its notes say so)
    return frame.apply(lambda col: col.str.strip()) if strip else frame


def read_csv_file(path: Path, *, delimiter: str | None = None) -> pd.DataFrame:
    """Read a delimited text file as strings; see :func:`read_csv_text`."""
    file = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            Problem(
                file=file, message="the file does not exist.", fix="check the path."
            )
        ) from None
    except OSError as err:
        raise DataError(
            Problem(file=file, message=f"the file cannot be read ({err.strerror}).")
        ) from None
    return read_csv_text(decode_text(raw, file=file), file=file, delimiter=delimiter)
