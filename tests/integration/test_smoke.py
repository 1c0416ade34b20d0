"""The default profile runs a real command as an unprivileged user."""


def test_default_profile_runs_id(jailpy, test_user):
    result = jailpy.sandbox("id -u; hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(test_user.uid), "jailpy"]
