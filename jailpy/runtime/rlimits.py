"""Apply rlimits in the target, just before execve.

rlimits are per process and inherited across fork and execve, so setting them
in the target covers everything the command starts, and nothing of jailpy's
own (pid 1 and the namespace helper keep the caller's limits and can always
clean up). Capabilities inside a user namespace do not allow raising a hard
limit (the kernel checks CAP_SYS_RESOURCE in the initial namespace), so a
hard limit above the caller's is refused with the caller's value in the
message.

RLIMIT_NPROC deserves a note (also in docs/limits.md): since Linux 5.14 the
count is kept per user namespace, so in a sandbox with its own user
namespace it counts the sandbox's processes, not every process of the host
user; with the user namespace shared it counts every process of the real uid
on the whole host.
"""

from __future__ import annotations

import resource

from ..errors import SetupError
from ..policy import Limits

RESOURCES = {
    "as": resource.RLIMIT_AS, "data": resource.RLIMIT_DATA, "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC, "cpu": resource.RLIMIT_CPU, "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE, "stack": resource.RLIMIT_STACK,
    "memlock": resource.RLIMIT_MEMLOCK,
}


def _show(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def apply(limits: Limits) -> None:
    """setrlimit for each configured limit; SetupError naming its origin on refusal."""
    for name, soft, hard in limits.rlimits:
        res = RESOURCES[name]
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as exc:
            _, cur_hard = resource.getrlimit(res)
            raise SetupError(
                f"cannot set RLIMIT_{name.upper()} to {_show(soft)}:{_show(hard)}: the caller's "
                f"hard limit is {_show(cur_hard)} and only root can raise it",
                origin=limits.origin_of(f"rlimits.{name}"),
                hint="lower the hard limit, or raise it for the caller (ulimit -H, "
                "/etc/security/limits.conf)") from exc
