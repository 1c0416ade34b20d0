"""Seccomp policy as data: named groups, actions, and resolution to rules.

This module is pure: it never imports libseccomp, so profile validation,
`--explain` and `jailpy profile show --seccomp` cost nothing, and the BPF
cache key can be computed without paying for the compiler. The runtime
(jailpy/runtime/seccomp.py) turns a RuleSet into BPF.

A RuleSet has two parts:

- the *guard*: argument-filtered refusals (TIOCSTI/TIOCLINUX ioctls, user
  namespace creation) on top of "allow everything else". It is evaluated
  first, so it holds in allow-list mode too, where libseccomp cannot express
  "allow ioctl except TIOCSTI" in one filter;
- the *main* filter: a deny-list (default allow) or an allow-list (default
  deny) of whole syscalls.

Syscall names are validated against libseccomp's tables when the filter is
compiled (runtime/seccomp.py), which is also where names that do not exist
on this architecture are skipped.
"""

from __future__ import annotations

import errno as _errno

from ..errors import ConfigError
from ..linux import syscalls
from ..linux.syscalls import CLONE_NEWTIME, CLONE_NEWUSER
from ..record import Record

# --- constants -----------------------------------------------------------------

TIOCSTI = 0x5412
TIOCLINUX = 0x541C
#: Every namespace flag the kernel has (linux/syscalls.py), by value: the guard
#: refuses them all, not only the namespaces jailpy itself makes.
_NAMESPACE_FLAGS = {value: name for name, value in vars(syscalls).items()
                    if name.startswith("CLONE_NEW")}
#: Namespace flags clone(2) accepts (CLONE_NEWTIME shares bits with CSIGNAL there).
_CLONE_NS_FLAGS = tuple(flag for flag in _NAMESPACE_FLAGS if flag != CLONE_NEWTIME)
_UNSHARE_NS_FLAGS = (*_CLONE_NS_FLAGS, CLONE_NEWTIME)
#: Readable names for values that appear in argument filters.
VALUE_NAMES = {
    ("ioctl", 1, TIOCSTI): "TIOCSTI", ("ioctl", 1, TIOCLINUX): "TIOCLINUX",
    **{(call, 0, flag): name for call in ("clone", "unshare")
       for flag, name in _NAMESPACE_FLAGS.items()},
}

#: Actions a profile may name. "errno" takes an optional errno name (default EPERM).
ACTIONS = ("errno", "kill-process", "kill-thread", "trap", "log")
#: Actions allowed for syscalls of a foreign ABI: "log" would let them through.
BAD_ARCH_ACTIONS = ("errno", "kill-process", "kill-thread", "trap")
#: Syscalls jailpy itself needs between loading the filter and execve (allow-list mode).
EXEC_MINIMUM = ("execve", "exit", "exit_group", "write", "brk", "mmap", "munmap",
                "rt_sigreturn")


class ArgMatch(Record):
    """(argument `arg` & mask) == value; masks fit in 32 bits, so the upper half of
    the register is ignored as the kernel ignores it for int-typed arguments."""

    arg: int
    mask: int
    value: int


class Call(Record):
    """A group member: a syscall, optionally only with matching arguments, and
    optionally with an action of its own (clone3 must get ENOSYS, see below)."""

    name: str
    match: tuple[ArgMatch, ...] = ()
    action: str | None = None


def _flags(call: str, arg: int, flags: tuple[int, ...]) -> tuple[Call, ...]:
    return tuple(Call(call, (ArgMatch(arg, flag, flag),)) for flag in flags)


#: Socket address families by the names firejail's `protocol` uses; every other
#: family below AF_MAX (46 in Linux 6.x) is the "other" group.
SOCKET_FAMILIES = {"unix": 1, "inet": 2, "inet6": 10, "netlink": 16, "packet": 17,
                   "bluetooth": 31}
_AF_MAX = 46
_OTHER_FAMILIES = tuple(f for f in range(_AF_MAX) if f not in SOCKET_FAMILIES.values())


def _socket_family(family: int) -> Call:
    return Call("socket", (ArgMatch(0, 0xFFFFFFFF, family),))


#: mmap/mprotect/pkey_mprotect/shmat calls that would give memory both write and
#: execute access (or execute access to memory that may have been written), as
#: systemd's MemoryDenyWriteExecute and firejail's memory-deny-write-execute refuse.
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
_WRITE_EXECUTE = (Call("mmap", (ArgMatch(2, PROT_WRITE | PROT_EXEC, PROT_WRITE | PROT_EXEC),)),
                  Call("mprotect", (ArgMatch(2, PROT_EXEC, PROT_EXEC),)),
                  Call("pkey_mprotect", (ArgMatch(2, PROT_EXEC, PROT_EXEC),)),
                  Call("shmat", (ArgMatch(2, SHM_EXEC, SHM_EXEC),)))

# clone3 passes its flags in memory that seccomp cannot read. Returning ENOSYS
# makes glibc (and other libcs) fall back to clone(2), whose flags we can check.
_CLONE3_ENOSYS = Call("clone3", action="errno:ENOSYS")

#: Named groups. Members are syscall names, "@group" references or Calls.
GROUPS: dict[str, tuple[str | Call, ...]] = {
    # -- refused by the default deny-list ----------------------------------
    "@clock": ("adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime",
               "clock_settime64", "settimeofday", "stime"),
    "@cpu-emulation": ("modify_ldt", "subpage_prot", "switch_endian", "vm86", "vm86old"),
    "@debug": ("lookup_dcookie", "perf_event_open", "pidfd_getfd", "process_vm_writev",
               "rtas", "s390_runtime_instr", "sys_debug_setcontext"),
    "@module": ("create_module", "delete_module", "finit_module", "init_module"),
    "@mount": ("chroot", "fsconfig", "fsmount", "fsopen", "fspick", "mount", "mount_setattr",
               "move_mount", "open_tree", "open_tree_attr", "pivot_root", "umount", "umount2"),
    "@obsolete": ("_sysctl", "afs_syscall", "bdflush", "break", "create_module", "ftime",
                  "get_kernel_syms", "getpmsg", "gtty", "idle", "lock", "mpx", "prof", "profil",
                  "putpmsg", "query_module", "security", "sgetmask", "ssetmask", "stty",
                  "sysfs", "tuxcall", "ulimit", "uselib", "ustat", "vserver"),
    "@raw-io": ("ioperm", "iopl", "pciconfig_iobase", "pciconfig_read", "pciconfig_write",
                "s390_mmio_read", "s390_mmio_write"),
    "@reboot": ("kexec_file_load", "kexec_load", "reboot"),
    "@swap": ("swapoff", "swapon"),
    "@keyring": ("add_key", "keyctl", "request_key"),
    "@aio": ("io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_setup",
             "io_submit"),
    "@numa": ("mbind", "migrate_pages", "move_pages", "set_mempolicy",
              "set_mempolicy_home_node"),
    "@handles": ("name_to_handle_at", "open_by_handle_at"),
    "@default": ("@clock", "@cpu-emulation", "@debug", "@module", "@mount", "@obsolete",
                 "@raw-io", "@reboot", "@swap", "@keyring", "@aio", "@numa", "@handles",
                 "acct", "bpf", "fanotify_init", "ioprio_set", "nfsservctl", "personality",
                 "quotactl", "quotactl_fd", "remap_file_pages", "setdomainname",
                 "sethostname", "syslog", "userfaultfd", "vhangup", "vmsplice"),
    # -- further groups the shipped default profile denies -------------------
    "@ptrace": ("ptrace", "process_vm_readv", "process_vm_writev"),
    "@io-uring": ("io_uring_enter", "io_uring_register", "io_uring_setup"),
    "@namespaces": ("setns", *_flags("unshare", 0, _UNSHARE_NS_FLAGS),
                    *_flags("clone", 0, _CLONE_NS_FLAGS), _CLONE3_ENOSYS),
    # -- argument filters: socket families (firejail's `protocol`), W^X memory ------
    **{f"@socket-{name}": (_socket_family(family),) for name, family in SOCKET_FAMILIES.items()},
    "@socket-other": tuple(_socket_family(family) for family in _OTHER_FAMILIES),
    "@memory-deny-write-execute": _WRITE_EXECUTE,
    # -- building blocks for allow-lists (default_action = "deny") ------------
    "@basic-io": ("_llseek", "close", "close_range", "dup", "dup2", "dup3", "lseek", "pread64",
                  "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readv",
                  "write", "writev"),
    "@file-system": ("access", "chdir", "chmod", "creat", "faccessat", "faccessat2",
                     "fadvise64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
                     "fcntl", "fcntl64", "fgetxattr", "flistxattr", "flock", "fremovexattr",
                     "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
                     "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents",
                     "getdents64", "getxattr", "inotify_add_watch", "inotify_init",
                     "inotify_init1", "inotify_rm_watch", "lgetxattr", "link", "linkat",
                     "listxattr", "llistxattr", "lremovexattr", "lsetxattr", "lstat", "lstat64",
                     "mkdir", "mkdirat", "mknod", "mknodat", "newfstatat", "open", "openat",
                     "openat2", "readahead", "readlink", "readlinkat", "removexattr", "rename",
                     "renameat", "renameat2", "rmdir", "setxattr", "stat", "stat64", "statfs",
                     "statfs64", "statx", "symlink", "symlinkat", "truncate", "truncate64",
                     "umask", "unlink", "unlinkat", "utime", "utimensat", "utimes"),
    "@io-event": ("_newselect", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait",
                  "epoll_pwait2", "epoll_wait", "eventfd", "eventfd2", "poll", "ppoll",
                  "pselect6", "select"),
    "@ipc": ("memfd_create", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
             "mq_timedsend", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "pipe",
             "pipe2", "semctl", "semget", "semop", "semtimedop", "shmat", "shmctl", "shmdt",
             "shmget"),
    "@memory": ("brk", "get_mempolicy", "madvise", "membarrier", "mincore", "mlock", "mlock2",
                "mlockall", "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock",
                "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect"),
    "@network-io": ("accept", "accept4", "bind", "connect", "getpeername", "getsockname",
                    "getsockopt", "listen", "recv", "recvfrom", "recvmmsg", "recvmsg", "send",
                    "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socket",
                    "socketcall", "socketpair"),
    "@process": ("arch_prctl", "capget", "clone", "execve", "execveat", "exit", "exit_group",
                 "fork", "futex", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake",
                 "get_robust_list", "getcpu", "getegid", "geteuid", "getgid", "getgroups",
                 "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
                 "getresgid", "getresuid", "getrlimit", "getrusage", "getsid", "gettid",
                 "getuid", "ioctl", "kill", "pidfd_open", "pidfd_send_signal", "prctl",
                 "prlimit64", "restart_syscall", "rseq", "sched_get_priority_max",
                 "sched_get_priority_min", "sched_getaffinity", "sched_getattr",
                 "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
                 "sched_yield", "set_robust_list", "set_tid_address", "setpgid", "setrlimit",
                 "setsid", "sysinfo", "tgkill", "times", "tkill", "uname", "vfork", "wait4",
                 "waitid", "waitpid"),
    "@signal": ("pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
                "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo",
                "sigaction", "sigaltstack", "signal", "signalfd", "signalfd4", "sigpending",
                "sigprocmask", "sigreturn", "sigsuspend"),
    "@timer": ("alarm", "clock_getres", "clock_gettime", "clock_nanosleep", "getitimer",
               "gettimeofday", "nanosleep", "setitimer", "time", "timer_create", "timer_delete",
               "timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create",
               "timerfd_gettime", "timerfd_settime"),
    "@sync": ("fdatasync", "fsync", "msync", "sync", "sync_file_range", "sync_file_range2",
              "syncfs"),
    "@system-service": ("@basic-io", "@file-system", "@io-event", "@ipc", "@memory",
                        "@network-io", "@process", "@signal", "@timer", "@sync",
                        "copy_file_range", "sendfile", "sendfile64", "splice", "tee"),
}

# --- actions ---------------------------------------------------------------------


def parse_action(text: str, origin: str, allowed: tuple[str, ...] = ACTIONS) -> str:
    """Canonical form of an action: 'errno:EPERM', 'kill-process', 'trap', 'log'."""
    from ..errors import suggest

    kind, _, arg = text.partition(":")
    if kind not in allowed:
        raise ConfigError(f"unknown seccomp action {text!r}", origin=origin,
                          hint=suggest(kind, allowed) or f"choose one of {', '.join(allowed)}")
    if kind != "errno":
        if arg:
            raise ConfigError(f"action {kind!r} takes no argument", origin=origin)
        return kind
    name = arg or "EPERM"
    if not hasattr(_errno, name) or not name.startswith("E"):
        names = sorted(n for n in _errno.errorcode.values())
        raise ConfigError(f"unknown errno name {name!r}", origin=origin,
                          hint=suggest(name, names) or "use a name like EPERM or ENOSYS")
    return f"errno:{name}"


def errno_value(action: str) -> int:
    return getattr(_errno, action.partition(":")[2])


# --- resolution ------------------------------------------------------------------


class Rule(Record):
    """One resolved filter entry."""

    syscall: str
    action: str
    match: tuple[ArgMatch, ...] = ()
    #: The group that brought the syscall in ("@obsolete in @default"), if any.
    group: str = ""
    #: The profile key or option that asked for it.
    origin: str = ""

    @property
    def reason(self) -> str:
        return f"{self.group}; {self.origin}" if self.group else self.origin

    def describe_match(self) -> str:
        parts = []
        for m in self.match:
            name = VALUE_NAMES.get((self.syscall, m.arg, m.value))
            value = f"{m.value:#x}" + (f" ({name})" if name else "")
            if m.mask == m.value:
                parts.append(f"arg{m.arg} has {value}")
            else:
                parts.append(f"arg{m.arg} & {m.mask:#x} == {value}")
        return " and ".join(parts)


class RuleSet(Record):
    """A resolved seccomp policy: what runtime/seccomp.py compiles."""

    mode: str                      # "deny-list" or "allow-list"
    default_action: str            # "allow" or an action
    bad_arch_action: str
    main: tuple[Rule, ...]         # unconditional, evaluated second
    guard: tuple[Rule, ...]        # argument filters, evaluated first


def _expand(entry: str, origin: str, chain: tuple[str, ...] = ()) -> list[tuple[Call, str]]:
    """Flatten a deny/allow entry into Calls with the group chain that produced them."""
    if not entry.startswith("@"):
        return [(Call(entry), _chain(chain))]
    if entry not in GROUPS:
        raise ConfigError(f"unknown seccomp group {entry!r}", origin=origin,
                          hint=group_hint(entry))
    if entry in chain:
        return []
    out: list[tuple[Call, str]] = []
    for member in GROUPS[entry]:
        if isinstance(member, Call):
            out.append((member, _chain((*chain, entry))))
        else:
            out.extend(_expand(member, origin, (*chain, entry)))
    return out


def _chain(chain: tuple[str, ...]) -> str:
    return " in ".join(reversed(chain))


def names_in(group: str) -> frozenset[str]:
    """The syscalls a group refuses or allows whole (argument filters left out)."""
    return frozenset(call.name for call, _ in _expand(group, group) if not call.match)


def group_hint(word: str) -> str:
    from ..errors import suggest

    return suggest(word, list(GROUPS)) or f"known groups: {', '.join(sorted(GROUPS))}"


def _guards(spec, action: str, origin) -> list[Rule]:
    rules: list[Rule] = []
    if spec.block_tty_injection:
        for value in (TIOCSTI, TIOCLINUX):
            rules.append(Rule("ioctl", action, (ArgMatch(1, 0xFFFFFFFF, value),),
                              origin=origin("block_tty_injection")))
    if not (spec.allow_userns or spec.allow_nesting):
        rules += [Rule(c.name, c.action or action, c.match,
                       origin=f"{origin('allow_userns')} = false")
                  for c in (*_flags("unshare", 0, (CLONE_NEWUSER,)),
                            *_flags("clone", 0, (CLONE_NEWUSER,)), _CLONE3_ENOSYS)]
    return rules


def resolve(spec) -> RuleSet | None:
    """SeccompPolicy -> RuleSet (None when seccomp is disabled).

    Deny-list mode refuses @default plus `deny`, minus the `allow` exceptions.
    Allow-list mode permits `allow` minus `deny`, refusing everything else.
    """
    if not spec.enabled:
        return None
    origin = spec.origin_of
    action = parse_action(spec.action, origin("action"))
    bad_arch = parse_action(spec.bad_arch_action, origin("bad_arch_action"), BAD_ARCH_ACTIONS)
    overrides = {name: parse_action(act, origin(f"actions.{name}")) for name, act in spec.actions}
    for name in overrides:
        if name.startswith("@") and name not in GROUPS:
            raise ConfigError(f"unknown seccomp group {name!r}", origin=origin(f"actions.{name}"),
                              hint=group_hint(name))

    def entries(key: str, values: tuple[str, ...]) -> list[tuple[Call, str, str]]:
        out = []
        for i, value in enumerate(values):
            where = origin(f"{key}[{i}]")
            out += [(call, chain, where) for call, chain in _expand(value, where)]
        return out

    def action_for(call: Call, chain: str) -> str:
        if call.name in overrides:
            return overrides[call.name]
        for group in chain.split(" in ") if chain else ():
            if group in overrides:
                return overrides[group]
        return call.action or action

    if spec.default_action == "allow":
        mode, default = "deny-list", "allow"
        listed = entries("deny", spec.deny)
        if not any(value == "@default" for value in spec.deny):
            listed = [(c, ch, "implicit in deny-list mode") for c, ch in _expand("@default", "")] \
                + listed
        exceptions = {c.name for c, _, _ in entries("allow", spec.allow)}
        chosen = [(c, ch, w) for c, ch, w in listed if c.name not in exceptions
                  and not _lifted(spec, c, ch)]
        main = _dedupe(Rule(c.name, action_for(c, ch), (), ch, w)
                       for c, ch, w in chosen if not c.match)
        guard = [Rule(c.name, action_for(c, ch), c.match, ch, w)
                 for c, ch, w in chosen if c.match]
    elif spec.default_action == "deny":
        mode, default = "allow-list", action
        if not spec.allow:
            raise ConfigError("allow-list mode (default_action = \"deny\") needs seccomp.allow",
                              origin=origin("default_action"),
                              hint="start from allow = [\"@system-service\"]")
        removed = entries("deny", spec.deny)
        refused = {c.name for c, _, _ in removed if not c.match}
        allowed = [(c, ch, w) for c, ch, w in entries("allow", spec.allow)
                   if c.name not in refused and not c.match]
        main_rules = [Rule(c.name, "allow", (), ch, w) for c, ch, w in allowed]
        names = {r.syscall for r in main_rules}
        main_rules += [Rule(n, "allow", origin="needed to exec the command")
                       for n in EXEC_MINIMUM if n not in names]
        if "clone3" not in names and action != "errno:ENOSYS":
            main_rules.append(Rule("clone3", "errno:ENOSYS",
                                   origin="not allowed: ENOSYS so libc falls back to clone"))
        main = _dedupe(main_rules)
        guard = [Rule(c.name, action_for(c, ch), c.match, ch, w)
                 for c, ch, w in removed
                 if c.match and not _lifted(spec, c, ch)]
    else:
        raise ConfigError(f"default_action must be \"allow\" (deny-list) or \"deny\" "
                          f"(allow-list), not {spec.default_action!r}",
                          origin=origin("default_action"))
    guard = _dedupe_guard([*_guards(spec, action, origin), *guard])
    return RuleSet(mode, default, bad_arch, tuple(main), tuple(guard))


#: What allow_userns = true lifts besides namespace creation: the calls an
#: application's own sandbox makes inside the user namespace it created.
#: Chromium's zygote and Firefox's content processes chroot() into an empty
#: directory (/proc/self/fdinfo/, a deleted tmpdir) once they are alone in a
#: fresh user namespace. chroot needs CAP_SYS_CHROOT in the caller's user
#: namespace, which a sandboxed process only has in a namespace it created
#: itself; there it can only narrow what it sees: the root it leaves is jailpy's
#: pivot_root, Landlock rules follow inodes, not paths, and no_new_privs stops
#: the set-id tricks chroot used to enable (docs/security.md). mount,
#: pivot_root and the rest of @mount stay refused.
USERNS_SANDBOX_CALLS = ("chroot",)


#: What namespaces.nested = true lifts besides allow_userns: the whole of
#: @mount, so a process can build a sandbox root (mount, propagation changes,
#: pivot_root, a procfs). Every one of these needs CAP_SYS_ADMIN (CAP_SYS_CHROOT)
#: in the user namespace that owns the caller's mount namespace: the sandbox's
#: processes have no capabilities in jailpy's namespace (they are dropped before
#: execve, and no_new_privs holds), so the calls succeed only in a mount namespace
#: the process created under a user namespace of its own. There the kernel locks
#: every mount it inherited (MNT_LOCKED: it cannot be unmounted or moved to
#: reveal what is under it, nor made writable), so a nested sandbox sees at most
#: what the outer one shows. sethostname and setdomainname likewise need
#: CAP_SYS_ADMIN over the UTS namespace: a sandbox names only the one it made.
#: docs/security.md, "Nesting".
NESTING_CALLS = (*GROUPS["@mount"], "sethostname", "setdomainname")


def _lifted(spec, call: Call, chain: str) -> bool:
    """Whether the settings lift this @default or @namespaces rule."""
    if spec.allow_nesting and call.name in NESTING_CALLS:
        return chain in ("@mount in @default", "@default")  # not when denied by name
    return (spec.allow_userns or spec.allow_nesting) and _lifted_by_userns(call, chain)


def _lifted_by_userns(call: Call, chain: str) -> bool:
    """The rules allow_userns = true lifts: a new user namespace is usually created
    together with others (unshare -Ur, bwrap), so allowing one means allowing the
    flags that come with it; and USERNS_SANDBOX_CALLS when only @default refuses
    them (a profile that denies chroot or @mount by name keeps it refused).
    setns stays refused."""
    if call.name in USERNS_SANDBOX_CALLS:
        return chain == "@mount in @default"
    return call.name in ("unshare", "clone", "clone3") and (bool(call.match) or
                                                            call == _CLONE3_ENOSYS)


def _dedupe(rules) -> list[Rule]:
    seen: dict[str, Rule] = {}
    for rule in rules:
        seen.setdefault(rule.syscall, rule)
    return list(seen.values())


def _dedupe_guard(rules: list[Rule]) -> list[Rule]:
    """One rule per (syscall, match); an unconditional rule makes the rest moot."""
    seen: dict[tuple, Rule] = {}
    whole = {r.syscall for r in rules if not r.match}
    for rule in rules:
        if rule.match and rule.syscall in whole:
            continue
        seen.setdefault((rule.syscall, rule.match), rule)
    return list(seen.values())


def _guard_order(rule: Rule) -> tuple:
    return rule.syscall, tuple((m.arg, m.mask, m.value) for m in rule.match)


def render(rules: RuleSet, skipped: dict[str, str] | None = None) -> list[str]:
    """Human-readable listing, in evaluation order."""
    skipped = skipped or {}
    lines = [f"mode: {rules.mode}",
             f"default action: {rules.default_action}",
             f"foreign ABIs (i386, x32, ...): {rules.bad_arch_action}",
             "", "guard (argument filters, checked first):"]
    for r in sorted(rules.guard, key=_guard_order):
        cond = f" if {r.describe_match()}" if r.match else ""
        lines.append(f"  {r.syscall}{cond} -> {r.action}    [{r.reason}]")
    if not rules.guard:
        lines.append("  (none)")
    lines.append("")
    lines.append(f"{'denied' if rules.mode == 'deny-list' else 'allowed'} syscalls:")
    for r in sorted(rules.main, key=lambda r: r.syscall):
        note = f"  (skipped: {skipped[r.syscall]})" if r.syscall in skipped else ""
        lines.append(f"  {r.syscall:<24} {r.action:<14} [{r.reason}]{note}")
    return lines


def summary(rules: RuleSet | None, skipped: int = 0) -> list[str]:
    """A few lines for --explain."""
    if rules is None:
        return ["seccomp     off"]
    listed = "denied" if rules.mode == "deny-list" else "allowed"
    extra = f", {skipped} not on this architecture" if skipped else ""
    lines = [f"seccomp     {rules.mode}, {len(rules.main)} syscalls {listed}{extra}; "
             f"default {rules.default_action}; foreign ABIs: {rules.bad_arch_action}"]
    grouped: dict[tuple[str, str], list[str]] = {}
    for r in sorted(rules.guard, key=_guard_order):
        names = [VALUE_NAMES.get((r.syscall, m.arg, m.value), f"{m.value:#x}") for m in r.match]
        grouped.setdefault((r.syscall, r.action), []).append(" & ".join(names))
    for (call, action), conds in grouped.items():
        cond = f" with {' or '.join(c for c in conds if c)}" if any(conds) else ""
        lines.append(f"            guard: {call}{cond} -> {action}")
    return lines
