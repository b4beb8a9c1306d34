"""Tests of wgflow.plot.animation: GIF through pillow, MP4 only with ffmpeg."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import wgflow as wg  # noqa: E402
import wgflow.plot as wplot  # noqa: E402
from wgflow.errors import ValidationError  # noqa: E402


@pytest.fixture(scope="module")
def traj():
    mdp = wg.problems.get("pendulum", n_theta=8, n_omega=7, n_actions=5)
    return wg.flow(mdp, wg.Discounted(0.8, entropy=1.0), wg.Policy.uniform(mdp), scheme="pmd",
                   t_end=3.0, progress=False)


def test_gif_frames(tmp_path, traj):
    p = wplot.animate_flow(traj, tmp_path / "f.gif", J_star=traj.J[-1] - 1.0, max_frames=6, fps=5)
    im = Image.open(p)
    assert im.format == "GIF" and im.n_frames == 6
    assert im.info["duration"] == 200
    frames = []
    for k in range(im.n_frames):
        im.seek(k)
        frames.append(np.asarray(im.convert("RGB"), dtype=float))
    assert all(f.shape == frames[0].shape for f in frames)
    # the policy moves: the first and last frames differ
    assert np.abs(frames[0] - frames[-1]).mean() > 0.5


def test_1d_states_and_bad_suffix(tmp_path):
    mdp = wg.problems.get("lqr1d", n_states=9, n_actions=7)
    tr = wg.flow(mdp, wg.Discounted(0.8, entropy=0.5), wg.Policy.uniform(mdp), scheme="pmd", t_end=2.0,
                 progress=False)
    p = wplot.animate_flow(tr, tmp_path / "g.gif", max_frames=3)
    assert Image.open(p).n_frames == 3
    with pytest.raises(ValidationError, match=".gif or .mp4"):
        wplot.animate_flow(tr, tmp_path / "g.avi")


@pytest.mark.skipif(wplot.ffmpeg_available(), reason="ffmpeg is installed here")
def test_mp4_without_ffmpeg_says_so(tmp_path, traj):
    with pytest.raises(ValidationError, match="ffmpeg"):
        wplot.animate_flow(traj, tmp_path / "f.mp4")


def test_mp4_frames_are_piped_to_ffmpeg_as_raw_rgb(tmp_path, traj, monkeypatch):
    # a stand-in ffmpeg that records what it is given: the size, the frame rate, the raw bytes
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!" + __import__("sys").executable + "\n"
                    "import sys\n"
                    "a = sys.argv\n"
                    "data = sys.stdin.buffer.read()\n"
                    "w, h = map(int, a[a.index('-s') + 1].split('x'))\n"
                    "open(a[-1], 'w').write(f\"{w} {h} {a[a.index('-r') + 1]} {len(data)} {a[a.index('-pix_fmt') + 1]}\")\n")
    fake.chmod(0o755)
    monkeypatch.setitem(matplotlib.rcParams, "animation.ffmpeg_path", str(fake))
    assert wplot.ffmpeg_available()
    p = wplot.animate_flow(traj, tmp_path / "f.mp4", max_frames=5, fps=4)
    w, h, fps, nbytes, fmt = p.read_text().split()
    assert fmt == "rgb24" and fps == "4"
    assert int(nbytes) == 5 * int(w) * int(h) * 3
