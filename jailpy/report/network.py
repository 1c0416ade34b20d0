"""The network feature, read-only: its --explain section and `jailpy check` rows."""

from __future__ import annotations

from ..linux.landlock import abi_version
from ..linux.syscalls import CLONE_NEWNET
from ..plan.network import (DEFAULT_PORTS, DNS_ADDRESS, HOST_ADDRESS, MTU, PREFIX_LENGTH,
                            PROXY_URL, SANDBOX_ADDRESS, parse_host_rule, uses_port_rules)
from ..policy import HELPER_MODES, HELPER_PACKAGES, PROXY_MODE
from ..runtime.network import TUN_PATH, TUN_HINT, check_tun, find_helper, ipv6_available
from .check import Check

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..plan import Plan


def explain_sections(plan: "Plan") -> list[tuple[str, list[str]]]:
    """The [network] section of --explain; host mode is said loudly."""
    network = plan.network
    new_netns = bool(plan.unshare_flags & CLONE_NEWNET)
    mode = network.mode
    if mode == "host" or not new_netns:
        lines = ["mode        HOST -- SHARES THE HOST'S NETWORK NAMESPACE: the sandbox can "
                 "reach every service on this machine (127.0.0.1 included) and the network, "
                 "and can listen on the host's ports"]
    elif mode == "none":
        lines = ["mode        none -- own network namespace, loopback only"]
    elif mode == PROXY_MODE:
        lines = _proxy_lines(plan)
    else:
        lines = [f"mode        {mode} -- user-mode NAT by {mode} ({HELPER_PACKAGES[mode]}), started "
                 "by jailpy and stopped with the sandbox",
                 f"address     {SANDBOX_ADDRESS}/{PREFIX_LENGTH}, gateway {HOST_ADDRESS}, "
                 f"DNS {DNS_ADDRESS}, MTU {MTU}",
                 "host 127.0.0.1 " + (f"REACHABLE at {HOST_ADDRESS}" if network.host_loopback
                                      else "not reachable")]
        if plan.outer_userns:
            lines.append("namespace   owned by a user namespace around the sandbox's: no "
                         "capabilities over it inside")
        for m in network.publish:
            note = (" (replies to clients on the host's loopback need host_loopback)"
                    if m.proto == "udp" and mode == "slirp4netns" and not network.host_loopback
                    else "")
            lines.append(f"publish     {m.host_addr}:{m.host_port} on the host -> sandbox port "
                         f"{m.sandbox_port}/{m.proto}{note}    [{m.origin}]")
    for what, ports in (("connect", network.allow_connect_tcp), ("bind", network.allow_bind_tcp)):
        if ports is not None:
            allowed = ", ".join(str(p) for p in ports) or "none"
            lines.append(f"tcp {what:<8}only ports {allowed} (Landlock, "
                         f"{'best effort' if network.best_effort else 'required'})")
    return [("network", lines)]


def _proxy_lines(plan: "Plan") -> list[str]:
    network = plan.network
    lines = ["mode        proxy -- own network namespace, loopback only, no route and no "
             f"resolver; jailpy's egress proxy at {PROXY_URL} inside (HTTP_PROXY, "
             "HTTPS_PROXY, ALL_PROXY) reaches only the hosts below, resolved on the host",
             "carries     http:// requests, and CONNECT for TLS whose SNI names the same host"]
    for spec in network.allow_hosts:
        rule = parse_host_rule(spec)
        ports = (" and ".join(map(str, DEFAULT_PORTS)) if rule.port is None else str(rule.port))
        what = ("any name below " + rule.pattern[2:] if rule.pattern.startswith("*.")
                else rule.pattern)
        lines.append(f"allow       {what}, port{'s' if rule.port is None else ''} {ports}")
    if not network.allow_hosts:
        lines.append("allow       nothing: every attempt is refused (and logged)")
    log = network.egress_log
    lines.append("log         " + ("none (the --json-status summary only)" if log is None
                                   else "stderr" if log == "-" else log))
    return lines


def checks() -> list[Check]:
    """`jailpy check` rows: each helper, the tun device, Landlock port rules, IPv6."""

    def mode_is(*modes: str):
        return lambda plan: plan.network.mode in modes

    rows = []
    tun = check_tun()
    for mode in HELPER_MODES:
        binary = find_helper(mode)
        package = HELPER_PACKAGES[mode]
        if binary is None:
            rows.append(Check("network", mode, False, "not installed",
                              f"install the '{package}' package (apt install {package})",
                              mode_is(mode)))
        elif tun is not None:
            rows.append(Check("network", mode, False, f"{binary}, but {tun}", TUN_HINT,
                              mode_is(mode)))
        else:
            rows.append(Check("network", mode, True, f"ready ({binary})", None, mode_is(mode)))
    rows.append(Check("network", TUN_PATH, tun is None, "usable" if tun is None else tun,
                      None if tun is None else TUN_HINT, mode_is(*HELPER_MODES)))
    abi, why = abi_version()
    ok = abi >= 4
    rows.append(Check("network", "TCP port rules (Landlock ABI 4)", ok,
                      f"Landlock ABI {abi}" if abi else f"Landlock not available: {why}",
                      None if ok else "needs Linux 6.7+ with Landlock enabled, or "
                      "network.best_effort = true",
                      lambda plan: uses_port_rules(plan.network) and not plan.network.best_effort))
    rows.append(_proxy_check())
    rows.append(Check("network", "IPv6 in slirp4netns", True,
                      "enabled" if ipv6_available() else "off (IPv6 disabled on this host)"))
    return rows


def _proxy_check() -> Check:
    """The egress proxy is jailpy's own module run by this interpreter: it needs
    only to be importable (a broken install is the one way it can be missing)."""
    import importlib.util
    import sys

    found = importlib.util.find_spec("jailpy.runtime.egress") is not None
    return Check("network", "egress proxy (network.mode = proxy)", found,
                 f"ready ({sys.executable} -m jailpy.runtime.egress)" if found
                 else "jailpy.runtime.egress is missing from this installation",
                 None if found else "reinstall jailpy",
                 lambda plan: plan.network.mode == PROXY_MODE)
