"""The setup step of the README's two commands (runs/setup.sh): it finds what is present and installs
nothing then; it names what is missing."""
import os
import site
import subprocess
import sys


def _venv(path, with_our_packages):
    """A scratch virtual environment, active; with_our_packages: it sees this interpreter's packages (a .pth
    file, which works whether this interpreter is itself a venv or not)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    if with_our_packages:
        lib = next((path / "lib").glob("python*/site-packages"))
        (lib / "ours.pth").write_text("\n".join(site.getsitepackages() + [site.getusersitepackages()]) + "\n")
    return {**os.environ, "VIRTUAL_ENV": str(path), "PATH": f"{path}/bin:{os.environ['PATH']}"}


def _snapshot(path):
    return sorted((str(p), p.stat().st_mtime_ns) for p in path.rglob("*"))


def test_setup_changes_nothing_when_the_requirements_are_present(tmp_path, root):
    env = _venv(tmp_path / "venv", with_our_packages=True)
    before = _snapshot(tmp_path)
    r = subprocess.run(["bash", "-c", "source runs/setup.sh && command -v python"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "installing" not in r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(tmp_path / "venv" / "bin" / "python")  # the active env first
    assert _snapshot(tmp_path) == before


def test_setup_names_what_is_missing(tmp_path, root):
    env = _venv(tmp_path / "bare", with_our_packages=False)
    r = subprocess.run(["bash", "-c", "source runs/setup.sh"], cwd=root, env={**env, "AR2DIFF_SETUP": "check"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    for name in ("torch>=2.4", "numpy", "tiktoken", "sacrebleu", "pytest"):
        assert name in r.stderr
    assert str(tmp_path / "bare") in r.stderr
