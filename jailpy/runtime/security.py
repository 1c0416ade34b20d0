"""The privilege layers of the target, prepared on the host and applied last.

    supervisor (before fork)   validate kept capabilities; get the seccomp BPF
                               program (cache, or resolve the rules and compile);
                               check the Landlock ABI against the policy
    target (before execve)     open Landlock rule paths inside the new root ->
                               drop capabilities, lock securebits ->
                               no_new_privs -> enforce Landlock ->
                               load seccomp (last) -> execve

Everything that can fail for a configuration reason fails in the supervisor,
where the error is reported cleanly and nothing has been set up yet.
"""

from __future__ import annotations

import os

from ..errors import SetupError
from ..plan.landlock import derive as derive_landlock
from ..linux import syscalls as sc
from ..linux.capabilities import capability_numbers
from ..plan import Plan
from ..record import Record
from . import caps, landlock, seccomp


class TargetSecurity(Record):
    landlock: landlock.LandlockSetup | None
    seccomp_program: bytes | None


#: Seccomp programs already resolved in this process, by policy section: a
#: program that starts many sandboxes resolves and reads the cache once.
_PROGRAMS: dict[object, bytes | None] = {}


def _program(spec) -> bytes | None:
    if spec not in _PROGRAMS:
        if len(_PROGRAMS) > 32:
            _PROGRAMS.clear()
        _PROGRAMS[spec] = seccomp.program_for(spec)
    return _PROGRAMS[spec]


def prepare(plan: Plan) -> Plan:
    """Decide every privilege layer on the host; returns the plan carrying them."""
    capability_numbers(plan.keep_caps)
    caps.last_capability()  # probed here once, inherited by pid 1 and the target
    program = _program(plan.policy.seccomp)
    setup = landlock.prepare(derive_landlock(plan.policy, plan.mount_ops))
    return plan.replace(security=TargetSecurity(setup, program))


def apply(plan: Plan) -> None:
    """In the target, after fds and cwd are settled: the last steps before execve."""
    prepared = plan.security
    if not isinstance(prepared, TargetSecurity):
        raise SetupError("internal error: privilege layers were not prepared", origin="launcher")
    ruleset = None
    if prepared.landlock is not None:
        ruleset = landlock.build_ruleset(prepared.landlock, (0, 1, 2, *plan.pass_fds))
    try:
        caps.drop_capabilities(plan.keep_caps)
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    except BaseException:
        if ruleset is not None:
            os.close(ruleset)
        raise
    if ruleset is not None:
        landlock.enforce(ruleset)
    if prepared.seccomp_program is not None:
        seccomp.load(prepared.seccomp_program)
