"""Plain-text tables: the one renderer behind every table the commands print.

It lives in ``base`` (not ``output``) because stages before ``output`` render tables too (a
training step's summary, Distiller's sparsity table), and ``base`` is what every stage may import.
No dependency: ``tabulate`` would do the same for a few dozen lines, but the outputs here must stay
byte-identical to the documented examples.
"""

from __future__ import annotations

from typing import Collection, Sequence, Union


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Union[Collection[int], bool] = (),
                 footer: Sequence[Sequence[str]] = (), style: str = "plain") -> str:
    """``header`` and ``rows`` (cells already formatted) as aligned columns.

    ``right``: the column indices aligned right (True: all of them); the others align left.
    ``footer``: rows printed after a second rule (a total). A row may be shorter than the header.
    ``style``: ``plain`` (two spaces between columns, a dashed rule under the header, trailing
    blanks stripped) or ``psql`` (``| a | b |`` framed by ``+---+`` rules, as tabulate's psql
    style and Distiller's logs print it).
    """
    widths = [max(len(row[i]) for row in [header, *rows, *footer] if i < len(row)) for i in range(len(header))]

    def padded(row: Sequence[str]) -> list[str]:
        return [cell.rjust(widths[i]) if right is True or (right is not False and i in right) else cell.ljust(widths[i])
                for i, cell in enumerate(row)]

    if style == "psql":
        frame = "+-" + "-+-".join("-" * w for w in widths) + "-+"
        lines = [frame, "| " + " | ".join(padded(header)) + " |", "|-" + "-+-".join("-" * w for w in widths) + "-|"]
        lines += ["| " + " | ".join(padded(row)) + " |" for row in rows]
        lines += ([frame] + ["| " + " | ".join(padded(row)) + " |" for row in footer] if footer else []) + [frame]
        return "\n".join(lines)
    rule = "  ".join("-" * w for w in widths)
    lines = ["  ".join(padded(header)).rstrip(), rule] + ["  ".join(padded(row)).rstrip() for row in rows]
    lines += ([rule] + ["  ".join(padded(row)).rstrip() for row in footer]) if footer else []
    return "\n".join(lines)
