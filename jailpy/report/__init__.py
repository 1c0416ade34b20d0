"""Read-only views of a plan and of this machine; nothing here changes state.

    explain.py   `jailpy run --explain`: the core sections, then each feature's
    check.py     `jailpy check`: the Check row, the core rows, then each feature's
    status.py    `--json-status`: the machine-readable result of one run
    <feature>.py limits, network, desktop, nesting, security: explain_sections(plan) and
                 checks()
"""


def features():
    """The feature views in display order, imported only when a report is asked for."""
    from . import desktop, limits, nesting, network, security

    return (limits, network, desktop, nesting, security)
