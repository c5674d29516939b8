"""The results file of a sweep: rows appended as points finish, read back to resume.

CSV is appended to directly, one flush (and fsync) per point. Parquet files cannot be appended
to, so a parquet sweep appends to a CSV journal beside it and writes the parquet file when the
sweep ends. ``NAME.sweep.json`` beside the file records what the sweep was made from, so that
resuming never mixes the rows of two different sweeps.
"""

from __future__ import annotations

import csv
import enum
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..base.errors import OptionError
from .sweep import INT_COLUMNS, TEXT_COLUMNS, PointResult, SweepPlan, SweepRow, format_cell, settings_key

if TYPE_CHECKING:
    import pandas


class ResultFormat(str, enum.Enum):
    """Results file formats, by extension."""

    CSV = ".csv"
    PARQUET = ".parquet"


class ResultStore:
    """The results file of ``plan`` (None: rows kept in memory only); see the module docstring.

    A parquet sweep's journal is ``NAME.parquet.partial.csv``. Opening a file of another
    sweep, or a file no sweep wrote, is a :class:`ConfigError` naming ``--out``.
    """

    def __init__(self, path: Optional[str | Path], plan: SweepPlan) -> None:
        self.plan = plan
        self.columns = plan.columns
        self.path = Path(path) if path is not None else None
        self._rows: list[SweepRow] = []
        self._finished: set[str] = set()
        self._handle = None
        if self.path is None:
            return
        try:
            self.format = ResultFormat(self.path.suffix.lower())
        except ValueError:
            raise OptionError("out", f"{self.path}: use a .csv or .parquet file name") from None
        directory = self.path.parent
        if not directory.is_dir():
            raise OptionError("out", f"{self.path}: directory {directory} does not exist")
        partial = self.path.with_name(self.path.name + ".partial.csv")
        self.journal = self.path if self.format is ResultFormat.CSV else partial
        self.meta = self.path.with_name(self.path.name + ".sweep.json")
        self._load_existing()

    # reading back

    def _load_existing(self) -> None:
        assert self.path is not None
        existing = [p for p in dict.fromkeys((self.path, self.journal)) if p.exists()]   # CSV: one file
        if not existing:
            return
        if not self.meta.exists():
            raise OptionError("out", f"{self.path} exists but was not written by a sweep "
                                            f"({self.meta.name} is missing); remove it or choose another file")
        try:
            recorded = json.loads(self.meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise OptionError("out", f"{self.meta}: cannot be read ({err})") from None
        differs = [k for k, v in self.plan.fingerprint.items() if recorded.get(k) != v]
        if differs:
            raise OptionError("out", f"{self.path} holds a different sweep ({', '.join(differs)} "
                                            "differ); remove it or choose another file")
        axes = [a.column for a in self.plan.axes]
        for path in existing:
            records = self._read_parquet(path) if path.suffix == ".parquet" else self._read_csv(path)
            rows = [SweepRow.from_record(record, axes, self.plan.levels) for record in records]
            complete = self._complete(rows)
            if len(complete) < len(rows) and path == self.journal:
                self._rewrite(complete)   # drop a point cut short, so that it runs again
            for row in complete:
                self._add(row)

    def _key(self, row: SweepRow) -> str:
        return settings_key(row.settings, self.plan.axes)

    def _complete(self, rows: list[SweepRow]) -> list[SweepRow]:
        """Rows of the points written in full: an error row, or a total row per format."""
        totals: dict[str, int] = {}
        failed = set()
        for row in rows:
            key = self._key(row)
            if row.error:
                failed.add(key)
            elif row.layer == "total":
                totals[key] = totals.get(key, 0) + 1
        done = failed | {k for k, n in totals.items() if n >= len(self.plan.formats)}
        return [row for row in rows if self._key(row) in done]

    def _rewrite(self, rows: list[SweepRow]) -> None:
        tmp = self.journal.with_name(f".{self.journal.name}.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows(self._cells(row) for row in rows)
        os.replace(tmp, self.journal)

    def _cells(self, row: SweepRow) -> list[str]:
        record = row.record(self.plan.levels)
        return [format_cell(record.get(c)) for c in self.columns]

    def _read_csv(self, path: Path) -> list[dict[str, Any]]:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != self.columns:
                raise OptionError("out", f"{path}: its columns are not this sweep's; remove it or choose "
                                                "another file")
            # a line cut short by an interrupted write is dropped: its point runs again
            return [self._typed(r) for r in reader if None not in r.values() and None not in r]

    def _read_parquet(self, path: Path) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if table.column_names != self.columns:
            raise OptionError("out", f"{path}: its columns are not this sweep's")
        return table.to_pylist()

    def _typed(self, record: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, text in record.items():
            if name in TEXT_COLUMNS:
                out[name] = text
            elif text == "":
                out[name] = None
            elif name in INT_COLUMNS:
                out[name] = int(text)
            else:
                out[name] = _typed_number(text)
        return out

    def _add(self, row: SweepRow) -> None:
        self._rows.append(row)
        self._finished.add(self._key(row))

    # writing

    def finished(self) -> set[str]:
        """Keys of the points already in the file."""
        return set(self._finished)

    def rows(self) -> list[SweepRow]:
        """Every row, resumed and new (a file resumed with other values may hold points of both)."""
        return list(self._rows)

    def plan_rows(self) -> list[SweepRow]:
        """The rows of this plan's points."""
        keys = {p.key for p in self.plan.points}
        return [r for r in self._rows if self._key(r) in keys]

    def to_dataframe(self) -> pandas.DataFrame:
        """This plan's rows as a pandas table with the results file's columns (one row per point,
        variant and layer; empty cells are None / NaN)."""
        import pandas

        return pandas.DataFrame([row.record(self.plan.levels) for row in self.plan_rows()], columns=self.columns)

    def append(self, result: PointResult) -> None:
        """Record a finished point (and flush it to disk)."""
        for row in result.rows:
            self._add(row)
        if self.path is None:
            return
        try:
            if self._handle is None:
                self.meta.write_text(json.dumps(self.plan.fingerprint, indent=1) + "\n", encoding="utf-8")
                fresh = not self.journal.exists() or self.journal.stat().st_size == 0
                self._handle = self.journal.open("a", newline="", encoding="utf-8")
                self._writer = csv.writer(self._handle)
                if fresh:
                    self._writer.writerow(self.columns)
            self._writer.writerows(self._cells(row) for row in result.rows)
            self._handle.flush()
            os.fsync(self._handle.fileno())   # a finished point survives a crash
        except OSError as err:
            raise OptionError("out", f"{self.journal}: cannot write ({err.strerror or err})") from None

    def close(self) -> None:
        """Finish the file: close the CSV, or write the parquet file from everything recorded."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self.path is None or self.format is not ResultFormat.PARQUET or not self._rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        records = [row.record(self.plan.levels) for row in sorted(self._rows, key=lambda r: r.point)]
        table = pa.Table.from_pylist(records).select(self.columns)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, self.path)
        except OSError as err:
            raise OptionError("out", f"{self.path}: cannot write ({err.strerror or err})") from None
        if self.journal.exists():
            self.journal.unlink()


def _typed_number(text: str) -> Any:
    """A cell as written by :func:`_cell`: an int, a float, or text (a swept string field)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
