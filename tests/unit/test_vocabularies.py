"""Each vocabulary is written once, in policy.py, and its readers agree with it.

A new mount op kind is one MOUNT_TABLE row plus one RootBuilder `_op_<kind>`
method; these tests fail when a reader still spells a vocabulary out itself.
"""

from __future__ import annotations

from jailpy.cli.options import RUN_OPTIONS
from jailpy.policy import (MOUNT_KINDS, MOUNT_TABLE, NAMESPACES, NETWORK_MODES, Namespaces,
                           Network)
from jailpy.profile import schema
from jailpy.profile.convert import mount_op
from jailpy.runtime.mounts import RootBuilder


def test_every_mount_kind_has_its_executor():
    missing = [kind for kind in MOUNT_TABLE
               if not hasattr(RootBuilder, "_op_" + kind.replace("-", "_"))]
    assert missing == []


def test_run_options_are_the_mount_table_rows():
    """--NAME and --NAME-try for every kind profiles can name, with the row's arguments."""
    options = {opt.flags[0]: opt for opt in RUN_OPTIONS}
    for kind in MOUNT_KINDS:
        row = MOUNT_TABLE[kind]
        forms = [(row.option, row.help)] + ([(row.option + "-try", row.try_help)]
                                            if row.try_form else [])
        for flag, help_text in forms:
            opt = options[flag]
            assert (opt.nargs, opt.metavar, opt.help) == \
                (len(row.arguments), row.metavar, help_text), flag


def test_an_option_and_its_profile_table_make_the_same_op():
    for kind in MOUNT_KINDS:
        row = MOUNT_TABLE[kind]
        values = {"source": "/src", "dest": "/dest", "content": "text", "mode": "0700",
                  "upper": "/up", "work": "/work"}
        op = mount_op(row.table(tuple(values[f] for f in row.arguments)), "--" + kind)
        assert op.kind == kind and op.dest == "/dest"
        assert op.source == ("/src" if row.source else None)
        assert (op.upper, op.work) == (("/up", "/work") if "upper" in row.arguments
                                       else (None, None))


def test_namespaces_are_one_vocabulary():
    # `nested` is not a namespace kind: it says what the sandbox may do in
    # namespaces of its own (docs/security.md, "Nesting").
    assert Namespaces._fields == (*NAMESPACES, "nested")
    assert tuple(schema.SCHEMA["namespaces"]) == (*NAMESPACES, "nested")


def test_network_modes_are_one_vocabulary():
    assert Network().mode in NETWORK_MODES
    assert schema.SCHEMA["network"]["mode"].doc == "none, host, slirp4netns, pasta or proxy."
