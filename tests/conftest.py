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


def _shown_ticklabels(axis):
    """Tick labels that are drawn: visible, non-empty, and at a tick inside the view interval."""
    tr = axis.get_transform()          # compare in scale coordinates (log axes)

    def scaled(v):
        with np.errstate(all="ignore"):
            return float(tr.transform(np.array([[v]]))[0, 0])
    lo, hi = sorted(scaled(v) for v in axis.get_view_interval())
    span = hi - lo
    out = []
    for tick in axis.get_major_ticks() + axis.get_minor_ticks():
        loc = tick.get_loc()
        if loc is None or not np.isfinite(scaled(loc)) or not (lo - 1e-9 * span <= scaled(loc) <= hi + 1e-9 * span):
            continue
        for t in (tick.label1, tick.label2):
            if t.get_visible() and t.get_text().strip():
                out.append(t)
    return out


def _text_boxes(fig):
    """(name, bbox) of every visible, non-empty text of a drawn figure."""
    out = []

    def add(kind, t):
        if t is not None and t.get_visible() and t.get_text().strip():
            out.append((f"{kind}: {t.get_text()!r}", t.get_window_extent()))
    if fig._suptitle is not None:
        add("suptitle", fig._suptitle)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for t in (ax.title, ax._left_title, ax._right_title):
            add("title", t)
        add("xlabel", ax.xaxis.label)
        add("ylabel", ax.yaxis.label)
        for axis in (ax.xaxis, ax.yaxis):
            for t in _shown_ticklabels(axis):
                add(f"tick of axis {id(axis)}", t)
        leg = ax.get_legend()
        if leg is not None:
            for t in leg.get_texts():
                add("legend", t)
    for leg in fig.legends:
        for t in leg.get_texts():
            add("legend", t)
    return out


@pytest.fixture
def assert_readable():
    """Check a figure as a reader would: no text outside the canvas (clipped), no two texts of
    different roles overlapping (titles, axis labels, tick labels, legends), every axis that shows
    numbers has a name, every colorbar a label."""
    def check(fig, overlap_tol=1.0):
        fig.canvas.draw()
        W, H = fig.bbox.width, fig.bbox.height
        boxes = _text_boxes(fig)
        for name, bb in boxes:
            assert bb.x0 >= -1 and bb.y0 >= -1 and bb.x1 <= W + 1 and bb.y1 <= H + 1, f"clipped {name}: {bb}"
        for i, (n1, b1) in enumerate(boxes):
            for n2, b2 in boxes[i + 1:]:
                if n1.startswith("tick") and n1.split(":")[0] == n2.split(":")[0]:
                    continue     # ticks of one axis: checked below, neighbour by neighbour
                ov_x = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
                ov_y = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
                assert not (ov_x > overlap_tol and ov_y > overlap_tol), f"{n1} overlaps {n2}"
        for ax in fig.axes:
            if not ax.get_visible() or not ax.axison:
                continue
            is_cbar = hasattr(ax, "_colorbar")
            for axis, lab in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
                shown = _shown_ticklabels(axis)
                if is_cbar:
                    continue
                if shown:
                    assert lab.strip(), f"axis with tick labels but no name in axes titled {ax.get_title()!r}"
            if is_cbar:
                lab = ax.get_ylabel() or ax.get_xlabel()
                assert lab.strip(), "colorbar without a label"
            # tick labels of one axis must not overlap each other either
            for axis in (ax.xaxis, ax.yaxis):
                bbs = sorted((t.get_window_extent() for t in _shown_ticklabels(axis)),
                             key=lambda b: (b.x0, b.y0))
                for j in range(len(bbs) - 1):
                    a, b = bbs[j], bbs[j + 1]
                    ox = min(a.x1, b.x1) - max(a.x0, b.x0)
                    oy = min(a.y1, b.y1) - max(a.y0, b.y0)
                    assert not (ox > overlap_tol and oy > overlap_tol), "tick labels overlap"
        return True
    return check


@pytest.fixture(scope="module")
def storage_case():
    """``(mdp, objective, policy0)`` of the flows whose storage files the tests write, damage
    and resume: lqr1d 21 states x 15 actions with noise, discounted 0.9, entropy 0.3."""
    import wgflow as wg
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15, noise=0.6)
    obj = wg.Discounted(0.9, entropy=0.3)
    pi0 = wg.Policy.gaussian(mdp, mean=1.0, std=0.8)
    return mdp, obj, pi0
