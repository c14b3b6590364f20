"""Shared pieces of the cross-checks: a result row, the deviation measure, array conversion.

Deviation of an array ``a`` (refbinn) from a reference ``b`` (torch)::

    dev(a, b) = max |a - b| / max(max |b|, tiny)

a scale-relative error: one number per tensor that does not blow up at the
entries that happen to be near zero. A row passes when every tensor it covers
has dev <= tol.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


@dataclass
class Row:
    group: str          # "layers", "trajectories", "interop", "paper"
    name: str           # what was compared
    dev: float          # largest deviation (see module docstring); nan when not applicable
    tol: float          # the row passes when dev <= tol
    note: str = ""      # what dev is measured over, or why a row is skipped
    ok: bool | None = None   # None: computed from dev <= tol
    label: str | None = None # shown instead of PASS/FAIL (e.g. "not run" for paper rows)

    @property
    def passed(self):
        if self.ok is not None:
            return bool(self.ok)
        return bool(np.isfinite(self.dev) and self.dev <= self.tol)


def to_np(t):
    """torch tensor (or anything array-like) -> ndarray, detached."""
    if hasattr(t, "detach"):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def dev(a, b):
    """max |a - b| / max(max |b|, tiny); exact-shape match required (else inf)."""
    a, b = np.asarray(to_np(a), dtype=np.float64), np.asarray(to_np(b), dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(b))), 1e-300)
    d = float(np.max(np.abs(a - b)))
    return d / scale if np.isfinite(d) else float("inf")


def max_dev(pairs):
    """Largest ``dev`` over a dict name -> (a, b); returns (value, name of the worst)."""
    worst, name = 0.0, "all equal"
    for k, (a, b) in pairs.items():
        d = dev(a, b)
        if not d <= worst:
            worst, name = d, k
    return worst, name


def format_table(rows):
    """One plain-text table: group, check, max deviation, tolerance, PASS/FAIL, note."""
    head = ("group", "check", "max dev", "tol", "result", "note")
    body = []
    for r in rows:
        d = "-" if r.dev is None or (isinstance(r.dev, float) and np.isnan(r.dev)) else f"{r.dev:.2e}"
        t = "-" if r.tol is None or (isinstance(r.tol, float) and np.isnan(r.tol)) else f"{r.tol:.0e}"
        body.append((r.group, r.name, d, t, r.label or ("PASS" if r.passed else "FAIL"), r.note))
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(5)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head[:5], widths)) + "  " + head[5]]
    lines.append("-" * (sum(widths) + 2 * 5 + 4))
    for b in body:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(b[:5], widths)) + "  " + b[5])
    return "\n".join(lines)
