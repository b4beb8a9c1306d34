"""Shared fixtures for the wgflow test suite."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A seeded generator: every test that draws numbers is reproducible."""
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _strict_floating_point():
    """Turn silent NaN/inf production (overflow, 0/0, x/0, invalid casts) into errors."""
    old = np.seterr(all="raise", under="ignore")
    try:
        yield
    finally:
        np.seterr(**old)


def pytest_configure(config):
    # `slow` is declared in setup.cfg; registering it again keeps --strict-markers happy when
    # the tests are run with another configuration file.
    config.addinivalue_line("markers", "slow: longer tests (still run in CI)")
