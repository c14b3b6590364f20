"""``refbinn check-trace``: two traces match only when they are equal::

    match_traces(mine, theirs, rtol=None, atol=0.0) -> list of problems ([] is a match)

A match needs both traces to hold the same steps 0..K (and each its ``meta['steps']`` = K),
the same tensors at every step, each of the same shape, and every value within tolerance
(``compare_traces``: ``|mine - theirs| <= atol + rtol * scale``). Anything missing, extra or of
another length is a problem with its own message; a file that is not a trace is a
FileFormatError from ``load_trace`` (the command exits 2). With ``partial=True``
(``--partial``) a port may leave out tensors it does not compute: those only in theirs are
counted and named, not problems; everything mine holds must still be in theirs and agree.
"""
from __future__ import annotations

from .trace import as_trace, compare_traces, default_rtol, load_trace


def _step_of(key):
    """t for a key 'stepNNNN/...', else None."""
    head, sep, _ = key.partition("/")
    return int(head[4:]) if sep and head.startswith("step") and head[4:].isdigit() else None


def _span(steps):
    return "no steps" if not steps else (
        f"steps 0..{max(steps)}" if steps == set(range(max(steps) + 1)) else f"steps {sorted(steps)}")


def _own_problems(who, meta, arrays):
    """What is wrong inside one trace: no steps, a gap, a count other than meta['steps'], stray keys."""
    steps = {_step_of(k) for k in arrays} - {None}
    out = []
    if not steps:
        out.append(f"{who} holds no step entries")
    elif steps != set(range(max(steps) + 1)) or meta.get("steps") != max(steps):
        out.append(f"{who}: meta says {meta.get('steps')!r} steps but it holds {_span(steps)}")
    stray = sorted(k for k in arrays if _step_of(k) is None)
    if stray:
        out.append(f"{who} has {len(stray)} entr{'y' if len(stray) == 1 else 'ies'} outside any step, "
                   f"e.g. {stray[0]!r}")
    return out, steps


def match_traces(a, b, rtol=None, atol=0.0, partial=False):
    """Every way trace ``a`` (mine) and trace ``b`` (theirs) differ, as messages; [] when they match.

    Parameters
    ----------
    a, b : str or PathLike, or a ``(meta, arrays)`` pair from ``load_trace``
    rtol : float >= 0, optional (default ``default_rtol``)
    atol : float >= 0
    partial : bool
        True: tensors that only ``b`` holds (at steps both hold) are not problems, so a
        port that computes part of a step can match; the steps must still be the same.

    Returns
    -------
    list of str
    """
    (ma, xa), (mb, xb) = as_trace(a), as_trace(b)
    pa, sa = _own_problems("mine", ma, xa)
    pb, sb = _own_problems("theirs", mb, xb)
    problems = pa + pb
    if sa != sb:
        problems.append(f"different lengths: mine has {_span(sa)}, theirs {_span(sb)}")
    both = sa & sb                     # keys of steps only one trace has are covered just above
    for who, x, y in (("mine", xa, xb),) + ((("theirs", xb, xa),) if not partial else ()):
        only = sorted(k for k in x if k not in y and _step_of(k) in both)
        if only:
            problems.append(f"{len(only)} tensor(s) only in {who}, e.g. {only[0]}")
    d = compare_traces((ma, xa), (mb, xb), rtol=rtol, atol=atol)
    if d is not None:
        problems.append(f"first divergence: {d}")
    return problems


def cli_check_trace(args):
    """``refbinn check-trace MINE THEIRS``: 'match' (exit 0) or every problem found (exit 1).

    Parameters
    ----------
    args : argparse.Namespace
        ``mine``, ``theirs`` (paths), ``rtol`` (None: ``default_rtol``), ``atol``, ``partial``
        (tensors only theirs holds are listed, not problems).

    Returns
    -------
    int
        0 for a match, 1 for a mismatch.
    """
    ta, tb = load_trace(args.mine), load_trace(args.theirs)
    for field in ("model", "optimizer", "dtype"):
        if ta[0].get(field) != tb[0].get(field):
            print(f"note: {field} differs: {ta[0].get(field)!r} in mine, {tb[0].get(field)!r} in theirs")
    rtol = default_rtol(ta[0], tb[0]) if args.rtol is None else args.rtol
    partial = getattr(args, "partial", False)
    problems = match_traces(ta, tb, rtol=rtol, atol=args.atol, partial=partial)
    if not problems:
        left = sorted(k for k in tb[1] if k not in ta[1])
        print(f"match ({len(ta[1])} tensors compared, rtol {rtol:g}, atol {args.atol:g}"
              + (f"; {len(left)} of theirs not in mine, e.g. {left[0]}" if left else "") + ")")
        return 0
    for p in problems:
        print(p)
    print(f"mismatch: {len(problems)} problem(s) (rtol {rtol:g}, atol {args.atol:g})")
    return 1
