"""${VARIABLE} expansion in profile strings.

Only a fixed set of names is known; an unknown name is an error rather than
an empty string, because `${HOMEE}/.ssh` silently becoming `/.ssh` is exactly
the kind of quiet policy hole a sandbox profile must not have.
"""

from __future__ import annotations

import os
import pwd

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Mapping

from ..errors import ConfigError

#: XDG user-dirs keys (user-dirs.dirs) and the variable names profiles use for them.
_USER_DIRS = {
    "DESKTOP": ("XDG_DESKTOP_DIR", "Desktop"), "DOWNLOADS": ("XDG_DOWNLOAD_DIR", "Downloads"),
    "DOCUMENTS": ("XDG_DOCUMENTS_DIR", "Documents"), "MUSIC": ("XDG_MUSIC_DIR", "Music"),
    "PICTURES": ("XDG_PICTURES_DIR", "Pictures"), "VIDEOS": ("XDG_VIDEOS_DIR", "Videos"),
    "TEMPLATES": ("XDG_TEMPLATES_DIR", "Templates"),
    "PUBLICSHARE": ("XDG_PUBLICSHARE_DIR", "Public"),
}


def _user_dirs(home: str, config_home: str) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        with open(os.path.join(config_home, "user-dirs.dirs")) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and not key.startswith("#"):
                    found[key] = value.strip().strip('"').replace("$HOME", home)
    except OSError:
        pass
    return {name: found.get(key, f"{home}/{default}") for name, (key, default) in
            _USER_DIRS.items()}


def standard_variables(env: Mapping[str, str], uid: int, gid: int, cwd: str | None,
                       profile_dir: str | None = None) -> dict[str, str]:
    """The variables a profile may use, derived from the caller's environment."""
    try:
        entry = pwd.getpwuid(uid)
        user, home = entry.pw_name, entry.pw_dir
    except KeyError:
        user, home = str(uid), "/"
    home = env.get("HOME") or home
    config = env.get("XDG_CONFIG_HOME") or f"{home}/.config"
    variables = {
        "HOME": home, "USER": env.get("USER") or user, "UID": str(uid), "GID": str(gid),
        "CWD": cwd or "/",
        "XDG_RUNTIME_DIR": env.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}",
        "XDG_CONFIG_HOME": config,
        "XDG_DATA_HOME": env.get("XDG_DATA_HOME") or f"{home}/.local/share",
        "XDG_CACHE_HOME": env.get("XDG_CACHE_HOME") or f"{home}/.cache",
        "TMPDIR": env.get("TMPDIR") or "/tmp",
    }
    variables.update(_user_dirs(home, config))
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
        out.append(variables[name])
        i = end + 1
    return "".join(out)
