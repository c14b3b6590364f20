"""refbinn.metrics against hand computations (float64), brute-force definitions, and
synthetic predictors whose ECE and AUROC are known; tolerances from the sampling error."""
import math
import re

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refbinn.metrics import (TINY, accuracy, aupr, auroc, bin_edges, bin_index, brier_score,
                             calibration, classification_metrics, entropy, expected_calibration_error,
                             nll, ood_metrics)

Z = 4.0       # z-score of every statistical tolerance below (two-sided p ~ 6e-5 per test)


# -- hand-made cases --------------------------------------------------------------------------------
P = np.array([[0.7, 0.2, 0.1],
              [0.1, 0.3, 0.6],
              [0.5, 0.5, 0.0]])          # the last row ties: argmax picks class 0
Y = np.array([0, 1, 1])


def test_accuracy_nll_brier_entropy_by_hand():
    assert accuracy(P, Y) == pytest.approx(1 / 3, abs=0)          # row 0 right; row 2's tie -> class 0
    assert nll(P, Y) == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.5)) / 3, rel=1e-15)
    brier = ((0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2) + (0.1 ** 2 + 0.7 ** 2 + 0.6 ** 2) + (0.5 ** 2 + 0.5 ** 2)) / 3
    assert brier_score(P, Y) == pytest.approx(brier, rel=1e-15)
    h = [-(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)),
         -(0.1 * math.log(0.1) + 0.3 * math.log(0.3) + 0.6 * math.log(0.6)), math.log(2)]
    np.testing.assert_allclose(entropy(P), h, rtol=1e-15)


def test_binary_vector_is_two_classes():
    p1, y = np.array([0.9, 0.2, 0.6]), np.array([1, 1, 0])
    two = np.stack([1 - p1, p1], axis=1)
    assert brier_score(p1, y) == brier_score(two, y) == pytest.approx(2 * np.mean((p1 - y) ** 2), rel=1e-15)
    assert nll(p1[:, None], y) == pytest.approx(-np.mean(np.log([0.9, 0.2, 0.4])), rel=1e-15)


def test_nll_of_a_certain_miss_is_finite():
    assert nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(TINY))


@pytest.mark.parametrize("p", [0.0, 5e-324, 1e-310, TINY])
def test_nll_floors_a_subnormal_probability_at_tiny(p):
    # max(p, TINY), not p + TINY: every p <= TINY (0, the subnormals) scores exactly -log TINY = 708.4
    assert nll(np.array([[1.0, p]]), np.array([1])) == pytest.approx(-math.log(TINY), rel=1e-15)


def test_ece_by_hand_with_its_bins():
    # confidences 0.95 (x2, one right), 0.7 (right), 0.55 (wrong); 5 bins of width 0.2
    p = np.array([[0.95, 0.05], [0.05, 0.95], [0.3, 0.7], [0.55, 0.45]])
    y = np.array([0, 0, 1, 1])
    cal = calibration(p, y, bins=5)
    np.testing.assert_array_equal(cal.counts, [0, 0, 1, 1, 2])
    np.testing.assert_allclose(cal.confidence[2:], [0.55, 0.7, 0.95], rtol=1e-15)
    np.testing.assert_array_equal(cal.accuracy[2:], [0.0, 1.0, 0.5])
    assert np.isnan(cal.confidence[:2]).all() and np.isnan(cal.accuracy[:2]).all()
    assert cal.ece == pytest.approx((0.55 + 0.3 + 2 * 0.45) / 4, rel=1e-15)
    assert cal.mce == pytest.approx(0.55, rel=1e-15)
    np.testing.assert_allclose(cal.edges, [0, 0.2, 0.4, 0.6, 0.8, 1.0], rtol=0, atol=2e-16)


def test_bin_edges_close_their_bin_on_the_right():
    e = bin_edges(15)
    np.testing.assert_array_equal(bin_index(e, 15), [0] + list(range(15)))     # 0 -> bin 0, e_b -> bin b-1
    np.testing.assert_array_equal(bin_index(np.nextafter(e[1:-1], 1), 15), range(1, 15))


def test_bin_index_clips_outside_confidences_to_the_end_bins():
    np.testing.assert_array_equal(bin_index([-0.5, -1e-12, 1 + 1e-12, 1.5], 15), [0, 0, 14, 14])
    np.testing.assert_array_equal(bin_index([[2.0], [-2.0]], 4), [[3], [0]])        # shape kept


def test_classification_metrics_lists_the_bins():
    m = classification_metrics(P, Y, bins=4)
    assert sum(m["calibration"]["counts"]) == 3 and len(m["calibration"]["edges"]) == 5
    assert m["calibration"]["confidence"][0] is None                            # empty bin: None in JSON
    assert m["ece"] == expected_calibration_error(P, Y, 4)
    assert set(m) == {"acc", "nll", "brier", "ece", "mce", "entropy", "calibration"}      # the documented keys
    assert set(m["calibration"]) == {"edges", "counts", "confidence", "accuracy"}


def test_classification_metrics_values_by_hand():
    # P's confidences 0.7 (right), 0.6 (wrong), 0.5 (the tie: class 0, wrong); 4 bins of width 0.25,
    # so 0.5 (the edge e_2) closes bin 1 and 0.6, 0.7 fill bin 2; bins 0 and 3 stay empty
    m = classification_metrics(P, Y, bins=4)
    h = [-(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)),
         -(0.1 * math.log(0.1) + 0.3 * math.log(0.3) + 0.6 * math.log(0.6)), math.log(2)]
    assert m["acc"] == pytest.approx(1 / 3, abs=0)
    assert m["nll"] == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.5)) / 3, rel=1e-15)
    assert m["brier"] == pytest.approx((0.14 + 0.86 + 0.5) / 3, rel=1e-15)
    assert m["entropy"] == pytest.approx(sum(h) / 3, rel=1e-15)
    assert m["ece"] == pytest.approx((1 * 0.5 + 2 * abs(0.5 - 0.65)) / 3, rel=1e-14)
    assert m["mce"] == pytest.approx(0.5, rel=1e-15)
    cal = m["calibration"]
    assert cal["counts"] == [0, 1, 2, 0]                                         # B entries, the last empty
    assert cal["confidence"][0] is None and cal["confidence"][3] is None
    assert cal["confidence"][1:3] == pytest.approx([0.5, 0.65], rel=1e-15)
    assert cal["accuracy"] == [None, 0.0, 0.5, None]


@pytest.mark.parametrize("call, match", [
    (lambda: accuracy(np.array([[0.5, 0.5]]), np.array([2])), "labels must be in"),
    (lambda: nll(np.array([[0.5, 0.5]]), np.array([0.0])), "labels must be integers"),
    (lambda: brier_score(np.array([[1.5, -0.5]]), np.array([0])), "probs must be finite and in"),
    (lambda: calibration(P, Y, bins=0), "bins must be an integer in"),
    (lambda: accuracy(np.zeros((0, 3)), np.zeros(0, int)), r"probs must have shape \(n, K\) with n >= 1"),
    (lambda: accuracy(np.zeros((2, 0)), np.zeros(2, int)), r"probs must have shape .* and K >= 2, got \(2, 0\)"),
    (lambda: nll(np.array([[-0.1, 1.0]]), np.array([1])), "probs must be finite and in"),   # max <= 1
    (lambda: accuracy(P, Y[:, None]), r"labels must be integers of shape \(3,\)"),     # would broadcast (3, 3)
    (lambda: ood_metrics(P, np.full((2, 4), 0.25)), "probs_out must have the K = 3 classes of probs_in"),
    (lambda: nll(np.array([[0.2, 1.5]]), np.array([0])), "probs must be finite and in"),
    (lambda: brier_score(np.array([[np.nan, 0.5]]), np.array([0])), "probs must be finite and in"),
    (lambda: nll(np.array([[0.5, 0.5]]), np.array([-1])), "labels must be in"),
    (lambda: auroc([], [1.0]), "scores_in must be"),
    (lambda: aupr([0.0], [np.nan]), "scores_out must be"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- ECE of synthetic predictors ----------------------------------------------------------------------
def _predictor(rng, conf, k, p_correct):
    """Probabilities with max p = conf on a random class (the rest spread evenly) and labels
    equal to that class with probability p_correct, else one of the others at random."""
    n = len(conf)
    top = rng.integers(0, k, n)
    p = np.repeat(((1 - conf) / (k - 1))[:, None], k, axis=1)               # (n, K)
    p[np.arange(n), top] = conf
    right = rng.random(n) < p_correct
    other = (top + rng.integers(1, k, n)) % k
    return p, np.where(right, top, other), right


def test_ece_of_a_calibrated_predictor_is_zero_within_sampling_error():
    """P(right | c) = c. Given the confidences, bin b's gap e_b = mean(right - c) is ~ N(0, s_b^2),
    s_b^2 = sum c(1-c) / n_b^2, independent across bins; so ECE = sum w_b |e_b| has mean
    sqrt(2/pi) sum w_b s_b and variance (1 - 2/pi) sum w_b^2 s_b^2 (half-normal moments)."""
    rng = np.random.default_rng(0)
    n, k, bins = 20000, 10, 15
    conf = rng.uniform(0.2, 1.0, n)
    p, y, _ = _predictor(rng, conf, k, conf)
    cal = calibration(p, y, bins)
    b = bin_index(conf, bins)
    w = cal.counts / n
    s = np.sqrt(np.bincount(b, conf * (1 - conf), bins)) / np.maximum(cal.counts, 1)
    mean, sd = math.sqrt(2 / math.pi) * np.sum(w * s), math.sqrt((1 - 2 / math.pi) * np.sum(w ** 2 * s ** 2))
    assert abs(cal.ece - mean) < Z * sd, (cal.ece, mean, sd)


def test_ece_of_an_overconfident_predictor_is_one_sixth():
    """c ~ U(0.5, 1), P(right | c) = c^2 < c: every bin has acc < conf, so for any binning
    ECE = mean(c - right) -> E[c - c^2] = 2 int_{1/2}^1 (c - c^2) dc = 1/6; its standard error
    is std(c - right) / sqrt(n)."""
    rng = np.random.default_rng(1)
    n = 100000
    conf = rng.uniform(0.5, 1.0, n)
    p, y, right = _predictor(rng, conf, 2, conf ** 2)
    se = np.std(conf - right) / math.sqrt(n)
    for bins in (1, 15, 100):
        assert abs(expected_calibration_error(p, y, bins) - 1 / 6) < Z * se, bins


def test_ece_of_a_constant_accuracy_predictor_equals_its_analytic_value():
    """c ~ U(0.5, 1), P(right) = 0.75 whatever c. With bins [e_b, e_b+1] cut to [0.5, 1]:
    ECE = sum_b P(b) |0.75 - mid_b| (mid_b the middle of the cut bin). With the sign s_b of
    each gap fixed (every bin's gap is > 5 of its standard errors), ECE_hat = mean(s_b (right - c)),
    whose standard error is std(s_b (right - c)) / sqrt(n)."""
    rng = np.random.default_rng(2)
    n, bins = 200000, 15
    conf = rng.uniform(0.5, 1.0, n)
    p, y, right = _predictor(rng, conf, 2, 0.75)
    e = bin_edges(bins)
    lo, hi = np.clip(e[:-1], 0.5, 1.0), np.clip(e[1:], 0.5, 1.0)
    prob, mid = (hi - lo) / 0.5, (lo + hi) / 2
    exact = np.sum(prob * np.abs(0.75 - mid))
    cal = calibration(p, y, bins)
    full = cal.counts > 0
    assert np.all(np.sign(cal.accuracy - cal.confidence)[full] == np.sign(0.75 - mid)[full])
    sign = np.sign(0.75 - mid)[bin_index(conf, bins)]
    se = np.std(sign * (right - conf)) / math.sqrt(n)
    assert abs(cal.ece - exact) < Z * se
    # the unweighted mean of the bin gaps (a common slip) is 0.131, over 6 standard errors away
    assert abs(np.mean(np.abs(0.75 - mid)[full]) - exact) > 6 * se


# -- AUROC and AUPR ---------------------------------------------------------------------------------
def brute_auroc(s_in, s_out):
    """Pairs (in, out) with s_out > s_in, plus half the ties, over n_in n_out."""
    return sum(1.0 if o > i else 0.5 if o == i else 0.0 for i in s_in for o in s_out) / (len(s_in) * len(s_out))


def brute_aupr(s_in, s_out):
    """sum over distinct thresholds t, largest first, of (R_t - R_prev) P_t for the rule s >= t."""
    ap, r_prev = 0.0, 0.0
    for t in sorted(set(s_in) | set(s_out), reverse=True):
        tp = sum(o >= t for o in s_out)
        fp = sum(i >= t for i in s_in)
        r = tp / len(s_out)
        ap += (r - r_prev) * tp / (tp + fp)
        r_prev = r
    return ap


def test_auroc_and_aupr_by_hand():
    # scikit-learn's documented example: y = [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8]
    assert auroc([0.1, 0.4], [0.35, 0.8]) == 0.75
    assert aupr([0.1, 0.4], [0.35, 0.8]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, rel=1e-15)
    # a tie across classes enters as one threshold: t = 1 holds 2 OOD and 1 in -> P = 2/3, R = 1
    assert aupr([1.0, 0.0], [1.0, 1.0]) == pytest.approx(2 / 3, rel=1e-15)
    assert auroc([1.0, 0.0], [1.0, 1.0]) == 0.75


@given(st.lists(st.integers(0, 4), min_size=1, max_size=25), st.lists(st.integers(0, 4), min_size=1, max_size=25))
def test_auroc_and_aupr_equal_brute_force_with_ties(s_in, s_out):
    assert auroc(s_in, s_out) == pytest.approx(brute_auroc(s_in, s_out), abs=1e-12)
    assert aupr(s_in, s_out) == pytest.approx(brute_aupr(s_in, s_out), abs=1e-12)


def test_auroc_equals_brute_force_on_random_scores_with_ties():
    rng = np.random.default_rng(3)
    s_in, s_out = rng.integers(0, 6, 137), rng.integers(1, 7, 211)             # many ties
    assert auroc(s_in, s_out) == pytest.approx(brute_auroc(s_in, s_out), abs=1e-12)
    assert aupr(s_in, s_out) == pytest.approx(brute_aupr(s_in, s_out), abs=1e-12)


def test_aupr_without_ties_is_the_mean_precision_at_each_positive():
    rng = np.random.default_rng(4)
    s_in, s_out = rng.normal(0, 1, 300), rng.normal(1, 1, 200)
    s = np.concatenate([s_in, s_out])
    pos = np.concatenate([np.zeros(300), np.ones(200)])[np.argsort(-s)]
    precision_at = np.cumsum(pos) / np.arange(1, len(pos) + 1)
    assert aupr(s_in, s_out) == pytest.approx(np.mean(precision_at[pos == 1]), rel=1e-13)


def test_auroc_of_identical_distributions_is_one_half_within_sampling_error():
    """Under H0 (no ties) Var(U / n1 n2) = (n1 + n2 + 1) / (12 n1 n2) (Mann & Whitney)."""
    rng = np.random.default_rng(5)
    n1, n2 = 3000, 2000
    sd = math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
    for _ in range(3):
        assert abs(auroc(rng.normal(size=n1), rng.normal(size=n2)) - 0.5) < Z * sd


def test_auroc_and_aupr_of_separated_scores():
    rng = np.random.default_rng(6)
    s_in, s_out = rng.uniform(0, 1, 500), rng.uniform(2, 3, 300)
    assert auroc(s_in, s_out) == 1.0 and aupr(s_in, s_out) == 1.0
    assert auroc(s_out, s_in) == 0.0
    assert aupr(s_out, s_in) == pytest.approx(brute_aupr(list(s_out), list(s_in)), rel=1e-12)


def test_ood_metrics_of_confident_vs_uniform_predictions():
    rng = np.random.default_rng(7)
    k = 10
    p_in = np.full((400, k), 0.01)
    p_in[np.arange(400), rng.integers(0, k, 400)] = 0.91
    p_out = rng.dirichlet(np.full(k, 50.0), 300)                            # near uniform
    m = ood_metrics(p_in, p_out)
    assert m["auroc_entropy"] == m["auroc_maxprob"] == 1.0
    assert m["aupr_entropy"] == m["aupr_maxprob"] == 1.0
    assert m["entropy_in"] == pytest.approx(-(0.91 * math.log(0.91) + 9 * 0.01 * math.log(0.01)), rel=1e-12)
    assert m["entropy_out"] < math.log(k) and m["entropy_out"] > m["entropy_in"]


def test_ood_metrics_by_hand_with_overlapping_scores():
    # binary: in-distribution confidences 0.9, 0.8, 0.6, 0.95 and OOD 0.7, 0.5, 0.85, so the
    # 1 - max scores are in = .1 .2 .4 .05, out = .3 .5 .15 (entropy ranks them the same way).
    # AUROC: 3 + 4 + 2 of the 12 pairs have s_out > s_in. AUPR-out: ranked .5o .4i .3o .2i .15o .1i .05i,
    # the precision at each OOD example is 1/1, 2/3, 3/5 (AUPR-in would be (1 + 1 + 3/4 + 4/6) / 4).
    c_in, c_out = np.array([0.9, 0.8, 0.6, 0.95]), np.array([0.7, 0.5, 0.85])
    m = ood_metrics(np.stack([c_in, 1 - c_in], 1), np.stack([1 - c_out, c_out], 1))
    assert m["auroc_entropy"] == m["auroc_maxprob"] == pytest.approx(9 / 12, rel=1e-15)
    assert m["aupr_entropy"] == m["aupr_maxprob"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, rel=1e-15)
    h2 = lambda c: -(c * math.log(c) + (1 - c) * math.log(1 - c))
    assert m["entropy_in"] == pytest.approx(sum(map(h2, c_in)) / 4, rel=1e-15)
    assert m["entropy_out"] == pytest.approx(sum(map(h2, c_out)) / 3, rel=1e-15)


@pytest.mark.parametrize("call,says", [
    (lambda: accuracy(np.array([[0.2, 0.8]], complex), [1]), "probs must hold real numbers, got dtype complex128"),
    (lambda: nll(np.array([["a", "b"]]), [1]), "probs must hold real numbers, got dtype <U1"),
    (lambda: brier_score(None, [1]), "probs must hold real numbers, got dtype object"),
    (lambda: auroc(np.array([0.5j]), [1.0]), "scores_in must hold real numbers, got dtype complex128"),
    (lambda: aupr([1.0], ["a"]), "scores_out must hold real numbers, got dtype <U1"),
    (lambda: bin_index(np.array([np.nan, 0.5])), "bin_index: confidence must be finite"),
])
def test_metrics_refuse_probabilities_and_scores_that_are_not_real_numbers(call, says):
    """Complex values were cast to real (the imaginary part dropped), text failed inside NumPy
    naming nothing, and a NaN confidence went to the last bin."""
    with pytest.raises(ValueError, match=re.escape(says)):
        call()
