"""Seccomp rule resolution and compilation (libseccomp, no sandbox)."""

from __future__ import annotations

import platform
import struct

import pytest

from jailpy.errors import ConfigError
from jailpy.policy import SeccompPolicy
from jailpy.runtime.seccomp import cache_key, compile_rules, compose, program_for
from jailpy.plan.seccomp import GROUPS, RuleSet, parse_action, resolve

pyseccomp = pytest.importorskip("pyseccomp")

#: firejail 0.9.72's @default-nodebuggers (its seccomp default), from its syscalls.txt,
#: with its typo 'set_mempolicyvmsplice' split into the two names it meant.
FIREJAIL_DEFAULT = """
adjtimex clock_adjtime clock_settime settimeofday stime modify_ldt subpage_prot switch_endian
vm86 vm86old lookup_dcookie perf_event_open pidfd_getfd process_vm_writev rtas
s390_runtime_instr sys_debug_setcontext delete_module finit_module init_module chroot fsconfig
fsmount fsopen fspick mount move_mount open_tree pivot_root umount umount2 _sysctl afs_syscall
bdflush break create_module ftime get_kernel_syms getpmsg gtty idle lock mpx prof profil
putpmsg query_module security sgetmask ssetmask stty sysfs tuxcall ulimit uselib ustat vserver
ioperm iopl pciconfig_iobase pciconfig_read pciconfig_write s390_mmio_read s390_mmio_write
kexec_load kexec_file_load reboot swapon swapoff open_by_handle_at name_to_handle_at
ioprio_set ni_syscall syslog fanotify_init add_key request_key mbind migrate_pages move_pages
keyctl io_setup io_destroy io_getevents io_submit io_cancel remap_file_pages set_mempolicy
vmsplice userfaultfd acct bpf nfsservctl setdomainname sethostname vhangup ptrace personality
process_vm_readv
""".split()


def native(name: str) -> bool:
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) >= 0


def default_profile_rules() -> RuleSet:
    spec = SeccompPolicy(deny=("@ptrace", "@io-uring", "@namespaces"))
    rules = resolve(spec)
    assert rules is not None
    return rules


def test_default_deny_list_covers_firejail_default():
    denied = {r.syscall for r in default_profile_rules().main}
    missing = sorted(n for n in FIREJAIL_DEFAULT if native(n) and n not in denied)
    assert missing == []


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the count is for x86_64")
def test_default_deny_list_size_on_x86_64():
    denied = {r.syscall for r in default_profile_rules().main if native(r.syscall)}
    assert len(denied) >= 74


def test_every_group_member_is_a_syscall_somewhere():
    from jailpy.runtime.seccomp import NEWER_SYSCALLS

    known_elsewhere = {"s390_mmio_read", "s390_mmio_write"}  # newer than some libseccomp
    for group, members in GROUPS.items():
        for member in members:
            name = member if isinstance(member, str) else member.name
            if name.startswith("@"):
                assert name in GROUPS, (group, name)
                continue
            resolved = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
            assert resolved != -1 or name in NEWER_SYSCALLS or name in known_elsewhere, \
                (group, name)


def test_guards_are_on_by_default():
    rules = resolve(SeccompPolicy())
    guarded = {(r.syscall, r.match[0].value if r.match else None, r.action) for r in rules.guard}
    assert ("ioctl", 0x5412, "errno:EPERM") in guarded
    assert ("ioctl", 0x541C, "errno:EPERM") in guarded
    assert ("unshare", 0x10000000, "errno:EPERM") in guarded
    assert ("clone", 0x10000000, "errno:EPERM") in guarded
    assert ("clone3", None, "errno:ENOSYS") in guarded
    assert rules.bad_arch_action == "kill-process"


def test_allow_userns_lifts_namespace_creation_but_not_setns():
    rules = resolve(SeccompPolicy(deny=("@namespaces",), allow_userns=True))
    assert {r.syscall for r in rules.guard} == {"ioctl"}
    assert "setns" in {r.syscall for r in rules.main}


def test_allow_userns_lifts_chroot_only_where_default_refuses_it():
    """Chromium's and Firefox's sandboxes chroot inside their own user namespace;
    the rest of @mount stays refused, and so does a chroot a profile names."""
    lifted = {r.syscall for r in resolve(SeccompPolicy(allow_userns=True)).main}
    assert "chroot" not in lifted
    assert {"mount", "pivot_root", "umount2", "fsmount", "open_tree"} <= lifted
    assert "chroot" in {r.syscall for r in resolve(SeccompPolicy()).main}
    for deny in (("chroot",), ("@mount",)):
        named = resolve(SeccompPolicy(deny=deny, allow_userns=True))
        assert "chroot" in {r.syscall for r in named.main}, deny


def test_nesting_lifts_mount_family_only_where_default_refuses_it():
    """namespaces.nested: the @mount calls and sethostname/setdomainname (which the
    kernel confines to namespaces the caller made) and namespace creation; setns,
    the TIOCSTI guard and the rest of @default stay, and a name a profile denies
    stays refused."""
    rules = resolve(SeccompPolicy(deny=("@namespaces",), allow_nesting=True))
    denied = {r.syscall for r in rules.main}
    assert not denied & {"mount", "umount2", "pivot_root", "fsmount", "open_tree", "chroot",
                         "sethostname", "setdomainname"}
    assert {"setns", "keyctl", "bpf", "init_module", "reboot"} <= denied
    assert {r.syscall for r in rules.guard} == {"ioctl"}
    for deny in (("@mount",), ("mount", "sethostname")):
        named = {r.syscall for r in resolve(SeccompPolicy(deny=deny, allow_nesting=True)).main}
        assert set(deny) - {"@mount"} <= named and ("mount" in named), deny


def test_deny_list_always_includes_default_and_exceptions_apply():
    rules = resolve(SeccompPolicy(deny=("ptrace",), allow=("sethostname",)))
    denied = {r.syscall for r in rules.main}
    assert {"ptrace", "keyctl", "bpf"} <= denied
    assert "sethostname" not in denied


def test_actions_per_syscall_and_group():
    spec = SeccompPolicy(action="errno:EACCES",
                         actions=(("keyctl", "kill-process"), ("@mount", "errno:ENOSYS")))
    by_name = {r.syscall: r.action for r in resolve(spec).main}
    assert by_name["keyctl"] == "kill-process"
    assert by_name["mount"] == "errno:ENOSYS"
    assert by_name["bpf"] == "errno:EACCES"


def test_allow_list_mode():
    rules = resolve(SeccompPolicy(default_action="deny", allow=("@system-service",),
                                  deny=("socket",), action="kill-process"))
    allowed = {r.syscall for r in rules.main if r.action == "allow"}
    assert rules.mode == "allow-list" and rules.default_action == "kill-process"
    assert {"read", "openat", "execve", "clone"} <= allowed
    assert "socket" not in allowed
    assert [r.action for r in rules.main if r.syscall == "clone3"] == ["errno:ENOSYS"]


def test_allow_list_needs_allow_entries():
    with pytest.raises(ConfigError, match="needs seccomp.allow"):
        resolve(SeccompPolicy(default_action="deny"))


@pytest.mark.parametrize("text,expected", [
    ("errno", "errno:EPERM"), ("errno:ENOSYS", "errno:ENOSYS"), ("kill-process", "kill-process"),
    ("trap", "trap"), ("log", "log")])
def test_parse_action(text, expected):
    assert parse_action(text, "x") == expected


@pytest.mark.parametrize("text,hint", [("errno:EPREM", "EPERM"), ("kil-process", "kill-process")])
def test_parse_action_errors_suggest(text, hint):
    with pytest.raises(ConfigError) as info:
        parse_action(text, "profile.toml: seccomp.action")
    assert hint in info.value.hint and info.value.origin == "profile.toml: seccomp.action"


def test_log_is_not_a_bad_arch_action():
    with pytest.raises(ConfigError):
        resolve(SeccompPolicy(bad_arch_action="log"))


def test_unknown_group_suggests():
    with pytest.raises(ConfigError) as info:
        resolve(SeccompPolicy(deny=("@mout",), origins=(("deny[0]", "p.toml: seccomp.deny[0]"),)))
    assert info.value.origin == "p.toml: seccomp.deny[0]" and "@mount" in info.value.hint


def test_unknown_syscall_fails_at_compile_with_origin_and_suggestion():
    spec = SeccompPolicy(deny=("ptrac",), origins=(("deny[0]", "p.toml: seccomp.deny[0]"),))
    with pytest.raises(ConfigError) as info:
        compile_rules(resolve(spec))
    assert info.value.origin == "p.toml: seccomp.deny[0]"
    assert "ptrace" in info.value.hint


def test_names_of_other_architectures_are_skipped():
    compiled = compile_rules(resolve(SeccompPolicy(deny=("vm86",))))
    if not native("vm86"):
        assert "vm86" in compiled.skipped


def test_compose_jumps_from_every_guard_allow_to_the_main_filter():
    rules = resolve(SeccompPolicy())
    compiled = compile_rules(rules)
    program = compiled.program
    insns = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    jumps = [(i, k) for i, (code, _, _, k) in enumerate(insns) if code == 0x05]
    assert jumps, "the guard's allows must have become jumps"
    targets = {i + 1 + k for i, k in jumps}
    assert len(targets) == 1
    main_start = targets.pop()
    # The main filter starts like any libseccomp filter: load the architecture.
    assert insns[main_start] == (0x20, 0, 0, 4)
    assert all(code != 0x06 or k != 0x7FFF0000 for code, _, _, k in insns[:main_start])


def test_compose_refuses_register_returns():
    with pytest.raises(Exception):
        compose(struct.pack("<HBBI", 0x16, 0, 0, 0), struct.pack("<HBBI", 0x06, 0, 0, 0))


def test_cache_key_follows_policy():
    base = SeccompPolicy()
    assert cache_key(base) == cache_key(SeccompPolicy())
    assert cache_key(base) != cache_key(SeccompPolicy(action="errno:EACCES"))
    assert cache_key(base) != cache_key(base.replace(bad_arch_action="trap"))
    assert cache_key(base) != cache_key(base.replace(deny=("@default",)))
    # Origins only word error messages; they do not change the filter.
    assert cache_key(base) == cache_key(base.replace(origins=(("action", "--x"),)))


def test_cache_hit_neither_resolves_nor_compiles(tmp_path, monkeypatch):
    """The key is the policy record: a hit needs no rule resolution and no libseccomp."""
    from jailpy.plan import seccomp as seccomp_rules
    from jailpy.runtime import seccomp

    env = {"XDG_CACHE_HOME": str(tmp_path)}
    spec = SeccompPolicy(deny=("@mount",))
    program = seccomp.program_for(spec, env)
    assert len(list((tmp_path / "jailpy").glob("*.bpf"))) == 1

    def fail(*args):
        raise AssertionError("resolved or compiled on a cache hit")

    monkeypatch.setattr(seccomp_rules, "resolve", fail)
    monkeypatch.setattr(seccomp, "compile_rules", fail)
    assert seccomp.program_for(spec, env) == program
    with pytest.raises(AssertionError):  # a different policy is a miss
        seccomp.program_for(spec.replace(deny=("@swap",)), env)


def test_unknown_syscall_is_not_cached(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    spec = SeccompPolicy(deny=("no_such_call",))
    for _ in range(2):
        with pytest.raises(ConfigError, match="unknown syscall"):
            program_for(spec, env)
    assert list((tmp_path / "jailpy").glob("*.bpf")) == []
