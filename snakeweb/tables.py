"""One reader for every table a user hands in: species tables, SnakeCLEF metadata, species x country tables,
submissions, ground truth, venomous lists and review exports.

The same table arrives in many shapes: re-saved by Excel (a BOM, `;` as the delimiter, Windows-1252 text,
a space after each comma, `TRUE`/`FALSE`), exported by R or a database (`NA` for missing), typed by hand.
None of that may change an answer, so this module reads every cell as text and never guesses:

- the encoding is UTF-8 (with or without BOM) or UTF-16 with a BOM, else Windows-1252 with a note;
- the delimiter is the one of `,` `;` tab that splits every line alike (or an Excel `sep=;` first line);
- headers are trimmed and matched case-insensitively, with spaces and hyphens as underscores, against each
  column's documented aliases; two headers meaning one column are refused;
- cells are trimmed text: nothing is read as a missing value except where a column is typed, so Namibia's
  ISO code `NA` stays `NA`;
- typed columns (`Table.ids`, `Table.flags`) accept every common spelling and refuse anything else with a
  sentence naming the file, the column, the lines and the accepted values;
- `-` as the path is standard input (`score --predictions -`), read by the same rules and named "standard input".
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError

log = logging.getLogger(__name__)

DELIMITERS = (",", ";", "\t")
# Cells a typed column reads as "no value" (R, pandas, databases and people write missing values these ways).
MISSING_WORDS = frozenset({"", "na", "n/a", "#n/a", "nan", "null", "none", "unknown", "?", "-"})
# Flag spellings: 1/0, true/false (Excel's TRUE/FALSE), yes/no, y/n, venomous/harmless and SnakeCLEF's MIVS
# (medically important venomous species). Anything else is refused, never read as harmless.
TRUE_WORDS = frozenset({"1", "1.0", "true", "t", "yes", "y", "venomous", "mivs"})
FALSE_WORDS = frozenset({"0", "0.0", "false", "f", "no", "n", "harmless", "non venomous", "nonvenomous", "not venomous"})
ACCEPTED_FLAGS = "1/0, true/false, yes/no, y/n, venomous/harmless or MIVS, and empty or unknown for not known"
# any number as people and spreadsheets write one (12, 3.0, 3,5, -1, 1e3): never a taxon name
_NUMBER = r"[+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)(?:[eE][+-]?[0-9]+)?"
# whole numbers as people and spreadsheets write them: 405, 405.0, and 405,0 where the decimal mark is a comma
# a taxon name's first word is a genus or family: Latin letters (a hybrid's '×' may stand before it). Later words are
# left free: epithets with hyphens or quotes, a '(Subgenus)', 'sp.' / 'cf.', an author and year ('Crotalus atrox Baird &
# Girard, 1853') all occur; every name of the real tables (SnakeCLEF, taxonomy, HackerEarth folders) is plain letters.
_TAXON_NAME = re.compile(r"×?\s?[A-Za-z]+(?:[\s_-].*)?", re.S)


def _is_number(text: str) -> bool:
    """A number as a table writes one ('3,0' too) or as Python's float() reads one ('nan', 'inf', '1_000', '١٢')."""
    if re.fullmatch(_NUMBER, text):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_taxon_name(text: str) -> bool:
    """True for a cell that can be a taxon name: its first word Latin letters, and no number Python's float() reads
    ('NaN' and 'Infinity' are letters, and no genus)."""
    return bool(_TAXON_NAME.fullmatch(text.strip())) and not _is_number(text.strip())


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+(?:[.,]0*)?")  # ASCII digits: Python's \d took "١٢" as 12
MAX_EXAMPLES = 3


STDIN = "-"  # the path that means standard input, as `export --out -` means standard output
STDIN_NAME = Path("(standard input)")  # how messages name it (a Path, as Table.path and every message take one)


class TableError(SnakewebError):
    """A table that cannot be read as what it should be; the message names the file and what to fix."""


def header_key(name: str) -> str:
    """How headers and aliases are compared: '  Class ID ' and 'ClassId' -> 'class_id', 'Venomous (Y/N)' and
    'Venomous?' -> 'venomous'. Case, spaces, hyphens, punctuation and a trailing parenthetical do not count."""
    text = str(name).replace("\ufeff", "").strip()
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)  # camelCase: ObservationId -> Observation_Id
    text = re.sub(r"\s*\([^()]*\)\s*$", "", text.lower())
    return re.sub(r"\W+", "_", text).strip("_")


@dataclass(frozen=True)
class Column:
    """A column a reader knows: its canonical name, the other headers that mean it, whether it must be there."""

    name: str
    aliases: tuple[str, ...] = ()
    required: bool = False

    def keys(self) -> set[str]:
        return {header_key(self.name), *(header_key(a) for a in self.aliases)}

    def spelled(self) -> str:
        return self.name + (f" (or {', '.join(self.aliases)})" if self.aliases else "")


@dataclass
class Table:
    """A table read as text: `frame` has the known columns under their canonical names (others under their
    normalised header), every cell a trimmed string; `lines[i]` is the file line of row i (header = line 1)."""

    path: Path
    what: str
    frame: pd.DataFrame
    lines: np.ndarray
    error: type[SnakewebError] = TableError
    notes: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # column name in `frame` -> the header as the file wrote it
    unit: str = "line"  # what `lines` count: file lines of a text table, rows of a Parquet file

    def __len__(self) -> int:
        return len(self.frame)

    def has(self, column: str) -> bool:
        return column in self.frame.columns

    def where(self, mask: np.ndarray | pd.Series, column: str) -> str:
        """'line 4: '405.5', line 9: 'abc'' for the first rows where `mask` holds, and how many there are."""
        rows = np.flatnonzero(np.asarray(mask, dtype=bool))
        shown = ", ".join(f"{self.unit} {self.lines[r]}: {self.frame[column].iloc[r]!r}" for r in rows[:MAX_EXAMPLES])
        return shown + (f" and {len(rows) - MAX_EXAMPLES} more" if len(rows) > MAX_EXAMPLES else "")

    def fail(self, message: str) -> SnakewebError:
        return self.error(f"The {self.what} {self.path}: {message}")

    def missing(self, column: str) -> pd.Series:
        """True where a typed column has no value (empty, NA, null, unknown, ...)."""
        return self.frame[column].str.lower().isin(MISSING_WORDS)

    def ids(self, column: str, missing_ok: bool = False, what: str = "class ids", negative_ok: bool = False) -> pd.Series:
        """Whole numbers (`405`, or `405.0` / `405,0` as spreadsheets write them) as nullable Int64; any other
        value is refused, and so is a missing one unless `missing_ok`, and a negative one unless `negative_ok`
        (-1 is a common "no label" marker: an empty cell says that without being mistaken for a class)."""
        values, missing = self.frame[column], self.missing(column)
        bad = ~missing & ~values.str.fullmatch(_WHOLE_NUMBER)
        if bad.any():
            raise self.fail(f"{int(bad.sum())} value(s) in column {column} are not whole numbers ({self.where(bad, column)}); "
                            f"{what} are whole numbers such as 405.")
        if missing.any() and not missing_ok:
            raise self.fail(f"{int(missing.sum())} row(s) have no {column} ({self.where(missing, column)}); fill them in or remove those rows.")
        numbers = values.where(~missing).str.replace(r"[.,]0*$", "", regex=True)
        huge = numbers.str.lstrip("+-").str.lstrip("0").str.len().fillna(0).to_numpy() > 18  # 18 digits always fit int64 (BIGINT in the store)
        if huge.any():
            raise self.fail(f"{int(huge.sum())} value(s) in column {column} have too many digits to be {what} ({self.where(huge, column)}); "
                            f"{what} are whole numbers such as 405.")
        result = pd.Series(pd.array([None if pd.isna(v) else int(v) for v in numbers], dtype="Int64"), index=self.frame.index)
        negative = (result < 0).fillna(False).to_numpy(bool)
        if negative.any() and not negative_ok:
            raise self.fail(f"{int(negative.sum())} value(s) in column {column} are negative ({self.where(negative, column)}); "
                            f"{what} are 0 or above" + (" (leave the cell empty for a photo without a label)." if missing_ok else "."))
        return result

    def identifiers(self, column: str) -> pd.Series:
        """Trimmed identifiers (observation ids) compared as text, except that a whole number a spreadsheet
        wrote as a float ('101.0') is the same id as '101'."""
        return self.frame[column].str.replace(r"^([+-]?\d+)\.0+$", r"\1", regex=True)

    def flags(self, column: str, missing_ok: bool = True, true_words: frozenset[str] = TRUE_WORDS,
              false_words: frozenset[str] = FALSE_WORDS, accepted: str = ACCEPTED_FLAGS) -> pd.Series:
        """True / False / None (not known) from every common spelling; anything else is refused."""
        lowered = self.frame[column].str.lower().str.replace(r"[\s_\-]+", " ", regex=True).str.strip()  # 'Non-venomous' = 'non venomous'
        missing = lowered.isin(MISSING_WORDS)
        yes, no = lowered.isin(true_words), lowered.isin(false_words)
        bad = ~(yes | no | missing)
        if bad.any():
            raise self.fail(f"{int(bad.sum())} value(s) in column {column} are not a flag snakeweb can read "
                            f"({self.where(bad, column)}); use {accepted}.")
        if missing.any() and not missing_ok:
            raise self.fail(f"{int(missing.sum())} row(s) have no value in column {column} ({self.where(missing, column)}); "
                            "use 1 or 0 in every row.")
        return pd.Series(np.where(yes, True, np.where(no, False, None)), index=self.frame.index, dtype=object)

    def taxon_names(self, column: str, ids_column: str | None = "class_id") -> pd.Series:
        """Trimmed names as `text`, refusing cells that are no taxon name (`is_taxon_name`): numbers (`12`, `3.0`,
        and what Python's float() reads: `NaN`, `inf`, `1_000`, `١٢`), which became species called 'Nan' or '12' or
        were taken for class ids, and names whose first word is not Latin letters (`12 13`, `0x1F`, `1/2`). The
        sentence names the rows and, with `ids_column`, the column where class ids belong."""
        values = self.text(column)
        named = values.notna()
        numbers = named & values.fillna("").map(_is_number)
        instead = (f"; if they are class ids, give them in the {ids_column} column instead" if ids_column
                   else "; give each row the taxon's name")
        if numbers.any():
            raise self.fail(f"its {self.headers.get(column, column)!r} column holds {int(numbers.sum())} number(s) where a "
                            f"taxon name belongs ({self.where(numbers.to_numpy(), column)}): a binomial is 'Genus species', "
                            f"e.g. 'Vipera berus'{instead}.")
        odd = named & ~values.fillna("").map(is_taxon_name)
        if odd.any():
            raise self.fail(f"its {self.headers.get(column, column)!r} column holds {int(odd.sum())} value(s) that are not taxon "
                            f"names ({self.where(odd.to_numpy(), column)}): a taxon name starts with a genus (or family) in "
                            f"Latin letters, as in 'Vipera berus'{instead}.")
        return values

    def text(self, column: str) -> pd.Series:
        """Trimmed strings, None where empty. Nothing else counts as missing: 'NA' is Namibia."""
        values = self.frame[column]
        return values.where(values != "", None).astype(object)


def read_table(path: str | Path, what: str, columns: Sequence[Column] = (),
               error: type[SnakewebError] = TableError) -> Table:
    """Read a delimited text table (see the module docstring for what is accepted).

    `what` names the table in messages ("species table"). Raises `error` (a SnakewebError) with one sentence
    when the file is missing, empty, binary, not decodable, ragged, or lacks a required column.
    """
    if str(path) == STDIN:
        path, raw = STDIN_NAME, _read_stdin(what, error)
    else:
        path = Path(path)
        try:
            with path.open("rb") as handle:
                raw = _read_text_bytes(handle, path, what, error, limit=None)
        except OSError as exc:
            raise error(f"Cannot read the {what} {path}: {exc.strerror or exc}.") from exc
    text, note = _decode(raw, path, what, error)
    if text.lstrip("\ufeff \t\r\n").startswith(("{", "[")):
        raise error(f"The {what} {path} is JSON lines (what `export --answers` writes), not a CSV table; give the CSV "
                    "submission (`export` without --answers) or the CSV file the command asks for.")
    rows, lines = _rows(text, path, what, error)
    headers = [header_key(h) for h in rows[0]]
    width = len(headers)
    data, data_lines = [], []
    for row, line in zip(rows[1:], lines[1:]):
        if len(row) > width and not any(cell.strip() for cell in row[width:]):
            row = row[:width]  # trailing empty cells (a spreadsheet's extra delimiters)
        if len(row) != width:
            # a short row would read its missing cells as empty ("unknown"), a long one would shift them
            raise error(f"The {what} {path} has {len(row)} cells on line {line} but {width} headers; "
                        "check the delimiter and quoting of that line.")
        data.append([cell.strip() for cell in row] + [""] * (width - len(row)))
        data_lines.append(line)
    named = [h or f"column_{i + 1}" for i, h in enumerate(headers)]
    frame = pd.DataFrame(data, columns=named, dtype=object) if data else pd.DataFrame(columns=named, dtype=object)
    table = Table(path=path, what=what, frame=frame.astype(object), lines=np.asarray(data_lines, dtype=np.int64), error=error)
    if note:
        table.notes.append(note)
        log.warning("%s", note)
    table.frame = _canonical_columns(table, rows[0], columns)
    table.headers = {name: raw.strip() for name, raw in zip(table.frame.columns, rows[0])}
    return table


SNIFF_BYTES = 64 * 1024  # what is read before a table is refused as binary or compressed
GZIP_MAGIC = b"\x1f\x8b"
STDIN_LIMIT = 2 << 30  # 2 GiB: a SnakeCLEF submission is ~10 MB


def _read_stdin(what: str, error: type[SnakewebError]) -> bytes:
    """Standard input's bytes, refused when nothing is piped in: a terminal would wait, silently, for a table typed
    by hand."""
    stream = sys.stdin
    if stream is None or stream.isatty():
        raise error(f"The {what} is to be read from standard input (-), but nothing is piped in: pipe it "
                    "(`... | python -m pipelines ...` or `< file.csv`), or give the file's path.")
    try:
        if not hasattr(stream, "buffer"):  # an in-process caller's text stream
            return stream.read(STDIN_LIMIT + 1).encode("utf-8")[:STDIN_LIMIT + 1]
        return _read_text_bytes(stream.buffer, Path(STDIN_NAME), what, error, limit=STDIN_LIMIT)
    except OSError as exc:
        raise error(f"Cannot read the {what} from standard input: {exc.strerror or exc}.") from exc


def _read_text_bytes(handle: BinaryIO, path: Path, what: str, error: type[SnakewebError], limit: int | None) -> bytes:
    """A table's bytes, refused from its first block when they are gzip-compressed or binary (a 300 MB photo is not
    read whole first), and past `limit` bytes (standard input: `< /dev/zero` would never end)."""
    first = handle.read(SNIFF_BYTES)
    if first.startswith(GZIP_MAGIC):
        raise error(f"The {what} {path} is gzip-compressed; decompress it first (`gunzip FILE.gz`, or pipe "
                    "`gzip -dc FILE.gz |`) and give the CSV.")
    if b"\x00" in first and not first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise error(f"The {what} {path} is not a text table (it holds binary data); save it as CSV.")
    rest = handle.read() if limit is None else handle.read(limit + 1 - len(first))
    raw = first + rest
    if limit is not None and len(raw) > limit:
        raise error(f"The {what} on {path} is larger than {limit >> 20} MiB, more than any table snakeweb reads from a "
                    "pipe; save it to a file and give its path.")
    return raw


def header_names(path: str | Path, what: str, headers: Sequence[str], columns: Sequence[Column],
                 error: type[SnakewebError] = TableError) -> dict[str, str]:
    """For a table another reader opens (a Parquet file's column names): canonical column name -> the header as
    given, matched exactly as `read_table` matches a text table's headers (case, spaces, aliases). Raises `error`
    naming the file and its columns when a required column is missing or two headers mean one column."""
    keys = [header_key(h) for h in headers]
    table = Table(path=Path(path), what=what, frame=pd.DataFrame(columns=keys, dtype=object), lines=np.zeros(0, np.int64), error=error)
    return dict(zip(_canonical_columns(table, list(headers), columns).columns, headers))


def _decode(raw: bytes, path: Path, what: str, error: type[SnakewebError]) -> tuple[str, str | None]:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), None  # Excel's "Unicode text"
        except UnicodeDecodeError as exc:  # a UTF-16 mark, then bytes that are not UTF-16 (cut short, or not text)
            raise error(f"The {what} {path} starts as UTF-16 text but is not ({exc.reason} at byte {exc.start}); "
                        "save it again as CSV (UTF-8).") from exc
    if not raw.strip():
        raise error(f"The {what} {path} is empty.")
    if b"\x00" in raw:
        raise error(f"The {what} {path} is not a text table (it holds binary data); save it as CSV.")
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise error(f"The {what} {path} is neither UTF-8 nor Windows-1252 text; save it as CSV UTF-8.") from exc
    return text, (f"The {what} {path} is not UTF-8; it was read as Windows-1252 (Excel's default). "
                  "If names look wrong, save it as CSV UTF-8.")


def _rows(text: str, path: Path, what: str, error: type[SnakewebError]) -> tuple[list[list[str]], list[int]]:
    """Non-blank rows (header first) and the file line each starts on."""
    body = text.splitlines(keepends=True)
    start = 0
    while start < len(body) and not body[start].strip():
        start += 1
    hint = re.fullmatch(r"\s*sep=(.)\s*", body[start]) if start < len(body) else None
    if hint:  # Excel's first-line delimiter hint
        delimiter, start = hint.group(1), start + 1
    else:
        delimiter = _delimiter([line.rstrip("\r\n") for line in body[start:start + 50]])
    # read as a stream (newline=""), so a quoted cell that spans lines keeps its line break
    reader = csv.reader(io.StringIO("".join(body[start:]), newline=""), delimiter=delimiter)
    rows, lines = [], []
    consumed = 0
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(start + consumed + 1)
            consumed = reader.line_num
    except csv.Error as exc:
        raise error(f"The {what} {path} cannot be read as a table near line {start + reader.line_num}: {exc}.") from exc
    if not rows:
        raise error(f"The {what} {path} is empty.")
    return rows, lines


def _delimiter(sample: list[str]) -> str:
    """The delimiter that splits the first lines into the same number (> 1) of cells, most cells first."""
    sample = [line for line in sample if line.strip()]
    best, best_score = ",", (False, False, 0.0, 0)
    for delimiter in DELIMITERS:
        counts = [len(row) for row in csv.reader(sample, delimiter=delimiter)]
        if not counts:
            continue
        same = sum(c == counts[0] for c in counts) / len(counts)
        score = (counts[0] > 1 and same == 1.0, counts[0] > 1, same, counts[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _canonical_columns(table: Table, raw_headers: list[str], columns: Sequence[Column]) -> pd.DataFrame:
    frame = table.frame
    renames: dict[str, str] = {}
    for column in columns:
        found = [h for h in frame.columns if h in column.keys()]
        if len(found) > 1:
            raise table.fail(f"columns {', '.join(found)} all mean {column.name}; keep one of them.")
        if found:
            renames[found[0]] = column.name
        elif column.required:
            shown = [h.strip() for h in raw_headers]
            raise table.fail(f"it has no {column.spelled()} column; its columns are {shown}.")
    if len(set(frame.columns)) != len(frame.columns):
        twice = sorted({h for h in frame.columns if list(frame.columns).count(h) > 1})
        raise table.fail(f"the header names {', '.join(twice)} more than once; give each column one name.")
    return frame.rename(columns=renames)


def folder_class_id(name: str, key: str) -> int | None:
    """The class id a folder named by a number gives (`405`, `0405`, `405.0` as spreadsheets write it), else None
    (`key`: its name as compared, snakeweb.species.taxon_key). A number that cannot be a class id (`405.5`, more than
    18 digits) raises SnakewebError."""
    if not re.fullmatch(r"[0-9]+(?:[.,][0-9]*)?", key):  # ASCII digits only: Python's isdigit took "١٢" as 12
        return None
    whole, _, fraction = key.replace(",", ".").partition(".")
    if fraction.strip("0") or len(whole.lstrip("0")) > 18:  # 18 digits always fit int64 (BIGINT in the store)
        raise SnakewebError(f"Folder {name} is named by a number that is not a class id (a whole number of up to 18 "
                            "digits); rename it to a class id or a species name.")
    return int(whole)
