"""Kernel interfaces: ctypes bindings and constants (the only libc-by-hand code)."""
