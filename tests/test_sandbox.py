"""The code sandbox: passing and failing programs, real MBPP problems, the standard library, and
hostile programs contained.

Each hostile program runs with the guard on, and once more with the guard off, to check that the
kernel and OS layers alone (namespaces, read-only mounts, rlimits, session kill, uid 65534) contain
it too; the guard-off runs skip, naming the missing kernel feature, where the machine cannot set
those layers up. As root, the same programs also run under an evaluator that is an ordinary user.
"""
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from data import sandbox
from data.mbpp.prepare import make_row
from data.sandbox import run_program, run_programs
from data.tasks import score

IS_ROOT = os.geteuid() == 0
STDLIB = ("abc argparse array ast base64 binascii bisect calendar cmath collections contextlib copy csv "
          "dataclasses datetime decimal difflib enum fractions functools hashlib heapq hmac html io "
          "itertools json math numbers operator pathlib pprint queue random re secrets shlex statistics "
          "string struct tempfile textwrap time typing unicodedata uuid zlib").split()
STDLIB_PROGRAM = (f"import {', '.join(STDLIB)}\n"
                  "assert hashlib.sha256(b'abc').hexdigest().startswith('ba7816bf')\n"
                  "assert json.loads(json.dumps({'a': [1, 2]})) == {'a': [1, 2]}\n"
                  "assert fractions.Fraction(1, 3) + fractions.Fraction(1, 6) == fractions.Fraction(1, 2)\n"
                  "assert decimal.Decimal('0.1') + decimal.Decimal('0.2') == decimal.Decimal('0.3')\n"
                  "assert statistics.median([3, 1, 2]) == 2 and zlib.crc32(b'') == 0\n"
                  "fd, path = tempfile.mkstemp()\nos = __import__('os')\nos.write(fd, b'x')\n"
                  "os.makedirs('a/b')\nassert os.path.dirname(path) == os.getcwd()\n")


def world_traversable(path):
    """True if every directory from `path` up to / can be entered by any user."""
    return all(os.stat(p).st_mode & 0o001 for p in [path, *map(str, __import__("pathlib").Path(path).parents)])


@functools.cache
def missing_kernel_layers():
    """What the kernel refused the sandbox here, but a cgroup (tests/test_sandbox_escape.py)."""
    return [m for m in run_program("pass")["missing"] if not m.startswith("cgroup")]


def needs_kernel_layers():
    """Skip (naming what the kernel refused) unless the sandbox gets all its kernel layers here."""
    if missing_kernel_layers():
        pytest.skip("no kernel layers for the sandbox here: " + "; ".join(missing_kernel_layers()))


# with the guard off only the OS and kernel layers protect: uid 65534 (root) or the namespaces
GUARD = [True, pytest.param(False, id="no_guard")]


def needs_os_layers(guard):
    if not guard and not IS_ROOT:
        needs_kernel_layers()


def world_writable_dirs(tmp_path):
    """Directories outside the work dir that any user may write: under /tmp (tmp_path), /var/tmp
    and /dev/shm (those that exist); removed by the caller."""
    dirs = [tmp_path / "open"]
    dirs[0].mkdir()
    for parent in ("/var/tmp", "/dev/shm"):
        if os.path.isdir(parent) and os.access(parent, os.W_OK):
            dirs.append(tempfile.mkdtemp(dir=parent, prefix="sandbox_test_"))
    for d in dirs:
        os.chmod(d, 0o1777)
    return [str(d) for d in dirs]


def live_members(pgid):
    """Pids of processes in group `pgid` that are not zombies (zombies await their reaper)."""
    pids = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)"
        except (OSError, IndexError):
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            pids.append(int(name))
    return pids


def gone(pgid, seconds=2.0):
    """True once group `pgid` has no live member, within `seconds`: SIGKILL is immediate, the exits
    are not (the init of a pid namespace finishes after its last process)."""
    deadline = time.time() + seconds
    while live_members(pgid) and time.time() < deadline:
        time.sleep(0.05)
    return not live_members(pgid)


def test_passing_failing_and_output():
    ok = run_program("def f(x):\n    return 2 * x\nprint('hello')\nassert f(2) == 4\n")
    assert ok["passed"] and ok["status"] == "passed" and ok["stdout"] == "hello\n"
    bad = run_program("assert 1 + 1 == 3\n")
    assert not bad["passed"] and bad["status"] == "failed" and "AssertionError" in bad["stderr"]
    syntax = run_program("def f(:\n")
    assert not syntax["passed"] and "SyntaxError" in syntax["stderr"]
    loud = run_program("print('x' * 100000)\n", max_output=100)
    assert loud["passed"] and len(loud["stdout"]) < 200 and "truncated" in loud["stdout"]
    # its own directory is writable (and empty at the start)
    own = run_program("import os\nassert os.listdir('.') == []\n"
                      "open('scratch.txt', 'w').write('x')\nassert open('scratch.txt').read() == 'x'\n")
    assert own["passed"], own["stderr"]


def test_run_programs_keeps_order():
    programs = [f"print({i})\nassert {i} % 3 != 0\n" for i in range(6)]
    results = run_programs(programs, workers=2)
    assert [r["stdout"].strip() for r in results] == [str(i) for i in range(6)]
    assert [r["passed"] for r in results] == [i % 3 != 0 for i in range(6)]


def test_mbpp_references_pass_and_wrong_code_fails(shared_data):
    with open(shared_data / "mbpp" / "mbpp.jsonl") as f:
        problems = {p["task_id"]: p for p in map(json.loads, f)}
    # 4 (heapq) and 7 (re) import modules; 367 and 927 have test_setup_code using the solution's class
    rows = [make_row(problems[i]) for i in (2, 4, 7, 367, 927)]
    assert rows[3]["test_setup_code"] and rows[4]["test_setup_code"]
    wrong = {2: "def similar_elements(a, b):\n    return tuple(set(a) | set(b))\n",
             4: "def heap_queue_largest(nums, n):\n    return sorted(nums)[:n]\n",
             7: "def find_char_long(text):\n    return text.split()\n",
             367: problems[367]["code"].replace("<= 1", "<= 2"),
             927: "class Node:\n    def __init__(self, data):\n        self.left = self.right = None\n"
                  "def max_height(node):\n    return 3\n"}
    preds = {row["id"]: [row["target"], wrong[row["id"]]] for row in rows}
    result = score("pass@k", rows, preds, ks=(1, 2), workers=2)
    assert result["results"] == {str(r["id"]): ["passed", "failed"] for r in rows}
    assert result["pass@1"] == pytest.approx(50.0) and result["pass@2"] == pytest.approx(100.0)
    assert result["samples"] == 10 and result["missing"] == 0 and result["unknown"] == 0


def test_mbpp_missing_and_unknown_predictions(shared_data, capsys):
    with open(shared_data / "mbpp" / "mbpp.jsonl") as f:
        problems = {p["task_id"]: p for p in map(json.loads, f)}
    rows = [make_row(problems[i]) for i in (2, 17)]
    result = score("pass@k", rows, {"2": [rows[0]["target"]], 9999: ["pass"]}, workers=1)
    assert result["pass@1"] == pytest.approx(50.0)  # 17 has no completion: counted as wrong
    assert result["missing_ids"] == [17] and result["unknown_ids"] == [9999]
    assert "9999" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the standard library

def test_standard_library_imports():
    if IS_ROOT and not world_traversable(os.path.dirname(os.__file__)):
        needs_kernel_layers()  # else uid 65534 imports only PRELOAD
    r = run_program(STDLIB_PROGRAM)
    assert r["passed"], r["stderr"]


# ----------------------------------------------------------------------------- hostile programs
# Each program succeeds (passes) only if its attack worked: a contained attack is a failed program.

WRITES = {"mkdir": "import os\nos.mkdir({p!r})\n",
          "makedirs": "import os\nos.makedirs({p!r} + '/deeper')\n",
          "open": "open({p!r}, 'w').write('pwned')\n",
          "os.open": "import os\nos.close(os.open({p!r}, os.O_CREAT | os.O_WRONLY))\n",
          "_io.FileIO": "import _io\n_io.FileIO({p!r}, 'w').write(b'pwned')\n",
          "io.FileIO": "import io\nio.FileIO({p!r}, 'x').close()\n"}
CONNECT = "import socket\nsocket.create_connection(({host!r}, {port}), timeout=2).close()\n"
OUTSIDE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never a real host
SECRET = "s3cr3t-token-do-not-leak"
HUNT = ("import os\nfound = []\nfor pid in ['self', *os.listdir('/proc')]:\n    try:\n"
        "        with open('/proc/' + pid + '/environ', 'rb') as f:\n"
        f"            found += [pid] if {SECRET.encode()!r} in f.read() else []\n"
        "    except OSError:\n        pass\nprint('found', found)\nassert found\n")


@pytest.fixture
def open_dirs():
    """Directories outside the work dir that any user may write (mode 1777): in /tmp, /var/tmp and
    /dev/shm, where those exist."""
    dirs = [tempfile.mkdtemp(dir=d, prefix="sandbox_test_") for d in ("/tmp", "/var/tmp", "/dev/shm")
            if os.path.isdir(d) and os.access(d, os.W_OK)]
    for d in dirs:
        os.chmod(d, 0o1777)
    yield dirs
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def listener():
    """A TCP server on the evaluator's loopback; yields its port, then asserts nobody connected."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()


def hostile_programs(dirs, port):
    programs = {f"{name} {d}": w.format(p=os.path.join(d, "x")) for name, w in WRITES.items() for d in dirs}
    programs["connect loopback"] = CONNECT.format(host="127.0.0.1", port=port)
    programs["connect outside"] = CONNECT.format(host=OUTSIDE, port=80)
    programs["read environ"] = HUNT
    return programs


def assert_contained(programs, results, dirs, guard=True):
    """Every attack failed and left nothing outside. Without the guard, a write under /tmp or
    /dev/shm lands in the program's private, empty copy (makedirs makes the missing parents
    there): it must only leave nothing outside."""
    for name, r in zip(programs, results):
        private = not guard and name.split()[-1].startswith(("/tmp/", "/dev/shm/"))
        assert private or (not r["passed"] and r["status"] == "failed"), (name, r)
    assert [os.listdir(d) for d in dirs] == [[] for _ in dirs]  # nothing was left outside


@pytest.mark.parametrize("guard", [True, pytest.param(False, id="no_guard")])
def test_hostile_programs_are_contained(open_dirs, listener, monkeypatch, guard):
    if not guard:
        needs_kernel_layers()
    monkeypatch.setenv("AR2DIFF_FAKE_SECRET", SECRET)
    programs = hostile_programs(open_dirs, listener)
    results = run_programs(programs.values(), workers=2, guard=guard)
    assert_contained(programs, results, open_dirs, guard)
    by_name = dict(zip(programs, results))
    if guard:  # the guard refuses first, by name
        assert all("disabled" in by_name[f"{w} {d}"]["stderr"] for w in WRITES for d in open_dirs)
        assert "socket" in by_name["connect loopback"]["stderr"]
    else:  # the kernel refuses: those directories are not in its root, and no network
        assert all("No such file or directory" in by_name[f"open {d}"]["stderr"] for d in open_dirs)
        assert "Network is unreachable" in by_name["connect outside"]["stderr"]
    assert SECRET not in "".join(r["stdout"] + r["stderr"] for r in results)


def as_nobody():
    """preexec_fn: a private mount namespace where this interpreter is readable (a tmpfs over the
    top-most directory above it that others cannot enter, the interpreter bound back), then uid
    65534."""
    libc = sandbox._libc()
    sandbox._call(libc, "unshare", sandbox.CLONE_NEWNS)
    sandbox._mount(libc, None, "/", None, sandbox.MS_REC | sandbox.MS_PRIVATE)
    parts = sys.base_prefix.rstrip("/").split("/")
    closed = next(("/".join(parts[:i]) for i in range(2, len(parts)) if not os.stat("/".join(parts[:i])).st_mode & 1),
                  None)
    if closed:
        fd = os.open(sys.base_prefix, os.O_PATH | os.O_DIRECTORY)
        sandbox._mount(libc, "tmpfs", closed, "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, "mode=755,size=64k")
        os.makedirs(sys.base_prefix)
        sandbox._mount(libc, f"/proc/self/fd/{fd}", sys.base_prefix, None, sandbox.MS_BIND)
    os.setgroups([])
    os.setgid(sandbox.NOBODY)
    os.setuid(sandbox.NOBODY)


@pytest.mark.skipif(not IS_ROOT, reason="as an ordinary user every other test here runs as one")
def test_ordinary_user_evaluator(open_dirs, listener, root):
    """The evaluator as uid 65534: the kernel layers come from a user namespace; the standard
    library imports and every hostile program is contained, with the guard off."""
    needs_kernel_layers()  # as_nobody needs what the sandbox needs as root
    if not world_traversable(str(root)):
        pytest.skip(f"{root} is not readable by uid {sandbox.NOBODY}")
    programs = {"stdlib": STDLIB_PROGRAM, **hostile_programs(open_dirs, listener)}
    code = ("import json, sys\nfrom data.sandbox import run_programs\n"
            "print(json.dumps(run_programs(json.load(sys.stdin), workers=2, guard=False)))\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "AR2DIFF_FAKE_SECRET": SECRET}
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(list(programs.values())), env=env,
                         cwd=root, capture_output=True, text=True, preexec_fn=as_nobody, timeout=120)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    missing = [m for m in results[0]["missing"] if not m.startswith("cgroup")]
    if missing:
        pytest.skip("no kernel layers for an ordinary user here: " + "; ".join(missing))
    assert results[0]["layers"][0] == "namespaces: user, mount, network, pid, ipc"
    assert results[0]["passed"], results[0]["stderr"]
    assert_contained(list(programs)[1:], results[1:], open_dirs, guard=False)
    assert SECRET not in "".join(r["stdout"] + r["stderr"] for r in results)


@pytest.mark.parametrize("guard", GUARD)
def test_infinite_loop_times_out(guard):
    needs_os_layers(guard)
    t0 = time.time()
    r = run_program("while True:\n    pass\n", timeout=1.0, guard=guard)
    assert not r["passed"] and r["status"] == "timeout"
    assert time.time() - t0 < 3 and gone(r["pid"])


@pytest.mark.parametrize("guard", GUARD)
def test_memory_bomb_is_refused(guard):
    needs_os_layers(guard)
    r = run_program("x = []\nwhile True:\n    x.append(bytearray(64 << 20))\n", memory_mb=256,
                    timeout=5.0, guard=guard)
    assert not r["passed"] and "MemoryError" in r["stderr"]


@pytest.mark.parametrize("guard", GUARD)
def test_fork_bomb_is_bounded_and_killed(guard):
    needs_os_layers(guard)
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.time()
    r = run_program(bomb, timeout=1.0, max_procs=24, guard=guard)
    assert not r["passed"] and r["status"] == "timeout"
    assert gone(r["pid"]) and time.time() - t0 < 5


@pytest.mark.parametrize("guard", GUARD)
def test_files_outside_are_unharmed(tmp_path, guard):
    needs_os_layers(guard)
    os.chmod(tmp_path, 0o777)  # even a directory any user may write to
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    attack = (f"import os\np = {str(victim)!r}\n"
              "attempts = [lambda: os.remove(p), lambda: os.unlink(p), lambda: os.rename(p, p + '.x'),\n"
              "            lambda: open(p, 'w').write('pwned'), lambda: os.truncate(p, 0),\n"
              "            lambda: os.rmdir(os.path.dirname(p))]\n"
              "for attempt in attempts:\n"
              "    try:\n        attempt()\n        print('done')\n"
              "    except OSError as e:\n        print('refused', type(e).__name__)\n")
    r = run_program(attack, guard=guard)
    assert r["stdout"].count("refused") == 6, r  # every attempt ran, and every one was refused
    assert victim.read_text() == "precious" and sorted(os.listdir(tmp_path)) == ["victim.txt"]


@pytest.mark.parametrize("guard", GUARD)
@pytest.mark.parametrize("exit_call", ["sys.exit(0)", "os._exit(0)"])
def test_exit_before_the_tests_fails(exit_call, guard):
    needs_os_layers(guard)
    r = run_program(f"import os, sys\n{exit_call}\nassert False, 'the tests never run'\n", guard=guard)
    assert not r["passed"]
    if exit_call == "os._exit(0)":  # a clean exit status: only the missing nonce gives it away
        assert r["returncode"] == 0 and r["status"] == "exited early"


@pytest.mark.parametrize("guard", GUARD)
def test_killing_the_evaluator_fails(guard):
    needs_os_layers(guard)
    me = os.getpid()
    attack = (f"import os\nfor kill in (lambda: os.kill({me}, 9), lambda: os.killpg(os.getpgid({me}), 9)):\n"
              "    try:\n        kill()\n    except OSError as e:\n        print('refused', e)\n"
              "assert False\n")
    r = run_program(attack, guard=guard)
    assert r["stdout"].count("refused") == 2 and not r["passed"]  # and we are still here


@pytest.mark.parametrize("guard", GUARD)
def test_environment_is_not_inherited(monkeypatch, guard):
    needs_os_layers(guard)
    monkeypatch.setenv("AR2DIFF_FAKE_SECRET", SECRET)
    r = run_program("import os\nprint(dict(os.environ))\n" + HUNT, guard=guard)
    assert "PATH" in r["stdout"] and "found []" in r["stdout"] and not r["passed"]
    assert SECRET not in r["stdout"] + r["stderr"]
