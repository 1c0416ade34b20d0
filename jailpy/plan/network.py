"""The network feature in the plan: the helpers' address plan and the files a
networked sandbox gets in /etc.

Pure: Policy in, Plan pieces out. The modes and their helpers are
policy.NETWORK_MODES; the profile side ([network] -> Network) is
profile/network.py. The runtime side (starting slirp4netns or pasta) lives
in runtime/network.py; the TCP port rules are part of the Landlock ruleset
(plan/landlock.py). See docs/network.md for the design.
"""

from __future__ import annotations

from ..policy import GENERATED_KINDS, HELPER_MODES, PROXY_MODE, MountOp, Network

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..policy import Policy

# One address plan for both helpers: slirp4netns' defaults, and pasta is told
# the same (-a/-n/-g/--dns-forward), so users and profiles see one network.
SANDBOX_ADDRESS = "10.0.2.100"
PREFIX_LENGTH = 24
#: The gateway; also the host's loopback when network.host_loopback = true.
HOST_ADDRESS = "10.0.2.2"
#: The helper's DNS forwarder (queries go to the host's resolver).
DNS_ADDRESS = "10.0.2.3"
MTU = 65520
#: Internal mount-op kind: a read-only file with generated content bound over dest.
DATA_KIND = GENERATED_KINDS[0]


#: network.mode = "proxy": the port the proxy listens on, on 127.0.0.1 inside the
#: sandbox's own network namespace (squid's customary port).
PROXY_PORT = 3128
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
#: The ports an allow_hosts entry without ":PORT" admits: plain HTTP and HTTPS.
DEFAULT_PORTS = (80, 443)
#: Names the proxy variables exempt: the sandbox's own loopback.
NO_PROXY = "localhost,127.0.0.1,::1"


def uses_port_rules(network: Network) -> bool:
    return network.allow_connect_tcp is not None or network.allow_bind_tcp is not None


# --- egress by name: allow_hosts rules ------------------------------------------------


class HostRule:
    """One network.allow_hosts entry: `pattern` is a name ("pypi.org"), a suffix
    wildcard ("*.pythonhosted.org": any name below it, not the name itself) or an
    IP address; `port` None admits DEFAULT_PORTS."""

    __slots__ = ("pattern", "port")

    def __init__(self, pattern: str, port: int | None) -> None:
        self.pattern = pattern
        self.port = port

    def __str__(self) -> str:
        host = f"[{self.pattern}]" if ":" in self.pattern else self.pattern
        return host if self.port is None else f"{host}:{self.port}"

    def admits(self, host: str, port: int) -> bool:
        """`host` as canonical_host() gives it."""
        if not (port in DEFAULT_PORTS if self.port is None else port == self.port):
            return False
        if self.pattern.startswith("*."):
            return host.endswith(self.pattern[1:])
        return host == self.pattern


def canonical_host(text: str) -> tuple[str, bool]:
    """(host, is_ip) for a name or IP literal as a client or a profile spells it:
    lower case, no trailing dot, IPv6 without brackets. Raises ValueError for
    anything else, including the numeric forms a resolver would read as an
    address ("127.1", "0x7f000001", "2130706433"): they are neither names nor
    the one spelling of an address, so they can never match a rule by accident."""
    import ipaddress

    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(host)), True
    except ValueError:
        pass
    host = host.lower().removesuffix(".")
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_is_label(label) for label in labels):
        raise ValueError(f"{text!r} is not a host name or an IP address")
    last = labels[-1]
    if last.isdigit() or last.startswith("0x"):
        raise ValueError(f"{text!r} is not a host name, and not an IP address in its "
                         "usual notation")
    return host, False


def _is_label(label: str) -> bool:
    return (0 < len(label) <= 63 and label.isascii() and label[0] != "-" and label[-1] != "-"
            and all(c.isalnum() or c in "-_" for c in label))


def split_host_port(text: str) -> tuple[str, str | None]:
    """'name:443' -> ('name', '443'); '[::1]:443' -> ('[::1]', '443'); a bare IPv6
    address has no port."""
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1:] if end > 0 else ""
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPV6] or [IPV6]:PORT")
        return text[:end + 1], rest[1:] if rest else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port
    return text, None


def parse_host_rule(spec: str) -> HostRule:
    """NAME[:PORT], *.SUFFIX[:PORT], IP[:PORT] or [IPV6][:PORT] -> HostRule;
    ValueError says what is wrong."""
    host, port_text = split_host_port(spec.strip())
    port = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port {port_text!r} in {spec!r}: expected 1 to 65535")
        port = int(port_text)
    wildcard = host.startswith("*.")
    name, is_ip = canonical_host(host[2:] if wildcard else host)
    if wildcard and is_ip:
        raise ValueError(f"{spec!r}: a wildcard needs a domain name after '*.'")
    if "*" in name:
        raise ValueError(f"{spec!r}: '*' may only start an entry, as in *.example.org")
    return HostRule(f"*.{name}" if wildcard else name, port)


def proxy_environment() -> dict[str, str]:
    """The variables that point programs at the proxy, in both spellings."""
    env = {}
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        env[name] = env[name.upper()] = PROXY_URL
    env["no_proxy"] = env["NO_PROXY"] = NO_PROXY
    return env


# --- generated files ---------------------------------------------------------------


def hosts_file(hostname: str) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if hostname and hostname != "localhost":
        lines.append(f"127.0.1.1\t{hostname}")
    return "# generated by jailpy\n" + "\n".join(lines) + "\n"


def resolv_conf(mode: str) -> str:
    if mode == PROXY_MODE:
        return ("# generated by jailpy: network.mode = proxy has no resolver; the egress "
                f"proxy at {PROXY_URL} resolves names\n")
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
    if network.mode not in (*HELPER_MODES, PROXY_MODE) or not policy.namespaces.mount:
        return ()
    taken = {op.dest for op in (policy.filesystem.ops if ops is None else ops)}
    origin = f"network.mode = {network.mode} (generated)"
    files = (("/etc/resolv.conf", resolv_conf(network.mode)), ("/etc/hosts", hosts_file(hostname)))
    return tuple(MountOp(kind=DATA_KIND, dest=dest, content=content, mode=0o644, origin=origin)
                 for dest, content in files if dest not in taken)


# --- --explain -------------------------------------------------------------------------
