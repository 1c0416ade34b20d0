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
    """XDG user dirs from user-dirs.dirs (absolute or $HOME-relative values only),
    else the English defaults under home."""
    found: dict[str, str] = {}
    try:
        with open(os.path.join(config_home, "user-dirs.dirs"), encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                value = value.strip().strip('"').replace("$HOME", home)
                if sep and not key.startswith("#") and value.startswith("/"):
                    found[key] = value
    except (OSError, ValueError):  # unreadable, or not UTF-8: use the defaults
        pass
    base = "" if home == "/" else home
    return {name: found.get(key, f"{base}/{default}") for name, (key, default) in
            _USER_DIRS.items()}


def _absolute(env: Mapping[str, str], name: str) -> str | None:
    """$name when it is an absolute path (the XDG spec says to ignore relative ones)."""
    value = env.get(name) or ""
    return value if value.startswith("/") else None


def standard_variables(env: Mapping[str, str], uid: int, gid: int, cwd: str | None,
                       profile_dir: str | None = None) -> dict[str, str]:
    """The variables a profile may use, derived from the caller's environment."""
    home, user = _absolute(env, "HOME"), env.get("USER")
    if home is None or not user:
        try:
            entry = pwd.getpwuid(uid)
            home, user = home or entry.pw_dir, user or entry.pw_name
        except KeyError:
            home, user = home or "/", user or str(uid)
    home = home.rstrip("/") or "/"
    base = "" if home == "/" else home
    config = _absolute(env, "XDG_CONFIG_HOME") or f"{base}/.config"
    variables = {
        "HOME": home, "USER": user, "UID": str(uid), "GID": str(gid),
        "CWD": cwd or "/",
        "XDG_RUNTIME_DIR": _absolute(env, "XDG_RUNTIME_DIR") or f"/run/user/{uid}",
        "XDG_CONFIG_HOME": config,
        "XDG_DATA_HOME": _absolute(env, "XDG_DATA_HOME") or f"{base}/.local/share",
        "XDG_CACHE_HOME": _absolute(env, "XDG_CACHE_HOME") or f"{base}/.cache",
        "TMPDIR": _absolute(env, "TMPDIR") or "/tmp",
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
