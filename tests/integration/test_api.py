"""The Python API, used the way a program that starts many sandboxes would."""

from __future__ import annotations

import textwrap

from conftest import VENV


def test_sandbox_runs_many_commands_from_one_policy(jailpy, user_tmp):
    script = textwrap.dedent("""
        import os
        from jailpy import Sandbox, load_policy
        from jailpy.errors import CommandError, SetupError

        box = Sandbox(load_policy("default"))
        codes = [box.run(["sh", "-c", f"exit {i}"]).exit_code for i in range(5)]
        print("codes", codes)
        print("signal", box.run(["sh", "-c", "kill -KILL $$"]).signal)
        try:
            box.run(["no-such-binary"])
        except CommandError as err:
            print("missing", err.exit_code)
        policy = load_policy("default")
        bad = policy.replace(filesystem=policy.filesystem.replace(
            ops=policy.filesystem.ops + (type(policy.filesystem.ops[0])(
                kind="ro-bind", source="/nope", dest="/x", origin="api"),)))
        try:
            Sandbox(bad).run(["true"])
        except SetupError as err:
            print("setup", err)
        print("children", len(os.listdir(f"/proc/{os.getpid()}/task")),
              open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().strip() or "none")
    """)
    path = user_tmp / "use_api.py"
    path.write_text(script)
    path.chmod(0o644)
    result = jailpy.raw([str(VENV / "bin" / "python"), str(path)])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "codes [0, 1, 2, 3, 4]" in out
    assert "signal 9" in out
    assert "missing 127" in out
    assert "setup api: source does not exist" in out
    assert "children 1 none" in out  # nothing left behind, no zombies
