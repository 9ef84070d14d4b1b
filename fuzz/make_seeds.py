#!/usr/bin/env python3
"""Writes the seed corpus in seeds/<target>/ from wire lines captured from Dovecot 2.3.19,
2.4.1 and Postfix 3.7 (the protocol reference's fixtures). Run once; the output is
committed, beside the inputs fuzzing found (kept as regression seeds). Codec seeds start with the header byte the targets read (see src/lib.rs):
0x00 feeds the stream one byte at a time, 0x03 a b c cycles chunks of a+1, b+1, c+1
bytes, 0x80 m adds a line limit of m bytes."""

import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))

DICT = [
    b"H3\t2\t0\t\tauth\n",
    b"Lshared/passdb/alice@example.org\talice@example.org\n",
    b"Lshared/userdb/alice@example.org\talice@example.org\n",
    b"I0\t0\tshared/userdb/\n",
    b"B1\talice@example.org\n",
    b"S1\tshared/last-login/alice@example.org\t1763750000\n",
    b"A1\tpriv/quota/storage\t-2048\n",
    b"C1\n",
    b"H4\t0\t0\t\tlastlogin\n",
    b"B1\talice\t0\n",
    b"S1\tshared/last-login/alice\t1795299509\n",
    b'Lshared/passdb/p\\"a\x01tss"alice@example.org\talice@example.org\r\n',
]
AUTH = [
    b"VERSION\t1\t0\n",
    b"CPID\t13861\n",
    b"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1"
    b"\tresp=AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==\n",
    b"AUTH\t2\tLOGIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\n",
    b"CONT\t2\tYWxpY2VAZXhhbXBsZS5vcmc=\n",
    b"CONT\t2\td3Jvbmc=\n",
    b"AUTH\t3\tPLAIN\tservice=smtp\tsecured\n",
    b"CANCEL\t3\n",
]
POLICY = b"""request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=127.0.0.1
client_name=localhost
client_port=57920
reverse_client_name=localhost
server_address=127.0.0.1
server_port=2626
helo_name=client.test
sender=alice@example.org
recipient=full@example.org
recipient_count=0
queue_id=C2E5498C0F4
instance=36ad.6b02057f.c1017.0
size=1234
etrn_domain=
stress=
sasl_method=PLAIN
sasl_username=alice@example.org
sasl_sender=
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=
encryption_cipher=
encryption_keysize=0
policy_context=

"""


def codec_seeds(lines):
    whole = b"".join(lines)
    seeds = [b"\x00" + line for line in lines]
    seeds.append(b"\x03\x00\x06\x1f" + whole)
    seeds.append(b"\x81\x10\x04" + lines[1] + lines[0])
    return seeds


SEEDS = {
    "dict_codec": codec_seeds(DICT),
    "auth_codec": codec_seeds(AUTH),
    "policy_codec": [
        b"\x00" + POLICY,
        b"\x02\x0f\x40" + POLICY + POLICY.replace(b"RCPT", b"END-OF-MESSAGE"),
        b"\x01\x00" + POLICY.replace(b"\n", b"\r\n"),
        b"\x00request=smtpd_access_policy\nsize=x\n\nsize=12\n\n",
        b"\x00action=452 4.2.2 Mailbox full\n\n",
    ],
    "sasl": [
        b"\x00\x00alice@example.org\x00secret",
        b"\x00alice@example.org\x00alice@example.org\x00secret",
        b"\x00bob@example.org\x00alice@example.org\x00secret",
        b"\x01alice@example.org\xffwrong",
        b"\x02AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==",
        b"\x02YWxpY2VAZXhhbXBsZS5vcmc=",
        b"\x02=",
    ],
    "web_form": [
        b"username=alice&password=p%C3%A4ss+word&token=",
        b"action=random&token=%20abc%zz%4",
        b"flag&x=1&x=2&remember=off",
    ],
    "web_json": [
        b'{"username": "alice", "password": "p\\u00e4ss word", "token": "abc"}',
        b'{"username": null, "token": " "}',
        b"{}",
        b'["alice", "secret"]',
    ],
    "address": [
        b"  Alice@EXAMPLE.org ",
        "bob@b\u00fccher.example".encode(),
        b"/var/vmail/{domain}/{local}\nalice@example.org",
        b"/srv/mail/{address}/Maildir\nA.B@Example.ORG.",
        b"/var/vmail/{local}{local}\n.@example.org",
    ],
    "passdb_key": [
        b'secret"alice@example.org',
        b'p\\"w\\\\d\\\'"alice@example.org',
        b"no quote at all\\",
    ],
    "tabescape": [
        b"a\x01tb",
        b"line1\x01nline2\x01r\x011\x010",
        b"a\tb\x01x",
    ],
    "config": [
        open(os.path.join(HERE, "..", "packaging", "postern.toml"), "rb").read(),
        b'domains = ["example.org"]\n',
        b'domains = ["example.org"]\n[registration]\nmode = "open"\n'
        b'[registration.username]\nmin_length = 9\nmax_length = 3\n',
        b'domains = ["example.org"]\n[mailbox]\nhome = "relative/{local}"\n',
        b"domains = 1\n[nope]\n",
    ],
}

root = os.path.join(HERE, "seeds")
for target, seeds in SEEDS.items():
    os.makedirs(os.path.join(root, target), exist_ok=True)
    for seed in seeds:
        name = hashlib.sha1(seed).hexdigest()
        with open(os.path.join(root, target, name), "wb") as f:
            f.write(seed)
