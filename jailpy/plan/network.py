"""Network settings as data: modes, published ports, the helpers' address plan,
and the files a networked sandbox gets in /etc.

Everything here is pure: profile values in, Policy/Plan pieces out, no
syscalls that change state. The runtime side (starting slirp4netns or pasta)
lives in runtime/network.py; the TCP port rules are part of the Landlock
ruleset (landlock_rules.py). See docs/network.md for the design.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..policy import GENERATED_KINDS, MountOp, Network, PortMapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from ..policy import Policy

#: Modes that need a user-mode network helper started by the supervisor.
HELPER_MODES = ("slirp4netns", "pasta")
#: Debian/Ubuntu/Fedora package that ships each helper (for error hints).
PACKAGES = {"slirp4netns": "slirp4netns", "pasta": "passt"}

# One address plan for both helpers: slirp4netns' defaults, and pasta is told
# the same (-a/-n/-g/--dns-forward), so users and profiles see one network.
SANDBOX_ADDRESS = "10.0.2.100"
PREFIX_LENGTH = 24
#: The gateway; also the host's loopback when network.host_loopback = true.
HOST_ADDRESS = "10.0.2.2"
#: The helper's DNS forwarder (queries go to the host's resolver).
DNS_ADDRESS = "10.0.2.3"
MTU = 65520
#: Host address a published port listens on when the spec names none.
DEFAULT_PUBLISH_ADDRESS = "127.0.0.1"

PUBLISH_FORMAT = "[HOST_ADDR:]HOST_PORT:SANDBOX_PORT[/tcp|/udp]"
#: Internal mount-op kind: a read-only file with generated content bound over dest.
DATA_KIND = GENERATED_KINDS[0]


def parse_port(text: str, what: str, origin: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"bad {what} {text!r}: expected a number from 1 to 65535",
                          origin=origin)
    return int(text)


def parse_publish(spec: str, origin: str) -> PortMapping:
    """'8080:80', '127.0.0.1:5353:53/udp' -> PortMapping (host address default 127.0.0.1)."""
    text, proto = spec.strip(), "tcp"
    if "/" in text:
        text, proto = text.rsplit("/", 1)
        proto = proto.lower()
        if proto not in ("tcp", "udp"):
            raise ConfigError(f"bad protocol {proto!r} in {spec!r}: expected tcp or udp",
                              origin=origin)
    if text.startswith("["):
        raise ConfigError(f"IPv6 host addresses are not supported for publishing: {spec!r}",
                          origin=origin, hint="publish on an IPv4 address such as 127.0.0.1")
    parts = text.split(":")
    if len(parts) == 2:
        parts.insert(0, DEFAULT_PUBLISH_ADDRESS)
    if len(parts) != 3:
        raise ConfigError(f"bad port mapping {spec!r}", origin=origin,
                          hint=f"expected {PUBLISH_FORMAT}, e.g. 8080:80")
    address, host_port, sandbox_port = parts
    _check_ipv4(address, spec, origin)
    return PortMapping(proto=proto, host_addr=address,
                       host_port=parse_port(host_port, "host port", origin),
                       sandbox_port=parse_port(sandbox_port, "sandbox port", origin),
                       origin=origin)


def _check_ipv4(address: str, spec: str, origin: str) -> None:
    octets = address.split(".")
    if len(octets) != 4 or not all(o.isdigit() and int(o) < 256 for o in octets):
        raise ConfigError(f"bad host address {address!r} in {spec!r}: expected an IPv4 "
                          "address like 127.0.0.1", origin=origin)


def network_from_profile(net: "dict[str, Any]", origins: "dict[str, Any]",
                         origin_of: "Callable[[str], str] | None" = None) -> Network:
    """The merged [network] table -> Network, refusing combinations that cannot work.

    origins has one origin per array item ("FILE: network.publish[0]", or the
    CLI option); origin_of(path) names where a scalar came from.
    """
    origin_of = origin_of or (lambda path: origins.get(path) or path)
    mode = net.get("mode", "none")
    mode_origin = origin_of("network.mode")
    item_origins = origins.get("network.publish", [])
    publish = tuple(parse_publish(spec, item_origins[i] if i < len(item_origins)
                                  else f"network.publish[{i}]")
                    for i, spec in enumerate(net.get("publish", ())))
    seen: dict[tuple[str, str, int], str] = {}
    for mapping in publish:
        key = (mapping.proto, mapping.host_addr, mapping.host_port)
        if key in seen:
            raise ConfigError(f"host port {mapping.host_addr}:{mapping.host_port}/"
                              f"{mapping.proto} is published twice (also by {seen[key]})",
                              origin=mapping.origin)
        seen[key] = mapping.origin
    if publish and mode not in HELPER_MODES:
        raise ConfigError(f"publishing ports needs network.mode = slirp4netns or pasta, but "
                          f"the mode is {mode!r} ({mode_origin})", origin=publish[0].origin,
                          hint="add --net slirp4netns (or set network.mode)")
    host_loopback = net.get("host_loopback", False)
    if host_loopback and mode == "none":
        raise ConfigError(f"network.host_loopback = true needs network.mode = slirp4netns or "
                          f"pasta, but the mode is 'none' ({mode_origin})",
                          origin=origin_of("network.host_loopback"),
                          hint="add --net slirp4netns (or drop host_loopback)")
    connect = net.get("allow_connect_tcp")
    bind = net.get("allow_bind_tcp")
    rule_origins = tuple((key, (origins.get(f"network.{key}") or [f"network.{key}"])[0])
                         for key in ("allow_connect_tcp", "allow_bind_tcp") if key in net)
    return Network(mode=mode, host_loopback=host_loopback, publish=publish,
                   allow_connect_tcp=None if connect is None else tuple(connect),
                   allow_bind_tcp=None if bind is None else tuple(bind),
                   best_effort=net.get("best_effort", False), origins=rule_origins)


def uses_port_rules(network: Network) -> bool:
    return network.allow_connect_tcp is not None or network.allow_bind_tcp is not None


# --- generated files ---------------------------------------------------------------


def hosts_file(hostname: str) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if hostname and hostname != "localhost":
        lines.append(f"127.0.1.1\t{hostname}")
    return "# generated by jailpy\n" + "\n".join(lines) + "\n"


def resolv_conf() -> str:
    return f"# generated by jailpy: the network helper's DNS forwarder\nnameserver {DNS_ADDRESS}\n"


def generated_files(policy: "Policy", hostname: str,
                    ops: "tuple[MountOp, ...] | None" = None) -> tuple[MountOp, ...]:
    """/etc/resolv.conf and /etc/hosts for a helper-networked sandbox.

    They are bound read-only over whatever the profile put there (usually the
    host's /etc, read-only), so the host's own files are never written. An op
    with the same destination among `ops` (the plan's other mount ops) wins:
    the user chose that file.
    """
    network = policy.network
    if network.mode not in HELPER_MODES or not policy.namespaces.mount:
        return ()
    taken = {op.dest for op in (policy.filesystem.ops if ops is None else ops)}
    origin = f"network.mode = {network.mode} (generated)"
    files = (("/etc/resolv.conf", resolv_conf()), ("/etc/hosts", hosts_file(hostname)))
    return tuple(MountOp(kind=DATA_KIND, dest=dest, content=content, mode=0o644, origin=origin)
                 for dest, content in files if dest not in taken)


# --- --explain -------------------------------------------------------------------------


def explain_lines(network: Network, new_netns: bool, outer_userns: bool = False) -> list[str]:
    """The [network] section of --explain; host mode is said loudly."""
    mode = network.mode
    if mode == "host" or not new_netns:
        lines = ["mode        HOST -- SHARES THE HOST'S NETWORK NAMESPACE: the sandbox can "
                 "reach every service on this machine (127.0.0.1 included) and the network, "
                 "and can listen on the host's ports"]
    elif mode == "none":
        lines = ["mode        none -- own network namespace, loopback only"]
    else:
        lines = [f"mode        {mode} -- user-mode NAT by {mode} ({PACKAGES[mode]}), started "
                 "by jailpy and stopped with the sandbox",
                 f"address     {SANDBOX_ADDRESS}/{PREFIX_LENGTH}, gateway {HOST_ADDRESS}, "
                 f"DNS {DNS_ADDRESS}, MTU {MTU}",
                 "host 127.0.0.1 " + (f"REACHABLE at {HOST_ADDRESS}" if network.host_loopback
                                      else "not reachable")]
        if outer_userns:
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
    return lines
