"""Plain-text tables and atomic JSON files: how every refbinn command reports results."""
from __future__ import annotations

import json
import os


def table(rows, headers):
    """A plain-text table from row tuples; floats print with 4 decimals, None as blank."""
    cells = [tuple(headers)] + [tuple("" if c is None else (f"{c:.4f}" if isinstance(c, float) else str(c))
                                      for c in r) for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r))
    return "\n".join([line(cells[0]), line(tuple("-" * x for x in w))] + [line(r) for r in cells[1:]])


def write_json(path, obj):
    """Write ``obj`` as JSON atomically (a temporary file, then a rename); arrays become lists."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    os.replace(tmp, path)
