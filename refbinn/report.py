"""Plain-text tables: how every refbinn command reports results (files: ``refbinn.io.write_json``)."""
from __future__ import annotations

import numpy as np


def table(rows, headers):
    """A plain-text table from row tuples; floats print with 4 decimals, None as blank.

    Columns are left-aligned, as wide as their widest cell, two spaces apart; a line of
    dashes separates the headers from the rows.

    Parameters
    ----------
    rows : iterable of tuple
        One tuple of cells per row, at most as many as ``headers`` (a shorter row leaves its
        last columns blank); cells may be float (Python or NumPy), None or anything with ``str``.
    headers : sequence of str
        The column titles.

    Returns
    -------
    str
        The table, lines joined by newlines, no trailing newline.
    """
    n = len(headers)
    cells = [tuple(headers)]
    for r in rows:
        r = tuple(r)
        if len(r) > n:
            raise ValueError(f"table: a row has {len(r)} cells, more than the {n} headers: {r!r}")
        cells.append(tuple("" if c is None else (f"{c:.4f}" if isinstance(c, (float, np.floating)) else str(c))
                           for c in r) + ("",) * (n - len(r)))
    w = [max(len(r[i]) for r in cells) for i in range(n)]
    line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r))
    return "\n".join([line(cells[0]), line(tuple("-" * x for x in w))] + [line(r) for r in cells[1:]])

