"""Shared test settings: hypothesis profiles and the data root."""
import os
from pathlib import Path

import refbinn  # noqa: F401  first: it sets the thread pools' idle spin before numpy loads, as in use
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# deadline=None: Numba compiles on first call. CI derandomizes so a run is reproducible.
settings.register_profile("dev", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # Numba's pedantic SSA check when it inlines the dtype-dispatched exp/log/tanh of the
    # BayesBiNN kernels (refbinn/optim/_bayesbinn_kernels.py says why the code is right)
    config.addinivalue_line("filterwarnings", "ignore::numba.core.errors.NumbaIRAssumptionWarning")


def _data_root():
    """The first of REFBINN_DATA, the per-user cache and ../shared/data that holds mnist/."""
    from refbinn.data import candidate_roots
    roots = [r for r, _ in candidate_roots()] + [REPO.parent / "shared" / "data"]
    return next((r.resolve() for r in roots if (r / "mnist").is_dir()), None)


@pytest.fixture(scope="session")
def data_root():
    """A data root holding MNIST (REFBINN_DATA, the per-user cache, ../shared/data); skips if none."""
    root = _data_root()
    if root is None:
        pytest.skip("MNIST not found in $REFBINN_DATA, ~/.cache/refbinn or ../shared/data: "
                    "run `refbinn download mnist` (or set REFBINN_DATA to a folder holding mnist/)")
    return root


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
