"""The runtime: executes a Plan with real namespaces, mounts and processes."""
