"""Kernel interfaces: the only ctypes code in jailpy, plain data and thin wrappers.

    syscalls.py      libc calls the os module lacks (unshare, the new mount API,
                     openat2, prctl, capget/capset, seccomp, wait4, lo up), libseccomp's version
    landlock.py      the Landlock syscalls and what each ABI version covers
    capabilities.py  capability names and numbers (no ctypes; read by profile validation)
"""
