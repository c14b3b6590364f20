"""Gradient estimators for a mean-field Bernoulli posterior (Lemma 1, REINFORCE, exact
enumeration, the relaxed objective) and the small problems they are checked on."""
from .methods import (MAX_ENUM_DIM, exact_expected_loss, exact_gradient, lemma1, logcosh,
                      logistic_noise, mean_and_se, reinforce, relaxed_objective, relaxed_objective_grad,
                      sign_vectors)
from .problems import tanh_mlp, teacher_problem
