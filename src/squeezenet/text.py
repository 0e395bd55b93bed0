"""Plain-text tables for the terminal: the one layout that summary, benchmark and compress reports share."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, total: bool = False) -> list[str]:
    """Lines of a table whose columns are as wide as their widest cell: the first left-aligned (names), the
    rest right-aligned (numbers), a rule under the header and, with ``total``, above the last row. A row
    shorter than the header (a note such as "skipped: ...") is written after its first cell, outside the
    columns."""
    full = [list(header), *(list(row) for row in rows if len(row) == len(header))]
    widths = [max(len(row[i]) for row in full) for i in range(len(header))]
    rule = "  ".join("-" * width for width in widths)

    def line(row: Sequence[str]) -> str:
        if len(row) < len(header):
            return "  ".join([row[0].ljust(widths[0]), *row[1:]])
        return "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(row, widths, strict=True)))

    body = [line(row) for row in rows]
    if total and body:
        body.insert(len(body) - 1, rule)
    return [line(header), rule, *body]
