"""The results file of a sweep: rows appended as points finish, read back to resume.

CSV is appended to directly, one flush (and fsync) per point. Parquet files cannot be appended
to, so a parquet sweep appends to a CSV journal beside it and writes the parquet file when the
sweep ends. ``NAME.sweep.json`` beside the file records what the sweep was made from, so that
resuming never mixes the rows of two different sweeps.

Safety: a sweep holds an exclusive lock on ``NAME.lock`` while its store is open, so a second
sweep on the same file is refused rather than duplicating every row (the operating system drops
the lock when the process dies, however it dies). Resuming checks every line: a cell that is not what its
column holds, or a line of the wrong length, is refused with its line number; only a last line
cut short by a crash (no final line break) is dropped, and its point runs again.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TextIO

from ..base.errors import OptionError, clip, quote
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
        self._handle: Optional[TextIO] = None
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
        self._lock = _lock(self.path)
        try:
            self._load_existing()
        except BaseException:
            self._unlock()
            raise

    def _unlock(self) -> None:
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.close()      # closing the file releases the lock

    def __del__(self) -> None:
        self._unlock()

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
            raise OptionError("out", f"{self.meta}: cannot be read ({clip(str(err), 120)})") from None
        if not isinstance(recorded, dict):
            raise OptionError("out", f"{self.meta}: not a sweep's record (expected a JSON object)")
        differs = [k for k, v in self.plan.fingerprint.items() if recorded.get(k) != v]
        if differs:
            raise OptionError("out", f"{self.path} holds a different sweep ({', '.join(differs)} "
                                            "differ); remove it or choose another file")
        axes = [a.column for a in self.plan.axes]
        for path in existing:
            torn = False
            if path.suffix == ".parquet":
                records = self._read_parquet(path)
            else:
                records, torn = self._read_csv(path)
            rows = [SweepRow.from_record(record, axes, self.plan.levels) for record in records]
            complete = self._complete(rows)
            if (torn or len(complete) < len(rows)) and path == self.journal:
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

    def _read_csv(self, path: Path) -> tuple[list[dict[str, Any]], bool]:
        """The typed records of a CSV results file, and whether its last line was torn."""
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise OptionError("out", f"{path}: cannot be read ({err.strerror or err})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            raise OptionError("out", f"{path}: line {line}: not UTF-8 text; the file is damaged, "
                                            "remove it or choose another file") from None
        # a crash can cut the last line short: drop it (its point runs again) and no other
        torn = bool(text) and not text.endswith("\n")
        if torn:
            text = text[: text.rfind("\n") + 1]
        if not text:
            return [], torn
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
            if header != self.columns:
                raise OptionError("out", f"{path}: its columns are not this sweep's; remove it or choose "
                                                "another file")
            return [self._typed(dict(zip(header, cells)), path, reader.line_num)
                    for cells in reader if self._whole(cells, path, reader.line_num)], torn
        except csv.Error as err:
            raise OptionError("out", f"{path}: line {reader.line_num}: {err}; the file is damaged, "
                                            "remove it or choose another file") from None

    def _whole(self, cells: list[str], path: Path, line: int) -> bool:
        if len(cells) != len(self.columns):
            raise OptionError("out", f"{path}: line {line}: {len(cells)} cells, not {len(self.columns)}; "
                                            "the file is damaged, remove it or choose another file")
        return True

    def _read_parquet(self, path: Path) -> list[dict[str, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as err:
            raise OptionError("out", f"{path}: not a readable parquet file ({clip(str(err), 120)}); "
                                            "remove it or choose another file") from None
        if table.column_names != self.columns:
            raise OptionError("out", f"{path}: its columns are not this sweep's")
        records = table.to_pylist()
        for index, record in enumerate(records):
            self._check_types(record, path, f"row {index + 1}")
        return records

    def _check_types(self, record: dict[str, Any], path: Path, where: str) -> None:
        """Refuse a parquet row whose cells are not of their columns' kinds."""
        axes = {a.column for a in self.plan.axes}
        for name, value in record.items():
            if value is None or name in axes:
                continue
            kind = str if name in TEXT_COLUMNS else int if name in INT_COLUMNS else (int, float)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise OptionError("out", f"{path}: {where}: column {name} holds {quote(value)}, "
                                                f"not {_KIND_NAMES[name in TEXT_COLUMNS, name in INT_COLUMNS]}")

    def _typed(self, record: dict[str, str], path: Path, line: int) -> dict[str, Any]:
        """A CSV line's cells typed by column; a cell that is not what its column holds is refused."""
        axes = {a.column for a in self.plan.axes}
        out: dict[str, Any] = {}
        for name, text in record.items():
            if name in TEXT_COLUMNS:
                out[name] = text
            elif text == "":
                out[name] = None
            elif name in axes:
                out[name] = _typed_number(text)     # a swept field may hold text ('16 KiB')
            else:
                try:
                    out[name] = int(text) if name in INT_COLUMNS else float(text)
                except ValueError:
                    kind = _KIND_NAMES[False, name in INT_COLUMNS]
                    raise OptionError("out", f"{path}: line {line}: column {name} holds {quote(text)}, "
                                                    f"not {kind}; the file is damaged, remove it or choose "
                                                    "another file") from None
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
        """Finish the file: close the CSV, or write the parquet file from everything recorded;
        then release the lock."""
        try:
            self._finish()
        finally:
            self._unlock()

    def _finish(self) -> None:
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


_KIND_NAMES = {(True, False): "text", (False, True): "an integer", (False, False): "a number"}


def _lock(path: Path) -> Any:
    """An exclusive lock on ``NAME.lock`` beside the results file, or a :class:`ConfigError`
    naming the process that holds it. The open lock file is the handle: closing it unlocks."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        handle = lock_path.open("a+", encoding="utf-8")
    except OSError as err:
        raise OptionError("out", f"{lock_path}: cannot be created ({err.strerror or err})") from None
    try:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:   # pragma: no cover - Windows locks with msvcrt
            import msvcrt

            handle.seek(0)

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        handle.seek(0)
        holder = handle.read(32).strip()
        handle.close()
        by = f" (process {holder})" if holder.isdigit() else ""
        raise OptionError("out", f"{path} is being written by another sweep{by}; wait for it to "
                                        "finish or choose another file") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _typed_number(text: str) -> Any:
    """A cell as written by :func:`_cell`: an int, a float, or text (a swept string field)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
