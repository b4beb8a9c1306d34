"""Fixtures of the figure tests."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    """Close every figure a test drew (figures are kept open by pyplot until closed)."""
    yield
    plt.close("all")
