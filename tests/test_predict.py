"""Mode and mean predictions and the predictive entropy (refbinn.predict)."""
import math
import re

import numpy as np
import pytest

from refbinn.nn import BatchNorm, Dense, Dropout, ReLU, Sequential
from refbinn.optim.bayesbinn import BayesBiNN
from refbinn.predict import (apply_link, class_probs, predict_logits, predict_mean, predict_mode,
                             predictive_entropy)


def setup(lam_init, classes=4, seed=0):
    model = Sequential(Dropout(0.2, name="drop"), Dense(6, 16, name="fc1"), BatchNorm(16, affine=False, name="bn1"),
                       ReLU(), Dense(16, classes, name="fc2"))
    rng = np.random.default_rng(seed)
    params, bn_state = model.init(rng, np.float64)
    bn_state = {k: v + rng.uniform(0.5, 1.5, v.shape) if k.endswith("var") else v + 0.1
                for k, v in bn_state.items()}                # non-trivial running statistics
    opt = BayesBiNN(N=100, tau=1.0, lam_init=lam_init)
    state = opt.init(params, rng)
    x = rng.standard_normal((37, 6))
    return model, opt, state, bn_state, x


def test_mean_with_one_sample_equals_mode_when_lam_is_deterministic():
    """|lam| = 1e4: P(w = sign(lam)) = sigmoid(2e4) = 1, so the one hard sample is the mode."""
    model, opt, state, bn, x = setup(lam_init=1e4)
    mode = predict_mode(model, opt, state, bn, x)
    for average in ("prob", "logits"):
        mean = predict_mean(model, opt, state, bn, x, samples=1, rng=np.random.default_rng(1),
                            average=average)
        np.testing.assert_array_equal(mean, mode)


def test_probabilities_sum_to_one_and_links():
    model, opt, state, bn, x = setup(lam_init=0.3)
    for probs in (predict_mode(model, opt, state, bn, x),
                  predict_mean(model, opt, state, bn, x, samples=5, rng=np.random.default_rng(2)),
                  predict_mean(model, opt, state, bn, x, samples=5, rng=np.random.default_rng(2),
                               average="logits")):
        assert probs.shape == (37, 4) and np.all(probs >= 0)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    model, opt, state, bn, x = setup(lam_init=0.3, classes=1)
    p = predict_mean(model, opt, state, bn, x, samples=3, rng=np.random.default_rng(3), link="sigmoid")
    assert p.shape == (37, 1) and np.all((p > 0) & (p < 1))


def test_mean_is_the_average_over_the_generators_samples():
    model, opt, state, bn, x = setup(lam_init=0.5)
    rng = np.random.default_rng(4)
    manual = np.mean([apply_link(model.apply(opt.sample_params(state, rng), x, bn))
                      for _ in range(6)], axis=0)
    got = predict_mean(model, opt, state, bn, x, samples=6, rng=np.random.default_rng(4))
    np.testing.assert_allclose(got, manual, rtol=1e-12)
    # the mode prediction: the link of the sign weights' logits in evaluation mode (no dropout)
    np.testing.assert_array_equal(predict_mode(model, opt, state, bn, x),
                                  apply_link(model.apply(opt.params(state), x, bn)))


def test_batching_does_not_change_logits():
    model, opt, state, bn, x = setup(lam_init=1.0)
    w = opt.params(state)
    np.testing.assert_allclose(predict_logits(model, w, bn, x, batch_size=5),
                               predict_logits(model, w, bn, x), rtol=1e-12)


class TwoWeightSets:
    """A stand-in optimizer whose samples alternate between two fixed weight sets."""

    def __init__(self, sets):
        self.sets = sets

    def params(self, state):
        return self.sets[0]

    def sample_params(self, state, rng):
        state["calls"] += 1
        return self.sets[(state["calls"] - 1) % 2]


def test_prob_and_logit_averaging_differ_in_a_constructed_case():
    """Logits (4, 0) and (0, 0): averaging probabilities gives (sigmoid(4) + 1/2)/2 for
    class 0; averaging logits first gives softmax((2, 0)), i.e. sigmoid(2)."""
    model = Sequential(Dense(1, 2, name="fc"))
    opt = TwoWeightSets([{"fc.weight": np.array([[4.0], [0.0]])}, {"fc.weight": np.zeros((2, 1))}])
    x = np.ones((1, 1))
    sig = lambda t: 1 / (1 + math.exp(-t))
    p = predict_mean(model, opt, {"calls": 0}, {}, x, samples=2, rng=np.random.default_rng(0))
    q = predict_mean(model, opt, {"calls": 0}, {}, x, samples=2, rng=np.random.default_rng(0),
                     average="logits")
    np.testing.assert_allclose(p[0, 0], (sig(4) + 0.5) / 2, rtol=1e-12)
    np.testing.assert_allclose(q[0, 0], sig(2), rtol=1e-12)
    assert q[0, 0] - p[0, 0] > 0.1


def test_mean_prediction_recalibrates_each_sample_with_its_own_weights():
    """bn_state_for gets the weights of each sampled network, in the generator's order."""
    model = Sequential(Dense(1, 2, name="fc"))
    sets = [{"fc.weight": np.array([[4.0], [0.0]])}, {"fc.weight": np.zeros((2, 1))}]
    seen = []
    predict_mean(model, TwoWeightSets(sets), {"calls": 0}, {}, np.ones((1, 1)), samples=2,
                 rng=np.random.default_rng(0), bn_state_for=lambda w: (seen.append(w), {})[1])
    assert len(seen) == 2 and seen[0] is sets[0] and seen[1] is sets[1]


def test_classes_link_averages_float32_logits_in_float64():
    """link='classes', average='logits': float32 logits of C = 3 samples (sets 0, 1, 0) are
    averaged in float64; reference: the float64 mean and softmax written out."""
    rng = np.random.default_rng(5)
    model = Sequential(Dense(6, 4, name="fc"))
    sets = [{"fc.weight": rng.standard_normal((4, 6)).astype(np.float32)} for _ in range(2)]
    x = rng.standard_normal((50, 6)).astype(np.float32)
    lg = [model.apply(sets[c], x, {}).astype(np.float64) for c in (0, 1, 0)]       # (50, 4) each
    mean = (lg[0] + lg[1] + lg[2]) / 3
    e = np.exp(mean - mean.max(axis=1, keepdims=True))
    got = predict_mean(model, TwoWeightSets(sets), {"calls": 0}, {}, x, samples=3,
                       rng=np.random.default_rng(0), average="logits", link="classes")
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-13, atol=0)


def test_one_logit_is_the_logit_of_class_one():
    """class_probs (link='classes'): a single logit f gives [1 - sigmoid(f), sigmoid(f)]."""
    sig2 = 1 / (1 + math.exp(-2.0))
    want = [[0.5, 0.5], [1 - sig2, sig2]]
    for logits in (np.array([0.0, 2.0]), np.array([[0.0], [2.0]], np.float32)):
        np.testing.assert_allclose(class_probs(logits), want, rtol=1e-7)
        np.testing.assert_allclose(apply_link(logits, "classes"), want, rtol=1e-7)
    assert class_probs(np.array([[0.0], [2.0]], np.float32)).dtype == np.float64


def test_predict_logits_of_no_rows_raises():
    model, opt, state, bn, x = setup(lam_init=1.0)
    with pytest.raises(ValueError, match="x has no rows"):
        predict_logits(model, opt.params(state), bn, x[:0])


def test_predictive_entropy():
    for k in (2, 3, 10):
        np.testing.assert_allclose(predictive_entropy(np.full((4, k), 1 / k)), math.log(k), rtol=1e-12)
    np.testing.assert_array_equal(predictive_entropy(np.eye(3)), 0.0)                 # 0 log 0 = 0
    binary = predictive_entropy(np.array([0.5, 0.0, 1.0, 0.2]))
    h = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    np.testing.assert_allclose(binary, [math.log(2), 0, 0, h], rtol=1e-12)
    np.testing.assert_allclose(predictive_entropy(np.array([[0.5], [0.2]])), [math.log(2), h], rtol=1e-12)
    assert predictive_entropy(np.array([[0.2, 0.8]])).shape == (1,)
    assert np.isnan(predictive_entropy(np.array([[np.nan, np.nan], [0.5, 0.5]]))).tolist() == [True, False]
    for bad, says in [(np.array(0.5), "shape"), (np.zeros((2, 2, 2)), "shape"), (np.array([1.2]), r"\[0, 1\]"),
                      (np.array([[-0.1, 1.1]]), r"\[0, 1\]")]:
        with pytest.raises(ValueError, match="predictive_entropy: probs must .*" + says):
            predictive_entropy(bad)


@pytest.mark.parametrize("kw, match", [
    (dict(samples=0), r"samples must be an integer in \[1, inf\)"),
    (dict(samples=2.5), r"samples must be an integer in \[1, inf\)"),
    (dict(average="mean"), r"average must be one of 'prob', 'logits'"),
    (dict(link="relu"), r"link must be one of 'softmax', 'sigmoid'"),
    (dict(batch_size=0), r"batch_size must be an integer in \[1, inf\)"),
    (dict(rng=None), r"predict_mean: rng must be a numpy.random.Generator, got NoneType"),
])
def test_bad_arguments_raise(kw, match):
    model, opt, state, bn, x = setup(lam_init=1.0)
    args = {"samples": 2, "rng": np.random.default_rng(0), **kw}
    with pytest.raises(ValueError, match=match):
        predict_mean(model, opt, state, bn, x, **args)


@pytest.mark.parametrize("call,says", [
    (lambda: class_probs(None), "class_probs: logits must be real numbers of shape (n, K), (n, 1) or (n,), got object ()"),
    (lambda: class_probs(np.zeros((2, 2, 2))), "got float64 (2, 2, 2)"),
    (lambda: class_probs(np.zeros((2, 0))), "got float64 (2, 0)"),
    (lambda: class_probs(np.ones((2, 2), complex)), "got complex128 (2, 2)"),
    (lambda: apply_link(0.0, "classes"), "class_probs: logits must be real numbers"),
    (lambda: predictive_entropy(np.array([[0.5 + 1j, 0.5]])), "predictive_entropy: probs must hold real numbers, got dtype complex128"),
    (lambda: predictive_entropy(np.array(["a"])), "predictive_entropy: probs must hold real numbers, got dtype <U1"),
])
def test_class_probs_and_entropy_refuse_inputs_of_the_wrong_kind(call, says):
    """These raised IndexError (0-d), failed inside NumPy, or returned a complex entropy or a
    softmax over the last axis of a 3-D array."""
    with pytest.raises(ValueError, match=re.escape(says)):
        call()


def test_predict_logits_refuses_a_0d_input():
    model, opt, state, bn, _ = setup(1.0)
    for x in (1.0, None):                                 # raised TypeError: len() of unsized object
        with pytest.raises(ValueError, match=re.escape("predict_logits: x must have shape (n, ...), got ()")):
            predict_logits(model, opt.params(state), bn, x)


def test_predictions_refuse_a_model_optimizer_or_recalibration_of_the_wrong_kind():
    model, opt, state, bn, x = setup(1.0)
    with pytest.raises(ValueError, match="predict_logits: model must be a Sequential .*got NoneType"):
        predict_logits(None, opt.params(state), bn, x)                  # were AttributeError
    with pytest.raises(ValueError, match=r"predict_mode: opt must be an optimizer with params\(state\), got NoneType"):
        predict_mode(model, None, state, bn, x)
    with pytest.raises(ValueError, match=r"predict_mean: opt must be an optimizer with sample_params\(state\)"):
        predict_mean(model, None, state, bn, x, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="predict_mean: bn_state_for must be None or a function .*got int"):
        predict_mean(model, opt, state, bn, x, rng=np.random.default_rng(0), bn_state_for=5)   # was TypeError
