"""The setup step of the README's two commands (runs/setup.sh): it finds what is present and installs
nothing then; it names what is missing."""
import os
import subprocess
import sys


def _venv(path, system_site_packages):
    flags = ["--system-site-packages"] if system_site_packages else []
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", *flags, str(path)], check=True)
    return {**os.environ, "VIRTUAL_ENV": str(path), "PATH": f"{path}/bin:{os.environ['PATH']}"}


def _snapshot(path):
    return sorted((str(p), p.stat().st_mtime_ns) for p in path.rglob("*"))


def test_setup_changes_nothing_when_the_requirements_are_present(tmp_path, root):
    env = _venv(tmp_path / "venv", system_site_packages=True)  # sees this interpreter's packages
    before = _snapshot(tmp_path)
    r = subprocess.run(["bash", "-c", "source runs/setup.sh && command -v python"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "installing" not in r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(tmp_path / "venv" / "bin" / "python")  # the active env first
    assert _snapshot(tmp_path) == before


def test_setup_names_what_is_missing(tmp_path, root):
    env = _venv(tmp_path / "bare", system_site_packages=False)
    r = subprocess.run(["bash", "-c", "source runs/setup.sh"], cwd=root, env={**env, "AR2DIFF_SETUP": "check"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    for name in ("torch>=2.4", "numpy", "tiktoken", "sacrebleu", "pytest"):
        assert name in r.stderr
    assert str(tmp_path / "bare") in r.stderr
