"""The one table renderer of lightnets: rows as an aligned terminal table, Markdown, CSV or JSON.

The profiler's breakdowns, the eval harness's rows and the docs' generated tables are all drawn here, so a
table reads the same wherever it comes from: names left-aligned, numbers right-aligned, a total row set off
(a rule in the terminal, bold in Markdown), notes under the table. CSV and JSON hold the raw values, so
they parse back to the rows.

>>> rows = [{"type": "conv 3x3", "macs": 1_500_000}, {"type": "fully connected", "macs": 20_000}]
>>> columns = [Column("type", "layer type", left=True), Column("macs", "MMACs", lambda v: f"{v / 1e6:.2f}")]
>>> print(render_rows(rows, columns, "table", total={"type": "total", "macs": 1_520_000}))
layer type       MMACs
---------------  -----
conv 3x3          1.50
fully connected   0.02
---------------  -----
total             1.52
>>> print(render_rows(rows, columns, "csv"))
type,macs
conv 3x3,1500000
fully connected,20000
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

__all__ = ["FORMATS", "Column", "render_rows", "markdown_table", "check_format"]

FORMATS = ("table", "md", "csv", "json")
MISSING = "-"  # what a table or Markdown cell shows for a value that is None


@dataclass(frozen=True)
class Column:
    """One column: the row key it shows, its header, how a value reads in a table or Markdown, its alignment.

    >>> Column("params", "params (M)", lambda v: f"{v / 1e6:.3f}").show(4_231_976)
    '4.232'
    """

    key: str
    header: str
    show: Callable[[Any], str] = str
    left: bool = False  # names and labels read left-aligned, numbers right-aligned


def check_format(fmt: str) -> str:
    """``fmt`` if it is one of :data:`FORMATS`; a ValueError naming them otherwise.

    >>> check_format("md")
    'md'
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def markdown_table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: ``align`` holds each column's delimiter cell (``:---``, ``---:``, ``---``).

    >>> markdown_table(["model", "top-1 %"], [":---", "---:"], [["a", "90.00"]])
    ['| model | top-1 % |', '|:---|---:|', '| a | 90.00 |']
    """
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def _csv(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, list(keys), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")


def _cell(column: Column, row: dict[str, Any]) -> str:
    value = row.get(column.key)
    return MISSING if value is None else column.show(value)


def render_rows(rows: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: str = "table", *,
                total: Optional[dict[str, Any]] = None, notes: Sequence[str] = (), document: Any = None,
                csv_keys: Optional[Sequence[str]] = None) -> str:
    """``rows`` as a terminal table, Markdown, CSV or JSON.

    Table and Markdown show ``columns``, then the ``total`` row (set off by a rule, or in bold), then the
    ``notes`` after a blank line (in Markdown each as ``<sub>note</sub>``). CSV holds the raw values of
    ``csv_keys`` (default: the columns' keys); JSON is ``document`` when given, else the rows restricted to
    the columns' keys. Neither shows the total or the notes, so both parse back to the rows.
    """
    check_format(fmt)
    keys = [column.key for column in columns]
    if fmt == "json":
        return json.dumps(
            document if document is not None else [{key: row[key] for key in keys} for row in rows], indent=2
        )
    if fmt == "csv":
        return _csv(rows, csv_keys if csv_keys is not None else keys)
    headers = [column.header for column in columns]
    cells = [[_cell(column, row) for column in columns] for row in [*rows, *([total] if total else [])]]
    if fmt == "md":
        if total:
            cells[-1] = [f"**{cell}**" for cell in cells[-1]]
        lines = markdown_table(headers, [":---" if column.left else "---:" for column in columns], cells)
        return "\n".join(lines + ([""] + [f"<sub>{note}</sub>  " for note in notes] if notes else []))
    widths = [max(len(text) for text in column) for column in zip(headers, *cells)]

    def line(texts: Sequence[str]) -> str:
        return "  ".join(t.ljust(w) if c.left else t.rjust(w) for t, w, c in zip(texts, widths, columns)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(row) for row in cells]
    if total:
        body.insert(-1, rule)
    return "\n".join([line(headers), rule, *body, *([""] + list(notes) if notes else [])])
