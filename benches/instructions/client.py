"""Drives a running postern over its Unix sockets, as Dovecot and Postfix do.

    client.py jit    DICT_SOCKET   N   first logins of 100 accounts (creates them)
    client.py userdb DICT_SOCKET   N   userdb lookups, a new connection each, H3 hello
    client.py policy POLICY_SOCKET N   policy requests over one persistent connection
    client.py sasl   AUTH_SOCKET   N   SASL PLAIN logins of the 100 accounts over one
                                       persistent connection, as Postfix's smtpd makes them

Every answer is checked, so a run that measures errors fails instead.
"""

import base64
import socket
import sys

PASSWORD = "pw-long-enough-123"
USERS = [f"acct{i:05d}@example.org" for i in range(100)]


def lookup(path, key):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(f"H3\t2\t0\t\tauth\nL{key}\t\n".encode())
    line = s.makefile("rb").readline()
    s.close()
    if not line.startswith(b"O"):
        sys.exit(f"unexpected dict answer {line!r}")


def policy(path, n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rb")
    for i in range(n):
        s.sendall(
            "request=smtpd_access_policy\nprotocol_state=RCPT\n"
            f"sender=someone@elsewhere.net\nrecipient={USERS[i % 100]}\n"
            "client_address=192.0.2.1\n\n".encode()
        )
        line = f.readline()
        if not line.startswith(b"action=") or f.readline() != b"\n":
            sys.exit(f"unexpected policy answer {line!r}")


def sasl(path, n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rb")
    s.sendall(b"VERSION\t1\t2\nCPID\t4242\n")
    while (line := f.readline()) != b"DONE\n":
        if not line:
            sys.exit("the auth handshake ended before DONE")
    for i in range(n):
        resp = base64.b64encode(f"\0{USERS[i % 100]}\0{PASSWORD}".encode()).decode()
        s.sendall(
            f"AUTH\t{i + 1}\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\t"
            f"rip=192.0.2.1\tresp={resp}\n".encode()
        )
        line = f.readline()
        if not line.startswith(f"OK\t{i + 1}\t".encode()):
            sys.exit(f"unexpected auth answer {line!r}")


def main():
    kind, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "policy":
        policy(path, n)
    if kind == "sasl":
        sasl(path, n)
    for i in range(n if kind in ("userdb", "jit") else 0):
        user = USERS[i % 100]
        if kind == "userdb":
            lookup(path, f"shared/userdb/{user}")
        else:
            lookup(path, f'shared/passdb/{PASSWORD}"{user}')


main()
