"""How good a predictive distribution is: calibration and out-of-distribution (OOD) separation.

For n examples with class probabilities p_i (K classes), labels y_i, confidence
c_i = max_k p_ik and predicted class yhat_i = argmax_k p_ik (the first on a tie)::

    accuracy  = (1/n) sum_i [yhat_i = y_i]
    NLL       = -(1/n) sum_i log p_{i, y_i}                                  (nats)
    Brier     = (1/n) sum_i sum_k (p_ik - [k = y_i])^2                         (in [0, 2])
    ECE       = sum_b (n_b / n) |acc_b - conf_b|     over B equal-width confidence bins
    entropy   = H[p_i] = -sum_k p_ik log p_ik                                (nats, 0 log 0 = 0)

OOD separation scores each input with s (higher = "more out of distribution":
the entropy H, or 1 - max_k p_k) and asks how well s tells the OOD set (the
positive class) from the in-distribution test set::

    AUROC = P(s_out > s_in) + P(s_out = s_in) / 2 = U / (n_in n_out)       (Mann-Whitney U)
    AUPR  = sum_t (R_t - R_{t-1}) P_t                                       (average precision)

Bins of the ECE: with the edges e = linspace(0, 1, B + 1) (float64), bin b
(b = 0 .. B-1) holds the confidences in (e_b, e_{b+1}]; a confidence of exactly 0
goes to bin 0. Empty bins contribute nothing; their accuracy and confidence are NaN.

AUPR with ties: the thresholds t run over the distinct scores, from the largest
down; P_t and R_t are the precision and recall of "s >= t", so examples with
equal scores enter together (the step-wise average precision, no interpolation;
the definition scikit-learn's ``average_precision_score`` uses). The OOD set is
the positive class ("AUPR-out"); for AUPR-in call ``aupr(-s_out, -s_in)``.

References: Guo et al., On Calibration of Modern Neural Networks (ICML 2017), eq. 3
(ECE); Brier (1950); Hendrycks & Gimpel (ICLR 2017), the max-probability OOD
baseline and its AUROC/AUPR; Mann & Whitney (1947).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.stats import mannwhitneyu

from .checks import check_int, check_real
from .predict import row_entropy

TINY = np.finfo(np.float64).tiny      # a probability that underflowed to 0 counts as this: -log = 708.4
DEFAULT_BINS = 15


class Calibration(NamedTuple):
    """The reliability diagram's numbers and the ECE computed from them (``calibration``'s result).

    Attributes
    ----------
    ece : float
        ``ECE = sum_b (n_b / n) |acc_b - conf_b|``, in [0, 1].
    mce : float
        ``MCE = max_b |acc_b - conf_b|`` over the non-empty bins, in [0, 1].
    edges : numpy.ndarray, float64, (B + 1,)
        The bin edges 0, 1/B, ..., 1.
    counts : numpy.ndarray, int64, (B,)
        n_b, the number of examples whose confidence falls in bin b.
    confidence : numpy.ndarray, float64, (B,)
        conf_b, the mean confidence max_k p_ik in bin b (NaN where the bin is empty).
    accuracy : numpy.ndarray, float64, (B,)
        acc_b, the fraction of correct predictions in bin b (NaN where the bin is empty).
    """

    ece: float
    mce: float
    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def check_probs(probs, labels=None):
    """``probs`` as float64 (n, K) (a vector of P(y = 1) becomes the two columns [1 - p, p]),
    and ``labels`` as int64 (n,) in [0, K); ValueError naming the argument otherwise.

    Parameters
    ----------
    probs : array_like, (n, K) with K >= 2, or (n,) or (n, 1)
        Class probabilities in [0, 1] (rows summing to 1 is not checked), or P(y = 1) of a
        binary problem (a single column is always read so), which becomes the two columns [1 - p, p].
        Must be finite, with n >= 1.
    labels : array_like of int, (n,), optional
        The true classes, in [0, K); None (the default) checks ``probs`` alone.

    Returns
    -------
    p : numpy.ndarray, float64, (n, K)
        The probabilities; returned alone when ``labels`` is None.
    y : numpy.ndarray, int64, (n,)
        The labels (only when ``labels`` is given: then the pair ``(p, y)``).

    Raises
    ------
    ValueError
        On a wrong shape, a value outside [0, 1] or NaN/inf, or a label outside [0, K).
    """
    p = _real("probs", probs)
    if p.ndim == 1 or (p.ndim == 2 and p.shape[1] == 1):
        p1 = p.reshape(-1)
        p = np.stack([1 - p1, p1], axis=1)                                 # (n, 2)
    if p.ndim != 2 or len(p) == 0 or p.shape[1] == 0:
        raise ValueError(f"probs must have shape (n, K) with n >= 1 and K >= 2, got {np.shape(probs)}")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be finite and in [0, 1]")
    if labels is None:
        return p
    y = np.asarray(labels)
    if y.shape != (len(p),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({len(p)},), got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be in [0, {p.shape[1]}), got values in [{y.min()}, {y.max()}]")
    return p, y.astype(np.int64)


def accuracy(probs, labels):
    """accuracy = (1/n) sum_i [argmax_k p_ik = y_i] (the first class on a tie).

    Parameters
    ----------
    probs : array_like, (n, K) with K >= 2, or (n,) or (n, 1)
        Class probabilities in [0, 1] (rows summing to 1 is not checked), or P(y = 1) of a
        binary problem (a single column is always read so), which becomes the two columns [1 - p, p].
    labels : array_like of int, (n,)
        The true classes, in [0, K).

    Returns
    -------
    float
        The fraction of examples classified correctly, in [0, 1].
    """
    p, y = check_probs(probs, labels)
    return float(np.mean(p.argmax(axis=1) == y))


def nll(probs, labels):
    """NLL = -(1/n) sum_i log max(p_{i, y_i}, TINY) in nats (TINY: float64's smallest normal number).

    The floor keeps a probability that underflowed to 0 finite: its term is -log TINY = 708.4.

    Parameters
    ----------
    probs : array_like, (n, K) with K >= 2, or (n,) or (n, 1)
        Class probabilities in [0, 1] (rows summing to 1 is not checked), or P(y = 1) of a
        binary problem (a single column is always read so), which becomes the two columns [1 - p, p].
    labels : array_like of int, (n,)
        The true classes, in [0, K).

    Returns
    -------
    float
        The mean negative log-likelihood of the true class, in [0, 708.4] nats.
    """
    p, y = check_probs(probs, labels)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], TINY))))


def brier_score(probs, labels):
    """Brier = (1/n) sum_i sum_k (p_ik - [k = y_i])^2: 0 for a certain right answer, 2 for a certain
    wrong one.

    Parameters
    ----------
    probs : array_like, (n, K) with K >= 2, or (n,) or (n, 1)
        Class probabilities in [0, 1] (rows summing to 1 is not checked), or P(y = 1) of a
        binary problem (a single column is always read so), which becomes the two columns [1 - p, p].
    labels : array_like of int, (n,)
        The true classes, in [0, K).

    Returns
    -------
    float
        The mean squared distance to the one-hot label, in [0, 2].
    """
    p, y = check_probs(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0                                     # (n, K)
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def entropy(probs):
    """H[p_i] = -sum_k p_ik log p_ik per row, in nats, with 0 log 0 = 0.

    Parameters
    ----------
    probs : array_like, (n, K) with K >= 2, or (n,) or (n, 1)
        Class probabilities in [0, 1] (rows summing to 1 is not checked), or P(y = 1) of a
        binary problem (a single column is always read so), which becomes the two columns [1 - p, p].

    Returns
    -------
    numpy.ndarray, float64, (n,)
        The entropy of each row, in [0, log K] for rows that sum to 1.
    """
    return row_entropy(check_probs(probs))


def bin_edges(bins=DEFAULT_BINS):
    """e = linspace(0, 1, B + 1) in float64: the edges every ECE bin is measured against.

    Parameters
    ----------
    bins : int
        B >= 1, the number of equal-width confidence bins (default 15, as in Guo et al. 2017).

    Returns
    -------
    numpy.ndarray, float64, (B + 1,)
        0, 1/B, ..., 1.
    """
    return np.linspace(0.0, 1.0, check_int("bins", bins, 1) + 1)


def bin_index(confidence, bins=DEFAULT_BINS):
    """b such that e_b < c <= e_{b+1} (e = ``bin_edges(bins)``); c = 0 goes to bin 0.

    Parameters
    ----------
    confidence : array_like of float
        Confidences c in [0, 1], any shape (finite values outside are clipped to bin 0 or B - 1;
        NaN or +-inf: ValueError).
    bins : int
        B >= 1, the number of equal-width confidence bins (default 15, as in Guo et al. 2017).

    Returns
    -------
    numpy.ndarray of int, the shape of ``confidence``
        The bin index b of each confidence, in [0, B).
    """
    e = bin_edges(bins)
    confidence = _real("confidence", confidence)
    if not np.isfinite(confidence).all():              # NaN would land in the last bin
        raise ValueError("bin_index: confidence must be finite")
    # searchsorted 'left' gives the first edge >= c, so an edge value closes its bin on the right
    b = np.searchsorted(e, confidence, side="left") - 1
    return np.clip(b, 0, len(e) - 2)


def calibration(probs, labels, bins=DEFAULT_BINS):
    """``ECE = sum_b (n_b / n) |acc_b - conf_b|`` over ``bins`` equal-width bins of the confidence.

    Parameters
    ----------
    probs : array_like, (n, K) with K >= 2, or (n,) or (n, 1)
        Class probabilities in [0, 1] (rows summing to 1 is not checked), or P(y = 1) of a
        binary problem (a single column is always read so), which becomes the two columns [1 - p, p].
    labels : array_like of int, (n,)
        The true classes, in [0, K).
    bins : int
        B >= 1, the number of equal-width confidence bins (default 15, as in Guo et al. 2017).

    Returns
    -------
    Calibration
        ece, mce, edges (B + 1,), counts (B,), confidence (B,), accuracy (B,).
    """
    p, y = check_probs(probs, labels)
    bins = check_int("bins", bins, 1)
    conf = p.max(axis=1)                                                   # (n,)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    b = bin_index(conf, bins)
    counts = np.bincount(b, minlength=bins)
    sum_conf = np.bincount(b, weights=conf, minlength=bins)
    sum_acc = np.bincount(b, weights=correct, minlength=bins)
    full = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):                   # empty bins -> NaN
        mean_conf, mean_acc = sum_conf / counts, sum_acc / counts
    gap = np.abs(mean_acc - mean_conf)
    ece = float(np.sum(counts[full] * gap[full]) / len(y))
    return Calibration(ece, float(gap[full].max()), bin_edges(bins), counts,
                       np.where(full, mean_conf, np.nan), np.where(full, mean_acc, np.nan))


def expected_calibration_error(probs, labels, bins=DEFAULT_BINS):
    """``ECE = sum_b (n_b / n) |acc_b - conf_b|`` (see ``calibration``, which also returns the bins).

    n_b is the number of examples whose confidence max_k p_ik falls in bin b, acc_b
    their accuracy and conf_b their mean confidence; empty bins contribute nothing.

    Parameters
    ----------
    probs : array_like, (n, K) with K >= 2, or (n,) or (n, 1)
        Class probabilities in [0, 1] (rows summing to 1 is not checked), or P(y = 1) of a
        binary problem (a single column is always read so), which becomes the two columns [1 - p, p].
    labels : array_like of int, (n,)
        The true classes, in [0, K).
    bins : int
        B >= 1, the number of equal-width confidence bins (default 15, as in Guo et al. 2017).

    Returns
    -------
    float
        The expected calibration error, in [0, 1].

    References
    ----------
    Guo et al., On Calibration of Modern Neural Networks (ICML 2017), eq. 3.
    """
    return calibration(probs, labels, bins).ece


def _real(name, a):
    """``a`` as a float64 array; ValueError naming ``name`` for complex, text or objects."""
    return check_real(name, a).astype(np.float64, copy=False)


def _check_scores(name, s):
    s = _real(name, s).reshape(-1)
    if len(s) == 0 or not np.all(np.isfinite(s)):
        raise ValueError(f"{name} must be a non-empty array of finite scores, got {len(s)} values")
    return s


def auroc(scores_in, scores_out):
    """AUROC = P(s_out > s_in) + P(s_out = s_in) / 2 = U_out / (n_in n_out).

    U_out is the Mann-Whitney U statistic of the OOD scores (scipy), which
    counts a tie as one half: 1 for a perfect separation, 0.5 for none.

    Parameters
    ----------
    scores_in : ndarray, (n_in,), scores of the in-distribution examples
    scores_out : ndarray, (n_out,), scores of the OOD examples (the positive class)

    Returns
    -------
    float in [0, 1]
    """
    s_in, s_out = _check_scores("scores_in", scores_in), _check_scores("scores_out", scores_out)
    # method='asymptotic' only picks how the (unused) p-value is computed; U itself is exact
    u = mannwhitneyu(s_out, s_in, alternative="two-sided", method="asymptotic").statistic
    return float(u / (len(s_in) * len(s_out)))


def aupr(scores_in, scores_out):
    """AUPR = average precision = sum_t (R_t - R_{t-1}) P_t, the OOD set positive.

    t runs over the distinct scores from the largest down; P_t and R_t are the
    precision and recall of the rule "OOD if s >= t", so tied examples enter
    together (see the module docstring). R_0 = 0.

    Parameters
    ----------
    scores_in : ndarray, (n_in,)
    scores_out : ndarray, (n_out,), the positive class

    Returns
    -------
    float in (0, 1]; n_out / (n_in + n_out) in expectation for uninformative scores
    """
    s_in, s_out = _check_scores("scores_in", scores_in), _check_scores("scores_out", scores_out)
    s = np.concatenate([s_in, s_out])
    positive = np.concatenate([np.zeros(len(s_in)), np.ones(len(s_out))])
    # the distinct thresholds, largest first; inv[i] = the threshold at which example i enters
    _, inv = np.unique(-s, return_inverse=True)
    tp = np.cumsum(np.bincount(inv, weights=positive))                     # (T,)
    seen = np.cumsum(np.bincount(inv))                                     # (T,) examples with s >= t
    recall = tp / len(s_out)
    precision = tp / seen
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def ood_scores(probs):
    """The two OOD scores of each input: entropy H[p] and 1 - max_k p_k; each (n,).

    Higher means "more out of distribution" for both.

    Parameters
    ----------
    probs : array_like, (n, K) with K >= 2, or (n,) or (n, 1)
        Class probabilities in [0, 1] (rows summing to 1 is not checked), or P(y = 1) of a
        binary problem (a single column is always read so), which becomes the two columns [1 - p, p].

    Returns
    -------
    dict
        ``"entropy"``: H[p_i] = -sum_k p_ik log p_ik (n,), in nats; ``"maxprob"``:
        1 - max_k p_ik (n,), in [0, 1 - 1/K].
    """
    return _scores(check_probs(probs))


def _scores(p):
    """``ood_scores`` of probabilities ``check_probs`` has passed."""
    return {"entropy": row_entropy(p), "maxprob": 1.0 - p.max(axis=1)}


def classification_metrics(probs, labels, bins=DEFAULT_BINS):
    """Accuracy, NLL, Brier score, ECE (with its bins) and mean entropy of one prediction.

    The formulas are in the module docstring (``ECE = sum_b (n_b / n) |acc_b - conf_b|``).

    Parameters
    ----------
    probs : array_like, (n, K) with K >= 2, or (n,) or (n, 1)
        Class probabilities in [0, 1] (rows summing to 1 is not checked), or P(y = 1) of a
        binary problem (a single column is always read so), which becomes the two columns [1 - p, p].
    labels : array_like of int, (n,)
        The true classes, in [0, K).
    bins : int
        B >= 1, the number of equal-width confidence bins (default 15, as in Guo et al. 2017).

    Returns
    -------
    dict
        ``acc``, ``nll``, ``brier``, ``ece``, ``mce``, ``entropy`` (mean over examples), all
        floats, and ``calibration``: a dict of ``edges``, ``counts``, ``confidence``,
        ``accuracy`` as lists (NaN -> None, so that it serialises to JSON), for the
        reliability diagram.
    """
    p, y = check_probs(probs, labels)
    cal = calibration(p, y, bins)
    as_list = lambda a: [None if np.isnan(v) else float(v) for v in a]
    return {"acc": accuracy(p, y), "nll": nll(p, y), "brier": brier_score(p, y), "ece": cal.ece,
            "mce": cal.mce, "entropy": float(np.mean(row_entropy(p))),
            "calibration": {"edges": cal.edges.tolist(), "counts": cal.counts.tolist(),
                            "confidence": as_list(cal.confidence), "accuracy": as_list(cal.accuracy)}}


def ood_metrics(probs_in, probs_out):
    """AUROC and AUPR (OOD positive) of the entropy and of 1 - max prob, and both mean entropies.

    AUROC = P(s_out > s_in) + P(s_out = s_in) / 2 and AUPR = sum_t (R_t - R_{t-1}) P_t
    (``auroc``, ``aupr``), for the scores s of ``ood_scores``.

    Parameters
    ----------
    probs_in : array_like, (n_in, K) or (n_in,)
        Class probabilities on the in-distribution test set (the negative class).
    probs_out : array_like, (n_out, K) or (n_out,)
        Class probabilities on the out-of-distribution set (the positive class), same K.

    Returns
    -------
    dict
        ``auroc_entropy``, ``aupr_entropy``, ``auroc_maxprob``, ``aupr_maxprob`` (in [0, 1]),
        ``entropy_in``, ``entropy_out`` (the mean entropy on each set, nats); all floats.

    Raises
    ------
    ValueError
        On probabilities that ``check_probs`` refuses, or a K of ``probs_out`` other than that of ``probs_in``.
    """
    p_in, p_out = check_probs(probs_in), check_probs(probs_out)
    if p_in.shape[1] != p_out.shape[1]:
        raise ValueError(f"probs_out must have the K = {p_in.shape[1]} classes of probs_in, "
                         f"got K = {p_out.shape[1]}")
    s_in, s_out = _scores(p_in), _scores(p_out)
    out = {}
    for name in ("entropy", "maxprob"):
        out[f"auroc_{name}"] = auroc(s_in[name], s_out[name])
        out[f"aupr_{name}"] = aupr(s_in[name], s_out[name])
    out["entropy_in"] = float(np.mean(s_in["entropy"]))
    out["entropy_out"] = float(np.mean(s_out["entropy"]))
    return out
