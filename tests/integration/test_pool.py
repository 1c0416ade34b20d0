"""jailpy.Pool as a service would use it: as the test user, on the real kernel.

Each test runs one Python program as the test user that drives a real pool
(fork server, namespaces, cgroups, slirp4netns) and prints what it saw; the
test checks it, and checks the host side (processes, cgroups) itself.
Loops are small and bounded; bench/pool.py is where the pool is timed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from conftest import VENV, as_user_file, children, comm, process_tree

CGROUP_PARENTS = [Path(f"/sys/fs/cgroup/{c}/jailpy") for c in ("memory", "pids")]


def _python(jailpy, user_tmp: Path, script: str, *args: str, timeout: float = 90):
    path = user_tmp / f"pool_{uuid.uuid4().hex[:8]}.py"
    path.write_text(textwrap.dedent(script))
    path.chmod(0o644)
    return jailpy.raw([str(VENV / "bin" / "python"), str(path), *args], timeout=timeout)


def _json_lines(output: str) -> dict:
    return {k: v for line in output.splitlines() if line.startswith("{")
            for k, v in json.loads(line).items()}


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def _pool_processes(owner: int) -> list[int]:
    """The fork server of the pool owned by `owner` and every sandbox process forked
    from it (they keep its command line, whose last word is the owner's pid)."""
    return [pid for pid in _processes_with("jailpy.runtime.pool")
            if _cmdline(pid)[-1:] == [str(owner)]]


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for whoever adopted it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode().split("\0")[:-1]
    except OSError:
        return []


def _start_owner(jailpy, script: Path, source: str, profile: Path):
    """A pool owner as the test user, running `source` with the profile's path as its
    argument, and the first JSON line it prints."""
    script.write_text(textwrap.dedent(source))
    script.chmod(0o644)
    owner = subprocess.Popen(jailpy.user.command([str(VENV / "bin" / "python"), str(script),
                                                  str(profile)]),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=jailpy.env())
    jailpy.started.append(owner)
    return owner, json.loads(owner.stdout.readline())


def _sandbox_cgroups(server_pid: int) -> list[Path]:
    return [d for parent in CGROUP_PARENTS if parent.is_dir()
            for d in parent.glob(f"*/jailpy-{server_pid}-*")]


def test_every_request_gets_a_fresh_sandbox(jailpy, user_tmp):
    """Files, processes and the pid namespace of one request are gone for the next;
    stdin, files, env, cwd, output capture and errors travel as documented."""
    marker = f"pool-leftover-{uuid.uuid4().hex[:8]}"
    result = _python(jailpy, user_tmp, f"""
        import json, os, jailpy
        from jailpy.errors import CommandError, ConfigError
        MARKER = {marker!r}

        def leftovers():
            found = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if MARKER.encode() in open(f"/proc/{{pid}}/cmdline", "rb").read():
                        found.append(pid)
                except OSError:
                    pass
            return found

        out = {{}}
        with jailpy.Pool(jailpy.load_policy("default"), size=1) as pool:
            first = pool.run(["sh", "-c",
                              "echo secret > /work/left; echo secret > /tmp/left; "
                              "setsid sh -c 'sleep 300; : " + MARKER + "' & "
                              "echo $$; readlink /proc/self/ns/pid"])
            out["first"] = first.stdout.decode().split()
            out["left_running_after_first"] = leftovers()
            second = pool.run(["sh", "-c",
                               "echo files: $(find /work /tmp -mindepth 1); echo $$; "
                               "readlink /proc/self/ns/pid; echo /proc/[0-9]*"])
            out["second"] = second.stdout.decode().splitlines()
            echo = pool.run(["sh", "-c", "cat; pwd; cat dir/in.txt; echo $EXTRA; echo err >&2; "
                             "exit 3"], stdin=b"from-stdin\\n", env={{"EXTRA": "extra"}},
                            files={{"dir/in.txt": b"from-file"}})
            out["echo"] = [echo.exit_code, echo.stdout.decode(), echo.stderr.decode(),
                           echo.stdout_truncated]
            cwd = pool.run(["pwd"], cwd="/tmp")
            out["cwd"] = cwd.stdout.decode()
            try:
                pool.run(["no-such-command"])
            except CommandError as err:
                out["missing"] = err.exit_code
            for field, value in (("memory", 1 << 20), ("pids", 10), ("output_limit", 0)):
                try:
                    pool.run(["true"], **{{field: value}})
                except ConfigError as err:
                    out.setdefault("refused", []).append(err.origin)
            try:
                pool.run(["true"], files={{"../escape": b"x"}})
            except ConfigError as err:
                out.setdefault("refused", []).append(err.origin)
            out["stats"] = pool.stats()
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr
    out = _json_lines(result.stdout)
    first_pid, first_ns = out["first"]
    # the second request sees none of the first one's files, nor any of its processes,
    # and runs in a pid namespace of its own
    files, second_pid, second_ns, processes = out["second"]
    assert files == "files:"
    assert first_pid == second_pid == "2"  # each the first process after its own pid 1
    assert second_ns != first_ns
    assert processes == "/proc/1 /proc/2"
    assert out["left_running_after_first"] == []  # gone before the first result arrived
    assert out["echo"] == [3, "from-stdin\n/work\nfrom-fileextra\n", "err\n", False]
    assert out["cwd"] == "/tmp\n"
    assert out["missing"] == 127
    assert out["refused"] == ["Pool.run(memory)", "Pool.run(pids)", "Pool.run(output_limit)",
                              "Pool.run(files)"]
    assert out["stats"]["served"] >= 4 and out["stats"]["failed"] == 1
    assert _processes_with(marker) == []


def test_threads_and_asyncio_share_one_pool(jailpy, user_tmp):
    """8 threads x 50 requests and 100 concurrent run_async: every answer is its own."""
    result = _python(jailpy, user_tmp, """
        import asyncio, json, jailpy
        from concurrent.futures import ThreadPoolExecutor

        out = {}
        with jailpy.Pool(jailpy.load_policy("default"), size=4) as pool:
            def worker(t):
                return [pool.run(["echo", f"{t}-{i}"]).stdout.decode() for i in range(50)]

            with ThreadPoolExecutor(8) as threads:
                answers = list(threads.map(worker, range(8)))
            out["threads_wrong"] = [(t, i, a) for t in range(8) for i, a in enumerate(answers[t])
                                    if a != f"{t}-{i}\\n"]
            out["threads_count"] = sum(map(len, answers))

            async def main():
                results = await asyncio.gather(*(pool.run_async(["echo", str(i)])
                                                 for i in range(100)))
                return [r.stdout.decode() for r in results]

            got = asyncio.run(main())
            out["async_wrong"] = [(i, a) for i, a in enumerate(got) if a != f"{i}\\n"]
            out["stats"] = pool.stats()
        print(json.dumps(out))
    """, timeout=180)
    assert result.returncode == 0, result.stderr
    out = _json_lines(result.stdout)
    assert out["threads_count"] == 400 and out["threads_wrong"] == []
    assert out["async_wrong"] == []
    assert out["stats"]["served"] == 500 and out["stats"]["failed"] == 0


def test_a_misbehaving_request_ends_with_its_limit_and_spares_the_others(
        jailpy, user_tmp, test_user):
    """Fork bomb, memory hogs (a process's memory, a tmpfs's files), endless output
    and a sleeper run at once next to well-behaved requests; each bad one ends by
    its own limit."""
    profile = as_user_file(user_tmp / "limited.toml", 'extends = ["default"]\n[limits]\n'
                           'memory_max = "256M"\npids_max = 64\ntimeout = "20s"\n'
                           'kill_grace = "1s"\n', test_user)
    result = _python(jailpy, user_tmp, """
        import json, os, sys, jailpy
        from concurrent.futures import ThreadPoolExecutor

        bad = {
            # one fork by the shell, before the bomb goes off; then nothing it does can fail
            "forkbomb": (["sh", "-c", "(f() { f | f & }; f) & exec sleep 30"],
                         dict(timeout=2, pids=32)),
            "memory": (["python3", "-c", "b = []\\nwhile True: b.append(bytearray(1 << 20))"],
                       dict(memory=64 << 20)),
            # files in a tmpfs are charged to the cgroup and to no process: the OOM
            # killer then chooses pid 1, the sandbox's largest process
            "tmpfs": (["sh", "-c", "cat /dev/zero > /tmp/fill"], dict(memory=64 << 20)),
            "output": (["sh", "-c", "while :; do echo yyyyyyyyyyyyyyyyyyyyyyyy; done"],
                       dict(output_limit=4096)),
            "sleep": (["sleep", "30"], dict(timeout=0.5)),
        }
        out = {}
        with jailpy.Pool(jailpy.load_policy(sys.argv[1]), size=4) as pool:
            with ThreadPoolExecutor(8) as threads:
                bad_runs = {name: threads.submit(pool.run, argv, **kw)
                            for name, (argv, kw) in bad.items()}
                good_runs = [threads.submit(pool.run,
                                            ["sh", "-c", f"echo {i}; echo $(( {i} * 2 ))"])
                             for i in range(12)]
                for name, future in bad_runs.items():
                    r = future.result()
                    out[name] = dict(exit_code=r.exit_code, ended_by=r.ended_by,
                                     limits_hit=list(r.limits_hit), timed_out=r.timed_out,
                                     stdout_len=len(r.stdout), truncated=r.stdout_truncated,
                                     wall=r.wall_time, peak=r.peak_memory)
                out["good"] = [f.result().stdout.decode() for f in good_runs]
            out["after"] = pool.run(["sh", "-c", "echo fine"]).stdout.decode()
            out["stats"] = pool.stats()
            out["server"] = pool._server.process.pid
            out["owner"] = os.getpid()
        print(json.dumps(out))
    """, str(profile), timeout=120)
    assert result.returncode == 0, result.stderr
    out = _json_lines(result.stdout)
    bomb = out["forkbomb"]
    assert bomb["exit_code"] == 124 and bomb["ended_by"] == "timeout", bomb
    assert "pids" in bomb["limits_hit"], bomb  # the per-request pids limit held it
    for name in ("memory", "tmpfs"):
        memory = out[name]
        assert memory["ended_by"] == "memory" and memory["exit_code"] == 137, memory
        assert memory["peak"] <= 64 << 20, memory  # the per-request limit, not the profile's
    output = out["output"]
    assert output["ended_by"] == "output" and output["truncated"], output
    assert output["stdout_len"] == 4096, output
    sleep = out["sleep"]
    assert sleep["exit_code"] == 124 and sleep["timed_out"] and sleep["wall"] < 5, sleep
    assert out["good"] == [f"{i}\n{i * 2}\n" for i in range(12)], out
    assert out["after"] == "fine\n", out
    assert out["stats"]["failed"] == 0, out
    # close() (the with block) left no fork server, sandbox process or cgroup behind
    assert not _alive(out["server"])
    assert _pool_processes(out["owner"]) == []
    assert _sandbox_cgroups(out["server"]) == []


def test_sigkill_of_the_owner_leaves_nothing_behind(jailpy, user_tmp, test_user):
    """A pool with cgroup limits and slirp4netns (a request fetches from the host
    through it); its owner is SIGKILLed mid-request: every sandbox process, helper,
    cgroup and the fork server itself go away."""
    marker = f"pool-owner-{uuid.uuid4().hex[:8]}"
    profile = as_user_file(user_tmp / "net.toml", 'extends = ["default"]\n[limits]\n'
                           'memory_max = "256M"\npids_max = 64\n[network]\n'
                           'mode = "slirp4netns"\nhost_loopback = true\n', test_user)
    owner, first = _start_owner(jailpy, user_tmp / "owner.py", f"""
        import json, os, socket, sys, threading, time, jailpy

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        def answer():
            conn, _ = listener.accept()
            conn.sendall(b"hello from the host")
            conn.close()
        threading.Thread(target=answer, daemon=True).start()
        pool = jailpy.Pool(jailpy.load_policy(sys.argv[1]), size=2)
        fetch = pool.run(["python3", "-c", "import socket; s = socket.create_connection("
                          "('10.0.2.2', %d)); print(s.recv(100).decode())"
                          % listener.getsockname()[1]], timeout=10)
        threading.Thread(target=pool.run, args=(["sh", "-c", "sleep 300; : {marker}"],),
                         daemon=True).start()
        # A child of the owner keeps the owner's end of the socket open, so its EOF
        # cannot tell the fork server that the owner died: PDEATHSIG must.
        holder = os.fork()
        if holder == 0:
            time.sleep(120)  # no exec: that would close the socket (close-on-exec)
            os._exit(0)
        print(json.dumps({{"server": pool._server.process.pid, "fetch": fetch.stdout.decode(),
                          "cgroup": fetch.cgroup, "holder": holder}}), flush=True)
        threading.Event().wait()
    """, profile)
    server = first["server"]
    assert first["fetch"] == "hello from the host\n" and first["cgroup"] == "v1"
    deadline = time.monotonic() + 20
    while not _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with(marker), "the long request never started"
    helpers = [p for p in children(server) if comm(p) == "slirp4netns"]
    assert helpers  # the running request's, and those of the ready sandboxes
    assert _sandbox_cgroups(server)
    python_owner = children(owner.pid)[0] if os.geteuid() == 0 else owner.pid
    # The server and a sandbox's processes (the refill may still be forking them).
    deadline = time.monotonic() + 20
    while len(_pool_processes(python_owner)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_pool_processes(python_owner)) >= 4
    os.kill(python_owner, signal.SIGKILL)
    owner.wait(10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
            _pool_processes(python_owner) or _processes_with(marker)
            or any(map(_alive, helpers)) or _sandbox_cgroups(server)):
        time.sleep(0.1)
    try:
        assert not _alive(server), "the fork server outlived its owner"
    finally:
        os.kill(first["holder"], signal.SIGKILL)
    assert _processes_with(marker) == [] and _pool_processes(python_owner) == []
    assert [p for p in helpers if _alive(p)] == []
    assert _sandbox_cgroups(server) == []



#: A request's view of pid 1 and of its own process group.
_INSPECT = r"""
import ctypes, json, os
def attempt(action):
    try:
        action()
        return "done"
    except OSError as exc:
        return exc.strerror
libc = ctypes.CDLL(None, use_errno=True)
def ptrace_attach():
    if libc.ptrace(16, 1, None, None) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
capabilities = [l for l in open("/proc/1/status") if l.startswith("CapEff")]
print(json.dumps({"pid1_capabilities": capabilities[0].split()[1],
                  "group_leader": os.getpgid(0) == os.getpid(),
                  "environ_of_pid1": attempt(lambda: open("/proc/1/environ").read()),
                  "ptrace_pid1": attempt(ptrace_attach)}))
"""

#: Signals 32 and 33, glibc's own (thread cancellation, set*id across threads):
#: glibc 2.36's posix_spawn leaves them ignored in the child, and nothing can ask
#: it otherwise (docs/pool.md). glibc and musl install their own handlers for them.
_GLIBC_INTERNAL_SIGNALS = 0x180000000


@pytest.mark.parametrize("start", ["spawned by pid 1", "forked target"])
def test_the_command_starts_with_the_same_restrictions_either_way(jailpy, user_tmp,
                                                                  test_user, start):
    """A pooled command is started by pid 1 with posix_spawn when pid 1 can carry
    the command's restrictions itself (target.can_spawn), else by a forked target
    as in `jailpy run`. Either way the command has no capabilities, no_new_privs,
    the seccomp filter, no blocked or ignored signal and a process group of its
    own; pid 1 stays out of its reach even with ptrace allowed by seccomp; a
    missing or non-executable command gives 127 or 126."""
    # ptrace left to the kernel's own checks (the shipped default refuses it with
    # seccomp); refusing getpriority, which pid 1 might call, forces the fork
    deny = '"getpriority"' if start == "forked target" else ""
    profile = as_user_file(user_tmp / "inspect.toml",
                           f'extends = ["default"]\n[seccomp]\nallow = ["ptrace"]\n'
                           f'deny = [{deny}]\n', test_user)
    result = _python(jailpy, user_tmp, """
        import json, sys, jailpy
        from jailpy.api import Sandbox
        from jailpy.errors import CommandError
        from jailpy.runtime import target

        policy = jailpy.load_policy(sys.argv[1])
        out = {"spawns": target.can_spawn(Sandbox(policy).plan(["true"]))}
        with jailpy.Pool(policy, size=1) as pool:
            status = pool.run(["cat", "/proc/self/status"]).stdout.decode().splitlines()
            out["status"] = dict(line.split(":\t", 1) for line in status)
            seen = pool.run(["python3", "-c", sys.argv[2]])
            out["seen"] = json.loads(seen.stdout) if seen.exit_code == 0 else seen.stderr.decode()
            out["pid"] = pool.run(["sh", "-c", "echo $$"]).stdout.decode().strip()
            for name, argv, files in (("missing", ["no-such-command"], {}),
                                      ("not_executable", ["./data"], {"data": b"x"})):
                try:
                    pool.run(argv, files=files)
                except CommandError as err:
                    out[name] = err.exit_code
        print(json.dumps(out))
    """, str(profile), _INSPECT)
    assert result.returncode == 0, result.stderr
    out = _json_lines(result.stdout)
    assert out["spawns"] is (start == "spawned by pid 1")
    status = out["status"]
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "SigBlk"):
        assert int(status[field], 16) == 0, (field, status)
    assert int(status["SigIgn"], 16) & ~_GLIBC_INTERNAL_SIGNALS == 0, status
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
    seen = out["seen"]
    assert isinstance(seen, dict), seen
    assert seen["group_leader"] is True
    # pid 1 is non-dumpable and has no capability either: no way in
    assert seen["environ_of_pid1"] == "Permission denied", seen
    assert seen["ptrace_pid1"] == "Operation not permitted", seen
    assert int(seen["pid1_capabilities"], 16) == 0, seen
    assert out["pid"] == "2"  # the command is pid 1's first child: nothing came first
    assert out["missing"] == 127 and out["not_executable"] == 126


def test_a_profile_refusing_clone3_still_serves(jailpy, user_tmp, test_user):
    """glibc's posix_spawn tries clone3 first and falls back to clone only on
    ENOSYS: where the profile refuses clone3 otherwise, pid 1 could not spawn a
    single command, so the pool keeps the forked target (target.can_spawn) and
    serves as `jailpy run` does."""
    profile = as_user_file(user_tmp / "clone3-eperm.toml",
                           'extends = ["default"]\n[seccomp]\nallow_userns = true\n'
                           'deny = ["clone3"]\n', test_user)
    result = _python(jailpy, user_tmp, """
        import json, sys, jailpy

        with jailpy.Pool(jailpy.load_policy(sys.argv[1]), size=1) as pool:
            served = pool.run(["sh", "-c", "echo $$"])
        print(json.dumps({"exit_code": served.exit_code, "stdout": served.stdout.decode()}))
    """, str(profile))
    assert result.returncode == 0, result.stderr
    assert _json_lines(result.stdout) == {"exit_code": 0, "stdout": "2\n"}


def _nspid(pid: int) -> list[str]:
    """The pid's numbers from the host's pid namespace inward ([] once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
    except OSError:
        return []


def _wchan(pid: int) -> str:
    """Where in the kernel the process sleeps ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read()
    except OSError:
        return ""


def _wait_for(condition, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_a_pooled_sandbox_is_pid_1_cloned_for_the_server(jailpy, user_tmp, test_user):
    """The process model of docs/pool.md: the fork server's children are its zygote
    and the prepared sandboxes' pid 1s themselves (no namespace child between), each
    waiting for its request alone; cgroup limits still apply to a request; a
    SIGKILLed fork server takes its zygote and every sandbox along."""
    profile = as_user_file(user_tmp / "limited.toml", 'extends = ["default"]\n[limits]\n'
                           'memory_max = "256M"\npids_max = 64\n', test_user)
    owner, first = _start_owner(jailpy, user_tmp / "zygote_owner.py", """
        import json, sys, threading, jailpy

        pool = jailpy.Pool(jailpy.load_policy(sys.argv[1]), size=2)
        result = pool.run(["sh", "-c", "echo $$; grep -c . /proc/self/cgroup"])
        print(json.dumps({"server": pool._server.process.pid, "stdout": result.stdout.decode(),
                          "cgroup": result.cgroup, "peak": result.peak_memory}), flush=True)
        sys.stdin.readline()  # the test has killed the zygote
        after = [pool.run(["sh", "-c", "echo $$"]).stdout.decode() for _ in range(4)]
        print(json.dumps({"after": after}), flush=True)
        threading.Event().wait()
    """, profile)
    server = first["server"]
    assert first["stdout"].split()[0] == "2" and first["cgroup"] == "v1" and first["peak"]

    def sandboxes() -> list[int]:
        """pid 1s of prepared sandboxes: no child yet, asleep reading the request
        pipe (the one that served the first request may still be ending, also
        without a child, but it reads no more requests)."""
        return [p for p in children(server) if len(_nspid(p)) == 2 and children(p) == []
                and "pipe_read" in _wchan(p)]

    pid1s: list[int] = []

    def two_prepared() -> bool:
        pid1s[:] = sandboxes()
        return len(pid1s) == 2

    assert _wait_for(two_prepared), [(_nspid(p), _wchan(p)) for p in children(server)]
    zygotes = [p for p in children(server) if len(_nspid(p)) == 1]
    assert len(zygotes) == 1 and _cmdline(zygotes[0]) == _cmdline(server)
    assert children(zygotes[0]) == []  # its clones are the server's children
    assert [_nspid(p)[1] for p in pid1s] == ["1", "1"]
    # A zygote that dies leaves the pool serving, from now on through namespace children.
    os.kill(zygotes[0], signal.SIGKILL)
    owner.stdin.write("go\n")
    owner.stdin.flush()
    assert json.loads(owner.stdout.readline())["after"] == ["2\n"] * 4
    assert _wait_for(lambda: any(len(_nspid(p)) == 1 and _alive(p) for p in children(server)))
    everything = process_tree(server)
    os.kill(server, signal.SIGKILL)
    assert _wait_for(lambda: not any(map(_alive, [*everything, *zygotes, *pid1s])))
    # (its own cgroup directories stay for the next jailpy to sweep: docs/pool.md)


def test_a_pool_falls_back_to_forking_where_clone3_is_refused(jailpy, user_tmp, test_user):
    """Under a seccomp filter that answers clone3 with ENOSYS (as container runtimes'
    default profiles do), a pool still serves fresh sandboxes, through the launcher's
    namespace child."""
    profile = as_user_file(user_tmp / "no-clone3.toml",
                           'extends = ["nested"]\n[seccomp]\ndeny = ["clone3"]\n'
                           'actions = { clone3 = "errno:ENOSYS" }\n', test_user)
    script = user_tmp / "fallback.py"
    script.write_text(textwrap.dedent("""
        import json, os, jailpy

        def nspid(pid):
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("NSpid:"):
                    return line.split()[1:]

        with jailpy.Pool(jailpy.load_policy("default"), size=1) as pool:
            first = pool.run(["sh", "-c", "echo $$ > /work/mine; echo $$; ls /work"])
            second = pool.run(["sh", "-c", "ls /work; echo $$"])
            server = pool._server.process.pid
            kids = open(f"/proc/{server}/task/{server}/children").read().split()
            print(json.dumps({"first": first.stdout.decode(), "second": second.stdout.decode(),
                              "server_children": [nspid(k) for k in kids]}))
    """))
    script.chmod(0o644)
    result = jailpy.run(["run", "-p", str(profile), "--", str(VENV / "bin" / "python"),
                         str(script)], timeout=90)
    assert result.returncode == 0, result.stderr
    out = _json_lines(result.stdout)
    assert out["first"] == "2\nmine\n"
    assert out["second"] == "2\n"  # a fresh /work, in a pid namespace of its own
    # the namespace child (one pid: outside the sandbox's pid namespace), not a pid 1
    assert out["server_children"] and all(len(ns) == 1 for ns in out["server_children"])
