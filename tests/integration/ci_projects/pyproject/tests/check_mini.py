# Named check_*.py so that jailpy's own test run does not collect it; the CI build
# runs it by path.
import mini


def test_slug():
    assert mini.slug("Hello  Sandbox World") == "hello-sandbox-world"


def test_installed_from_wheel():
    # The suite runs against the installed wheel, not the source tree.
    assert "site" in mini.__file__
