"""The [network] profile section -> the Network policy record.

Parses published-port specs and refuses combinations that cannot work, with
the origin (profile file and key, or CLI option) of the value at fault.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..policy import HELPER_MODES, PROXY_MODE, Network, Origins, PortMapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Host address a published port listens on when the spec names none.
DEFAULT_PUBLISH_ADDRESS = "127.0.0.1"

PUBLISH_FORMAT = "[HOST_ADDR:]HOST_PORT:SANDBOX_PORT[/tcp|/udp]"
#: "slirp4netns or pasta", for messages.
_HELPERS = " or ".join(HELPER_MODES)


def parse_port(text: str, what: str, origin: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
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
    if len(octets) != 4 or not all(o.isascii() and o.isdigit() and int(o) < 256 for o in octets):
        raise ConfigError(f"bad host address {address!r} in {spec!r}: expected an IPv4 "
                          "address like 127.0.0.1", origin=origin)


def network_from_profile(net: "dict[str, Any]", origins: "dict[str, Any]") -> Network:
    """The merged [network] table -> Network, refusing combinations that cannot work.

    origins: the merged document's Origins (or a plain mapping of the same shape).
    """
    origins = Origins(origins)
    mode = net.get("mode", "none")
    mode_origin = origins.of("network.mode")
    publish = tuple(parse_publish(spec, origins.item("network.publish", i))
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
        raise ConfigError(f"publishing ports needs network.mode = {_HELPERS}, but "
                          f"the mode is {mode!r} ({mode_origin})", origin=publish[0].origin,
                          hint="add --net slirp4netns (or set network.mode)")
    host_loopback = net.get("host_loopback", False)
    if host_loopback and mode == "none":
        raise ConfigError(f"network.host_loopback = true needs network.mode = {_HELPERS}, "
                          f"but the mode is 'none' ({mode_origin})",
                          origin=origins.of("network.host_loopback"),
                          hint="add --net slirp4netns (or drop host_loopback)")
    allow_hosts = _allow_hosts(net, origins, mode, mode_origin)
    egress_log = net.get("egress_log")
    if egress_log is not None and mode != PROXY_MODE:
        raise ConfigError(f"network.egress_log needs network.mode = {PROXY_MODE!r}, but the "
                          f"mode is {mode!r} ({mode_origin})",
                          origin=origins.of("network.egress_log"),
                          hint="add --allow-host NAME (or --net proxy)")
    if egress_log is not None and egress_log != "-" and not egress_log.startswith("/"):
        raise ConfigError(f"network.egress_log must be an absolute path or '-' (stderr), not "
                          f"{egress_log!r}", origin=origins.of("network.egress_log"))
    connect = net.get("allow_connect_tcp")
    bind = net.get("allow_bind_tcp")
    rule_origins = tuple((key, origins.of(f"network.{key}"))
                         for key in ("allow_connect_tcp", "allow_bind_tcp") if key in net)
    return Network(mode=mode, host_loopback=host_loopback, publish=publish,
                   allow_connect_tcp=None if connect is None else tuple(connect),
                   allow_bind_tcp=None if bind is None else tuple(bind),
                   best_effort=net.get("best_effort", False), allow_hosts=allow_hosts,
                   egress_log=egress_log, origins=rule_origins)


def _allow_hosts(net: "dict[str, Any]", origins: Origins, mode: str,
                 mode_origin: str) -> tuple[str, ...]:
    """network.allow_hosts, each entry checked and in its canonical spelling; only
    the proxy mode can honour them (any other mode would give more, or nothing)."""
    rules: list[str] = []
    if not net.get("allow_hosts"):
        return ()
    from ..plan.network import parse_host_rule  # not on the start-up path of other modes

    for i, spec in enumerate(net["allow_hosts"]):
        origin = origins.item("network.allow_hosts", i)
        try:
            rule = str(parse_host_rule(spec))
        except ValueError as exc:
            raise ConfigError(f"bad host {exc}", origin=origin,
                              hint="expected NAME, *.DOMAIN or an IP address, with an "
                              "optional :PORT, e.g. pypi.org or github.com:443") from None
        if mode != PROXY_MODE:
            raise ConfigError(f"network.allow_hosts needs network.mode = {PROXY_MODE!r}, but "
                              f"the mode is {mode!r} ({mode_origin})", origin=origin,
                              hint=f"use --net {PROXY_MODE} (or network.mode = "
                              f"\"{PROXY_MODE}\"); --allow-host selects it unless --net "
                              "names another mode")
        if rule not in rules:
            rules.append(rule)
    return tuple(rules)
