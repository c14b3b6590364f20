"""Plain-text tables: how every refbinn command reports results (files: ``refbinn.io.write_json``)."""
from __future__ import annotations


def table(rows, headers):
    """A plain-text table from row tuples; floats print with 4 decimals, None as blank.

    Columns are left-aligned, as wide as their widest cell, two spaces apart; a line of
    dashes separates the headers from the rows.

    Parameters
    ----------
    rows : iterable of tuple
        One tuple of cells per row, as many as ``headers`` (a shorter row leaves its last
        columns out); cells may be float, None or anything with ``str``.
    headers : sequence of str
        The column titles.

    Returns
    -------
    str
        The table, lines joined by newlines, no trailing newline.
    """
    cells = [tuple(headers)] + [tuple("" if c is None else (f"{c:.4f}" if isinstance(c, float) else str(c))
                                      for c in r) for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r))
    return "\n".join([line(cells[0]), line(tuple("-" * x for x in w))] + [line(r) for r in cells[1:]])

