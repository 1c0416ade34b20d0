"""The runtime: Plan in, Result out; every state-changing syscall is made here.

    launcher.py   supervisor -> namespace child -> pid 1 (init.py) -> target (target.py);
                  channel.py carries failures back, mounts.py builds the root
    concerns      each with prepare(plan) on the host before fork, host_step(pid)
                  after unshare, apply(...) inside, close() after exit:
                  userns caps rlimits seccomp landlock limits (cgroups watchdog)
    helper.py     HelperProcess, under network.py (slirp4netns, pasta, the egress proxy)
                  and desktop.py (D-Bus); egress.py is the proxy's own program
    x11.py        X authority cookies for desktop.py
"""
