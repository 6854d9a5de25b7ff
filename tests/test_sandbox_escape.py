"""The sandbox against programs that try to pass without being right, to take the scoring down, or
to see what they should not: each test runs such a program and asserts its outcome (a failed
candidate, nothing left behind, the next candidate still scored). Where the kernel layer a test is
about cannot be set up here, it skips naming that kernel feature."""
import functools
import os
import sys
import tempfile

import pytest

from data import sandbox
from data.sandbox import _remove_tree, run_program, run_programs
from data.tasks import build_check, score, split_asserts

IS_ROOT = os.geteuid() == 0
ROW = {"id": 1, "input": "", "target": "def double(x):\n    return 2 * x\n", "test_setup_code": "",
       "test_list": ["assert double(3) == 6", "assert double(-1) == -2", "assert double([1]) == [1, 1]"]}
HUMANEVAL_ROW = {"id": "HumanEval/0", "input": "", "target": "", "entry_point": "double",
                 "prompt": "def double(x):\n", "test": "def check(candidate):\n    assert candidate(3) == 6, 'm'\n"
                 "    for x in range(3):\n        assert candidate(x) == 2 * x\n    assert candidate(0.5) == 1\n"}
WRONG = "def double(x):\n    return x\n"
# each makes the wrong `double` above pass the tests of the asserts that stay inside the process
CHEATS = {
    "frame nonce, os._exit(0)": WRONG + "import os, sys\nf = sys._getframe(0).f_back\n"
                                "print(next(v for v in f.f_locals.values() if isinstance(v, str) and len(v) == 32),\n"
                                "      flush=True)\nos._exit(0)\n",
    "settrace status": WRONG + "import sys\ndef tracer(frame, event, arg):\n"
                       "    if 'status' in frame.f_locals:\n        frame.f_locals['status'] = 0\n    return tracer\n"
                       "sys.settrace(tracer)\nsys._getframe(1).f_trace = tracer\n",
    "os._exit(0) early": WRONG + "import os\nos._exit(0)\n",
    "sys.exit(0) early": WRONG + "import sys\nsys.exit(0)\n",
    "always-equal int": "class Yes(int):\n    def __eq__(self, other):\n        return True\n"
                        "    __hash__ = int.__hash__\ndef double(x):\n    return Yes(0)\n",
    "always-equal list": "class Yes(list):\n    def __eq__(self, other):\n        return True\n"
                         "def double(x):\n    return Yes()\n",
    "object equal to anything": "class Any:\n    def __eq__(self, other):\n        return True\n"
                                "def double(x):\n    return Any()\n",
    "fake pass output": WRONG + "print('passed')\nprint('{\"passed\": true}')\n",
    "forged reports": WRONG + "import os\nfor fd in range(3, 64):\n    try:\n"
                      "        os.write(fd, b'[0, {\"int\": \"0x6\"}]\\n[1, {\"int\": \"-0x2\"}]\\n')\n"
                      "    except OSError:\n        pass\n",
    "replaced reporter": WRONG + "__sandbox_report__ = lambda i, v: None\n",
}


@functools.cache
def probe():
    return run_program("pass")


def needs_namespaces():
    """Skip, naming what the kernel refused, unless the mount and pid namespaces can be set up."""
    missing = [m for m in probe()["missing"] if m.startswith(("namespaces", "read-only"))]
    if missing:
        pytest.skip("no mount/pid namespaces (or read-only mounts) for the sandbox here: " + "; ".join(missing))


# ----------------------------------------------------------------------------- the verdict

def test_split_asserts_keeps_only_the_expression():
    code, expected = split_asserts("import math\nassert f(1) == (2, 'é')\nassert g(\n  3) == [1,\n 2]\n"
                                   "assert math.isclose(f(2), 1.0)\nassert f(x) == y\n")
    assert expected == [(2, "é"), [1, 2]]
    assert code == ("import math\n__sandbox_report__(0, (f(1)))\n__sandbox_report__(1, (g(\n  3)))\n"
                    "assert math.isclose(f(2), 1.0)\nassert f(x) == y\n")
    program, expected = build_check(HUMANEVAL_ROW, "    return 2 * x\n")
    assert expected == [6, 1]  # the assert in the loop stays in the program
    assert "== 6" not in program and "== 1\n" not in program and "assert candidate(x) == 2 * x" in program


@pytest.mark.parametrize("name", CHEATS)
def test_wrong_programs_cannot_pass(name):
    rows = [ROW, {**ROW, "id": 2}]
    result = score("pass@k", rows, {1: [CHEATS[name]], 2: [ROW["target"]]}, workers=2)
    assert result["results"] == {"1": [result["results"]["1"][0]], "2": ["passed"]}
    assert result["results"]["1"] != ["passed"] and result["pass@1"] == pytest.approx(50.0)


def test_correct_programs_pass_with_any_plain_value():
    """Subclasses of plain types are read as their base values (a namedtuple is a tuple, a Counter a
    dict), numbers compare as in Python (2 == 2.0 == True), floats and big ints keep every bit."""
    tests = ["assert f(0) == (1, 2)", "assert f(1) == {'a': 2}", "assert f(2) == 2", f"assert f(3) == {2 ** 200}",
             "assert f(4) == 0.30000000000000004", "assert f(5) == {1, 2}", "assert f(6) == b'xy'",
             "assert f(7) == [None, True, 'é', -0.0, 1j]", "assert f(8) == float('inf')"]
    code = ("import collections\nP = collections.namedtuple('P', 'x y')\n"
            "def f(i):\n    return [P(1, 2), collections.Counter('aa'), 2.0, 2 ** 200, 0.1 + 0.2,\n"
            "            frozenset({1, 2}), bytearray(b'xy'), [None, 1, 'é', 0.0, 1j], 1e999][i]\n")
    assert len(split_asserts("\n".join(tests))[1]) == 8  # float('inf') is not a literal: an assert
    row = {**ROW, "test_list": tests}
    result = score("pass@k", [row], {1: [code, code.replace("0.1 + 0.2", "0.3")]}, ks=(1,), workers=2)
    assert result["results"] == {"1": ["passed", "failed"]}  # 0.3 != 0.1 + 0.2


def test_unplain_values_fail():
    r = run_program("class T:\n    pass\n__sandbox_report__(0, T())\n", expected=[0])
    wrong = run_program("__sandbox_report__(0, 1)\n__sandbox_report__(1, 2)\n", expected=[1, 3])
    assert wrong["status"] == "failed" and wrong["wrong"] == [1] and wrong["returncode"] == 0
    assert not r["passed"] and "must be a plain value" in r["stderr"] and r["wrong"] == [0]
    cyclic = run_program("x = []\nx.append(x)\n__sandbox_report__(0, x)\n", expected=[[]])
    assert not cyclic["passed"] and "contains itself" in cyclic["stderr"] and cyclic["wrong"] == [0]


# ----------------------------------------------------------------------------- scoring survives

def deep_tree(depth):
    """Program text: a `depth`-deep chain of directories in the work dir, with odd names and files
    without write permission (the guard is off: it refuses chmod)."""
    return ("import os\nprint(os.getcwd())\nfd = os.open('.', os.O_RDONLY)\n"
            f"for i in range({depth}):\n    os.mkdir('d', dir_fd=fd)\n"
            "    os.close(os.open('odd\\nname \\udcff', os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n"
            "    new = os.open('d', os.O_RDONLY, dir_fd=fd)\n    os.chmod(fd, 0o500)\n    os.close(fd)\n"
            "    fd = new\nassert False\n")


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "no_namespaces"])
def test_deep_tree_is_removed_and_scoring_goes_on(namespaces):
    if namespaces:
        needs_namespaces()
    # on the host's disk (no namespaces) 1,200 levels are past the recursion limit and PATH_MAX already
    results = run_programs([deep_tree(3000 if namespaces else 1200), "import os\nprint(os.getcwd())\n"],
                           workers=1, guard=False, namespaces=namespaces, timeout=60)
    assert results[0]["status"] == "failed" and "AssertionError" in results[0]["stderr"], results[0]
    assert results[1]["passed"]
    for r in results:  # no work dir is left behind
        workdir = r["stdout"].strip()
        assert workdir.startswith(os.path.join(tempfile.gettempdir(), "sandbox_")) and not os.path.lexists(workdir)


def test_remove_tree_never_raises(tmp_path):
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # memory is faster than a disk here
    top = __import__("pathlib").Path(tempfile.mkdtemp(dir=shm or tmp_path)) / "top"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    # deeper than the recursion limit (which torch.compile, run by earlier tests, may have raised) and than
    # PATH_MAX (4 bytes a level): removable by descriptor only
    depth = max(1200, sys.getrecursionlimit() + 100)
    assert depth > sys.getrecursionlimit() and 4 * depth > os.pathconf("/", "PC_PATH_MAX")
    for i in range(depth):
        os.mkdir(b"d\n\xff", dir_fd=fd)
        os.close(os.open(b"f \xfe", os.O_CREAT | os.O_WRONLY, 0, dir_fd=fd))
        os.symlink("/etc/passwd", "link", dir_fd=fd)  # removed, not followed
        new = os.open(b"d\n\xff", os.O_RDONLY, dir_fd=fd)
        os.chmod(fd, 0o500)
        os.close(fd)
        fd = new
    os.close(fd)
    _remove_tree(str(top))
    assert not top.exists() and os.path.exists("/etc/passwd")
    _remove_tree(str(top))  # already gone: nothing happens
    _remove_tree(str(top.parent))


@pytest.mark.parametrize("guard", [True, False], ids=["guard", "no_guard"])
def test_disk_is_bounded_in_total(guard):
    needs_namespaces()
    fill = ("import os\nn = 0\ntry:\n    while True:\n        with open(f'f{n}', 'wb') as f:\n"
            "            f.write(b'x' * (1 << 20))\n        n += 1\nexcept OSError as e:\n    print(n, e.errno)\n"
            "assert False, 'the disk is full'\n")
    results = run_programs([fill, "assert True\n"], workers=1, disk_mb=8, max_file_mb=4, guard=guard)
    written, errno = map(int, results[0]["stdout"].split())
    assert written <= 8 and errno == 28 and results[0]["status"] == "failed"  # ENOSPC at the total
    assert results[1]["passed"]


def test_process_tree_is_bounded():
    """Without the guard the program forks as it likes: at most max_procs processes, each within
    memory_mb of address space (with a cgroup, the whole tree within memory_mb)."""
    needs_namespaces()
    tree = ("import os, time\nn = 0\ntry:\n    while n < 100:\n        if os.fork() == 0:\n"
            "            try:\n                x = bytearray(300 << 20)\n            except MemoryError:\n"
            "                os._exit(3)\n            time.sleep(30)\n            os._exit(0)\n        n += 1\n"
            "except OSError:\n    pass\nprint(n, flush=True)\nstatus = os.wait()[1] if n else 3 << 8\n"
            "print(os.waitstatus_to_exitcode(status))\nassert False\n")
    results = run_programs([tree, "assert True\n"], workers=1, max_procs=6, memory_mb=256, guard=False,
                           timeout=10)
    forked, first_exit = map(int, results[0]["stdout"].split())  # uid 65534's other processes count
    assert forked <= 6 and first_exit == 3 and results[0]["status"] == "failed", results[0]
    assert results[1]["passed"]


def test_cgroup_caps_the_tree_memory():
    """Four processes of 100 MB each fit their rlimits, not a 256 MB cgroup: one is killed."""
    if not any(layer.startswith("cgroup") for layer in probe()["layers"]):
        pytest.skip("no cgroup v2 with the memory and pids controllers delegated here: "
                    + "; ".join(m for m in probe()["missing"] if m.startswith("cgroup")))
    tree = ("import os, time\npids = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
            "        x = bytearray(100 << 20)\n        x[::4096] = b'x' * len(x[::4096])\n"
            "        time.sleep(2)\n        os._exit(0)\n    pids.append(pid)\n"
            "assert all(os.waitpid(p, 0)[1] == 0 for p in pids)\n")
    r = run_program(tree, memory_mb=256, guard=False, timeout=10)
    assert not r["passed"] and r["status"] == "failed", r


# ----------------------------------------------------------------------------- as outside

@pytest.mark.parametrize("kill, name", [("signal.raise_signal(signal.SIGTERM)", "SIGTERM"),
                                        ("os.kill(os.getpid(), signal.SIGKILL)", "SIGKILL"),
                                        ("signal.alarm(1)\ntime.sleep(3)", "SIGALRM")])
def test_own_signals_act_as_outside(kill, name):
    """The program is not its namespace's pid 1, which ignores signals without a handler."""
    needs_namespaces()
    r = run_program(f"import os, signal, time\nassert os.getpid() != 1\n{kill}\n", guard=False)
    assert not r["passed"] and r["status"] == f"signal {name}", r


def test_only_the_interpreter_and_work_dir_are_seen(root, tmp_path):
    needs_namespaces()
    secret = tmp_path / "answers.txt"
    secret.write_text("42")
    hidden = [str(root), str(root.parent / "shared" / "data"), str(secret), "/home", "/etc/passwd", "/var", "/run",
              os.path.expanduser("~/.bashrc"), os.path.join(sys.base_prefix, "..", "..")]
    parents = [p for p in (os.path.dirname(sys.base_prefix.rstrip("/")),) for _ in [0]]
    code = (f"import os, hashlib, json\nprint(json.dumps([[p for p in {hidden!r} if os.path.exists(p)],\n"
            f"                  sorted(os.listdir('/')), os.listdir({parents[0]!r})]))\n"
            "assert hashlib.sha256(b'').hexdigest().startswith('e3b0') and os.listdir('.') == []\n")
    r = run_program(code, guard=False)
    assert r["passed"], r
    seen, top, beside = __import__("json").loads(r["stdout"])
    assert os.path.exists(root) and secret.exists()
    interpreter_top = sys.base_prefix.strip("/").split("/")[0]
    assert set(seen) <= {os.path.join(sys.base_prefix, "..", "..")} and str(root) not in seen
    assert set(top) <= {"dev", "etc", "lib", "lib32", "lib64", "proc", "tmp", "usr", interpreter_top}
    assert beside == [os.path.basename(sys.base_prefix.rstrip("/"))]  # nothing beside the interpreter


def test_the_real_file_io_cannot_write_outside(tmp_path):
    """The guard's FileIO yields to its base class; the read-only root holds then."""
    needs_namespaces()
    target = os.path.join(tempfile.gettempdir(), f"sandbox_escape_{os.getpid()}")
    r = run_program(f"import _io\n_io.FileIO.__mro__[1]({target!r}, 'w').write(b'pwned')\n")
    assert not r["passed"] and "Read-only file system" in r["stderr"] and not os.path.exists(target)


def test_timeout_must_be_positive():
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="timeout must be > 0 seconds"):
            score("pass@k", [ROW], {1: [ROW["target"]]}, timeout=bad)


def test_without_namespaces_the_same_modules_import_and_the_warning_says_what_is_lost():
    code = "import hashlib, json, fractions, decimal, statistics\nassert hashlib.md5(b'').hexdigest()[:4] == 'd41d'\n"
    r = run_program(code, namespaces=False)
    assert r["passed"], r["stderr"]
    lost = next(m for m in r["missing"] if m.startswith("namespaces"))
    for what in ("read every file", "world-writable", "network", "fill the disk"):
        assert what in lost
    if IS_ROOT:
        assert f"uid {sandbox.NOBODY}" in r["layers"]
