"""Every python block of README.md runs, in order, in one namespace (the API tour stays correct)."""
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    code = blocks("python")
    assert code, "README.md has no python block"
    ns = {"__name__": "readme"}
    for i, block in enumerate(code):
        exec(compile(block, f"README.md [python block {i + 1}]", "exec"), ns)


def test_readme_test_command_is_the_ci_command():
    """The README's test command is what .ci/run runs (pip line and pytest line)."""
    test_cmd = [b.strip() for b in blocks("bash") if "pytest" in b]
    assert len(test_cmd) == 1, "README.md should have exactly one bash block with the test command"
    parts = [p.strip() for p in test_cmd[0].split("&&")]
    assert parts[0] == "python3 -m venv .venv" and parts[1] == ". .venv/bin/activate"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert parts[2] in ci, f"{parts[2]!r} is not a line of .ci/run"
    assert parts[3] in ci, f"{parts[3]!r} is not a line of .ci/run"
    assert shlex.split(parts[2])[:3] == ["pip", "install", "-e"]


def test_readme_links_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to a missing file: {target}"
