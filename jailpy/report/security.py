"""What the privilege layers will do: the --explain section and `jailpy check` rows.

Both read what the runtime reads (the plan's Landlock rules, its seccomp
section resolved by plan/seccomp.py) plus read-only kernel queries, so what is
printed is what will be enforced on this machine.
"""

from __future__ import annotations

from .check import Check, read_value


def explain_sections(plan) -> list[tuple[str, list[str]]]:
    """The [security] section, in the order the target applies the layers."""
    from ..plan.landlock import NESTING_OFF, describe
    from ..linux.landlock import abi_version
    from ..plan.seccomp import resolve, summary

    kept = ", ".join(plan.keep_caps) or "none"
    abi, why = abi_version()
    lines = [f"capabilities kept: {kept} (bounding, permitted, effective, inheritable and "
             "ambient sets cleared of everything else; securebits locked)",
             "no_new_privs yes",
             *describe(plan.landlock, abi, why, NESTING_OFF if plan.nested else ""),
             *summary(resolve(plan.seccomp)),
             "execve"]
    return [("security (applied in this order, right before execve)", lines)]


def checks() -> list[Check]:
    from ..linux import landlock as ll
    from ..runtime.seccomp import libseccomp_version
    from ..usercache import cache_dir

    rows = []
    status = read_value("/proc/self/status") or ""
    has_seccomp = "Seccomp:" in status
    try:
        version = libseccomp_version()
        lib_ok = True
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        version, lib_ok = str(exc), False
    rows.append(Check("security", "seccomp filters", has_seccomp and lib_ok,
                      f"kernel {'supports' if has_seccomp else 'LACKS'} seccomp; "
                      f"libseccomp {version}",
                      None if lib_ok else "install libseccomp2"))
    cache = cache_dir()
    rows.append(Check("security", "seccomp cache", cache is not None,
                      cache or "no $XDG_CACHE_HOME or $HOME: filters are compiled every run",
                      "set HOME or XDG_CACHE_HOME" if cache is None else None))
    abi, why = ll.abi_version()
    if abi:
        covered = [f"{n}: {text}" for n, text in sorted(ll.ABI_FEATURES.items()) if n <= abi]
        missing = [f"{n}: {text}" for n, text in sorted(ll.ABI_FEATURES.items()) if n > abi]
        detail = f"ABI {abi}, covers " + "; ".join(covered)
        if missing:
            detail += " -- lacks " + "; ".join(missing)
        rows.append(Check("security", "landlock", True, detail,
                          None if not missing else "a newer kernel adds the missing parts"))
    else:
        rows.append(Check("security", "landlock", False, why,
                          "profiles need landlock.best_effort = true or landlock.enabled = "
                          "false on this kernel"))
    last = read_value("/proc/sys/kernel/cap_last_cap")
    from ..linux.capabilities import CAPABILITIES

    known = max(CAPABILITIES.values())
    rows.append(Check("security", "capabilities", True,
                      f"kernel knows {int(last) + 1 if last else '?'} capabilities, jailpy names "
                      f"{known + 1}; all are dropped either way"))
    rows.append(Check("security", "foreign syscall ABIs", True,
                      "i386 (int 0x80) and x32 syscalls get the filter's bad-arch action"))
    return rows
