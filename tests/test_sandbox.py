"""The code sandbox: passing and failing programs, real MBPP problems, and hostile programs contained.

Each hostile program runs with the guard on, and (as root) once more with the guard off, to check
that the OS layer alone (rlimits, session kill, uid 65534) contains it too.
"""
import json
import os
import time

import pytest

from data.mbpp.prepare import make_row
from data.sandbox import run_program, run_programs
from data.tasks import score

IS_ROOT = os.geteuid() == 0
GUARD = [True, pytest.param(False, marks=pytest.mark.skipif(
    not IS_ROOT, reason="with the guard off only the uid drop protects, and that needs root"))]


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


# ----------------------------------------------------------------------------- hostile programs

@pytest.mark.parametrize("guard", GUARD)
def test_infinite_loop_times_out(guard):
    t0 = time.time()
    r = run_program("while True:\n    pass\n", timeout=1.0, guard=guard)
    assert not r["passed"] and r["status"] == "timeout"
    assert time.time() - t0 < 3 and not live_members(r["pid"])


@pytest.mark.parametrize("guard", GUARD)
def test_memory_bomb_is_refused(guard):
    r = run_program("x = []\nwhile True:\n    x.append(bytearray(64 << 20))\n", memory_mb=256,
                    timeout=5.0, guard=guard)
    assert not r["passed"] and "MemoryError" in r["stderr"]


@pytest.mark.parametrize("guard", GUARD)
def test_fork_bomb_is_bounded_and_killed(guard):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.time()
    r = run_program(bomb, timeout=1.0, max_procs=24, guard=guard)
    assert not r["passed"] and r["status"] == "timeout"
    deadline = time.time() + 2  # SIGKILL is immediate, the exits are not
    while live_members(r["pid"]) and time.time() < deadline:
        time.sleep(0.05)
    assert not live_members(r["pid"]) and time.time() - t0 < 5


@pytest.mark.parametrize("guard", GUARD)
def test_files_outside_are_unharmed(tmp_path, guard):
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
    r = run_program(f"import os, sys\n{exit_call}\nassert False, 'the tests never run'\n", guard=guard)
    assert not r["passed"]
    if exit_call == "os._exit(0)":  # a clean exit status: only the missing nonce gives it away
        assert r["returncode"] == 0 and r["status"] == "exited early"


@pytest.mark.parametrize("guard", GUARD)
def test_killing_the_parent_fails(guard):
    attack = ("import os\nprint(os.getppid(), flush=True)\n"
              "for kill in (lambda: os.kill(os.getppid(), 9),\n"
              "             lambda: os.killpg(os.getpgid(os.getppid()), 9)):\n"
              "    try:\n        kill()\n    except OSError as e:\n        print('refused', e)\n"
              "assert False\n")
    r = run_program(attack, guard=guard)
    assert r["stdout"].split()[0] == str(os.getpid())  # it did aim at us, and we are still here
    assert r["stdout"].count("refused") == 2 and not r["passed"]


@pytest.mark.parametrize("guard", GUARD)
def test_environment_is_not_inherited(monkeypatch, guard):
    secret = "s3cr3t-token-do-not-leak"
    monkeypatch.setenv("AR2DIFF_FAKE_SECRET", secret)
    spy = ("import os\nprint(dict(os.environ))\n"
           "try:\n    print(open(f'/proc/{os.getppid()}/environ').read())\n"
           "except OSError as e:\n    print('refused', type(e).__name__)\n")
    r = run_program(spy, guard=guard)
    assert "PATH" in r["stdout"] and "refused" in r["stdout"]
    assert secret not in r["stdout"] + r["stderr"]
