"""Send binary parameters to one optimizer and real parameters to another (optax
``partition``, larq ``CaseOptimizer``).

    binary: {k : kinds[k] == "binary"}  ->  binary_opt    (BayesBiNN, STE, Bop, PMF)
    real:   every other parameter       ->  real_opt      (Adam)

Noise and gradients, for S passes per step (BayesBiNN with S Monte Carlo samples):

- ``sample`` returns the binary optimizer's noise list unchanged, so a training
  loop (or a port fed the saved noise) sees the same structure as with the binary
  optimizer alone. The real optimizer must be deterministic (it may not define
  its own ``sample``); it takes no noise.
- ``forward_params(state, n)`` = the binary optimizer's weights for noise entry n,
  merged with the real optimizer's current parameters (the same for every n).
- ``update`` gives the binary optimizer the S gradient dicts of its parameters
  with the noise (and its part of ``weights``, when given), and the real optimizer ONE dict, the mean over the S passes of
  its parameters' gradients: the real parameters are shared by all passes, so the
  mean is the Monte Carlo estimate of the gradient of the expected loss.

Merged dicts follow the order of ``kinds`` (``Sequential.kinds`` is the model's
parameter order).
"""
from __future__ import annotations

from typing import NamedTuple

from ..nn.base import BINARY, REAL
from .base import Optimizer, as_grad_list, check_finite, check_param_dict, check_state_type, mean_grads


class PartitionState(NamedTuple):
    """Partition's state.

    Attributes
    ----------
    binary, real : tuple
        The states of the binary parameters' and of the real parameters' optimizers.
    """
    binary: tuple
    real: tuple


class Partition(Optimizer):
    """Two optimizers, one per kind of parameter; see the module docstring.

    Parameters
    ----------
    binary_opt : Optimizer
        For the parameters tagged ``"binary"``.
    real_opt : Optimizer
        For the parameters tagged ``"real"``; must not draw noise.
    kinds : dict name -> "binary" | "real"
        ``Sequential.kinds``; its order is the order of merged parameter dicts.

    ``update(..., lr=(binary_lr, real_lr))``: either entry may be None (the
    optimizer's own lr); ``lr=None`` means both are None.
    """

    def __init__(self, binary_opt, real_opt, kinds):
        for name, opt in (("binary_opt", binary_opt), ("real_opt", real_opt)):
            if not isinstance(opt, Optimizer):
                raise TypeError(f"{name} must be a refbinn Optimizer, got {type(opt).__name__}")
        if type(real_opt).sample is not Optimizer.sample:
            raise ValueError(f"real_opt must be deterministic (draw no noise); "
                             f"{type(real_opt).__name__} defines its own sample()")
        try:
            kinds = dict(kinds)
        except (TypeError, ValueError):
            raise ValueError(f"kinds must be a dict name -> '{BINARY}' or '{REAL}' (Sequential.kinds), "
                             f"got {type(kinds).__name__}") from None
        bad = {k: v for k, v in kinds.items() if v not in (BINARY, REAL)}
        if bad:
            raise ValueError(f"kinds values must be '{BINARY}' or '{REAL}', got {bad}")
        self.binary_opt, self.real_opt, self.kinds = binary_opt, real_opt, kinds

    # -- splitting and merging ------------------------------------------------
    def _split(self, d, what):
        unknown = [k for k in d if k not in self.kinds]
        if unknown:
            raise ValueError(f"Partition: {what} has parameters not in kinds: {unknown}")
        return ({k: v for k, v in d.items() if self.kinds[k] == BINARY},
                {k: v for k, v in d.items() if self.kinds[k] == REAL})

    def _merge(self, binary, real):
        both = {**binary, **real}
        return {k: both[k] for k in self.kinds if k in both}

    # -- protocol ---------------------------------------------------------------
    def init(self, params, rng=None):
        pb, pr = self._split(check_param_dict(params, "Partition"), "params")
        return PartitionState(self.binary_opt.init(pb, rng), self.real_opt.init(pr, rng))

    def sample(self, state, rng):
        return self.binary_opt.sample(check_state_type(state, PartitionState, "Partition").binary, rng)

    def forward_params(self, state, noise=None):
        check_state_type(state, PartitionState, "Partition")
        return self._merge(self.binary_opt.forward_params(state.binary, noise),
                           self.real_opt.forward_params(state.real, None))

    def update(self, grads, state, noise=None, *, lr=None, weights=None):
        check_state_type(state, PartitionState, "Partition")
        grads = as_grad_list(grads, noise)
        check_finite(grads)
        if lr is None:
            lr_b = lr_r = None
        else:
            try:
                lr_b, lr_r = lr
            except (TypeError, ValueError):
                raise ValueError(f"lr must be None or a pair (binary_lr, real_lr), got {lr!r}") from None
        split = [self._split(g, f"gradient dict {s}") for s, g in enumerate(grads)]
        real_params = self.real_opt.params(state.real)
        g_real = mean_grads([r for _, r in split], real_params, "Partition (real)")
        w_b = None if weights is None else [self._split(w, f"weights dict {s}")[0]
                                            for s, w in enumerate(as_grad_list(weights, noise, "weights"))]
        new_b = self.binary_opt.update([b for b, _ in split], state.binary, noise, lr=lr_b, weights=w_b)
        new_r = self.real_opt.update(g_real, state.real, None, lr=lr_r)
        return PartitionState(new_b, new_r)

    def params(self, state):
        check_state_type(state, PartitionState, "Partition")
        return self._merge(self.binary_opt.params(state.binary), self.real_opt.params(state.real))

    def sample_params(self, state, rng):
        """Binary weights drawn by the binary optimizer's ``sample_params`` (if it has
        one; else its ``params``), merged with the real parameters.

        Parameters
        ----------
        state : PartitionState
            The current state.
        rng : numpy.random.Generator
            Passed to the binary optimizer's ``sample_params`` (unused when it has none).

        Returns
        -------
        dict name -> ndarray
            Every parameter, in the order of ``kinds``: the sampled (or mode) binary
            weights and the real optimizer's current weights.
        """
        fn = getattr(self.binary_opt, "sample_params", None)
        binary = fn(state.binary, rng) if fn is not None else self.binary_opt.params(state.binary)
        return self._merge(binary, self.real_opt.params(state.real))

    def config(self):
        return {"binary_opt": self.binary_opt, "real_opt": self.real_opt, "kinds": dict(self.kinds)}

