"""${VARIABLE} expansion in profile strings.

Only a fixed set of names is known; an unknown name is an error rather than
an empty string, because `${HOMEE}/.ssh` silently becoming `/.ssh` is exactly
the kind of quiet policy hole a sandbox profile must not have.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..policy import Caller

from ..errors import ConfigError


def standard_variables(caller: Caller, profile_dir: str | None = None) -> dict[str, str]:
    """The variables a profile may use: the caller's places (Caller.variables), and
    ${PROFILE_DIR}, the directory of the file being expanded."""
    variables = caller.variables()
    if profile_dir is not None:
        variables["PROFILE_DIR"] = profile_dir
    return variables


def expand(value: str, variables: Mapping[str, str], origin: str) -> str:
    """Replace ${NAME}; `$$` is a literal dollar sign."""
    if "$" not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if value.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if not value.startswith("${", i):
            raise ConfigError(f"'$' must start ${{NAME}} or be doubled as '$$' in {value!r}",
                              origin=origin)
        end = value.find("}", i)
        if end < 0:
            raise ConfigError(f"unterminated ${{ in {value!r}", origin=origin)
        name = value[i + 2:end]
        if name not in variables:
            known = ", ".join(sorted(variables))
            shown = f"${{{name}}}" if name.isprintable() else repr(value[i:end + 1])
            raise ConfigError(f"unknown variable {shown}", origin=origin,
                              hint=f"known variables: {known}")
        if name == "HOME" and _system_tree(variables[name]):
            raise ConfigError(f"${{HOME}} is {variables[name]}, a system directory: "
                              "a home mount there would cover it", origin=origin,
                              hint="set HOME to the user's own directory")
        out.append(variables[name])
        i = end + 1
    return "".join(out)


#: Directories a home can never be: a home tmpfs or bind there covers the system.
_SYSTEM_TREES = ("/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
                 "/proc", "/sys", "/dev", "/run", "/tmp", "/var", "/opt", "/boot")


def _system_tree(path: str) -> bool:
    path = path.rstrip("/") or "/"
    return path in _SYSTEM_TREES or path.startswith(("/usr/", "/proc/", "/sys/", "/dev/",
                                                      "/etc/", "/boot/"))
