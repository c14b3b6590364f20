"""Shared test settings: hypothesis profiles and the data root."""
import os
from pathlib import Path

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


def _data_root():
    env = os.environ.get("REFBINN_DATA")
    if env:
        return Path(env).resolve()
    guess = REPO.parent / "shared" / "data"
    return guess if guess.is_dir() else None


@pytest.fixture(scope="session")
def data_root():
    """The shared data folder (REFBINN_DATA, else ../shared/data); skips if absent."""
    root = _data_root()
    if root is None or not (root / "mnist").is_dir():
        pytest.skip("shared data not found: set REFBINN_DATA=../shared/data")
    return root


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
