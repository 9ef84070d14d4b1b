"""Remote control for the real Delta Chat core, driven by tests/it/deltachat.rs.

The Rust test starts this script (with the virtualenv's Python, inside `unshare -m` with
a private /etc/hosts) and sends it one JSON request a line on standard input; each gets
one JSON answer a line on standard output. Nothing else is written to standard output.

    > {"id": 1, "cmd": "scan", "args": {"name": "A", "qr": "DCACCOUNT:https://_postern.test/new"}}
    < {"id": 1, "ok": true, "result": {"account": 1, "addr": "k3x9q2m7a@_postern.test",
       "servers": "1: ***@_postern.test imap:[_postern.test:1143:plain] smtp:[...] cert_strict"}}
    > {"id": 2, "cmd": "wait_incoming", "args": {"account": 2, "text": "hello", "timeout": 20}}
    < {"id": 2, "ok": false, "error": "no incoming message 'hello' within 20 s"}

Every wait is bounded: core's own wait functions have no timeout, so each blocking call
runs on a helper thread and is given up after its time. Core's events go, one JSON line
each, to <artifacts>/events.jsonl, its standard error to <artifacts>/core.stderr; the
driver's own log to standard error. Passwords are never logged.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import logging
import os
import queue
import ssl
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from deltachat_rpc_client import Account, DeltaChat, Rpc
from deltachat_rpc_client.rpc import JsonRpcError

# Message states (deltachat core's DC_STATE_*).
STATES = {
    10: "in_fresh",
    13: "in_noticed",
    16: "in_seen",
    18: "out_preparing",
    19: "out_draft",
    20: "out_pending",
    24: "out_failed",
    26: "out_delivered",
    28: "out_mdn_rcvd",
}
# How long any single call into core may take unless the request says otherwise.
DEFAULT_TIMEOUT = 30.0
POLL = 0.2


class Timeout(Exception):
    """A bounded wait ran out."""


class RecordingQueue(queue.Queue):
    """An account's event queue that also writes every event to the events file."""

    def __init__(self, account_id: int, sink):
        super().__init__()
        self.account_id = account_id
        self.sink = sink

    def put(self, item, block=True, timeout=None):
        self.sink(self.account_id, item)
        super().put(item, block, timeout)


class RecordingRpc(Rpc):
    """`Rpc` whose per-account event queues record what they receive."""

    def __init__(self, sink, **kwargs):
        super().__init__(**kwargs)
        self._sink = sink

    def get_queue(self, account_id: int) -> queue.Queue:
        if account_id not in self.event_queues:
            self.event_queues[account_id] = RecordingQueue(account_id, self._sink)
        return self.event_queues[account_id]


def bounded(what: str, timeout: float, fn, *args):
    """Runs `fn(*args)` on a helper thread; raises Timeout if it has not returned in time."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, name=what, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise Timeout(f"{what}: no answer from core within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class Deadline:
    """One request's time, shared by the calls it makes into core."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.1, self.end - time.monotonic())


def poll(what: str, timeout: float, fn):
    """Calls `fn()` every POLL seconds until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise Timeout(f"{what} within {timeout:g} s")
        time.sleep(POLL)


class DclinkParser(html.parser.HTMLParser):
    """Finds the `href` of the element with id `dclogin`, and the `#error` text."""

    def __init__(self):
        super().__init__()
        self.dclogin = None
        self.address = None
        self.error = None
        self._capture = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id") == "dclogin":
            self.dclogin = a.get("href")
        elif a.get("id") in ("address", "error"):
            self._capture = a["id"]

    def handle_data(self, data):
        if self._capture == "address":
            self.address = (self.address or "") + data
        elif self._capture == "error":
            self.error = (self.error or "") + data

    def handle_endtag(self, tag):
        self._capture = None


class Driver:
    def __init__(self, artifacts: str, rpc_server: str):
        os.makedirs(artifacts, exist_ok=True)
        self.events = open(os.path.join(artifacts, "events.jsonl"), "a", buffering=1)
        self.events_lock = threading.Lock()
        self.core_stderr = open(os.path.join(artifacts, "core.stderr"), "ab")
        self.rpc = RecordingRpc(
            self.record,
            accounts_dir=os.path.join(artifacts, "accounts"),
            rpc_server_path=rpc_server,
            stderr=self.core_stderr,
            # In the driver's process group, so the test stops both together.
            process_group=None,
        )
        bounded("start deltachat-rpc-server", DEFAULT_TIMEOUT, self.rpc.start)
        self.dc = DeltaChat(self.rpc)
        self.names: dict[int, str] = {}

    def record(self, account_id: int, event: dict) -> None:
        line = json.dumps(
            {"t": round(time.time(), 3), "account": self.names.get(account_id, account_id), "event": event}
        )
        with self.events_lock:
            self.events.write(line + "\n")

    def note(self, account_id: int, text: str) -> None:
        """A line of the driver's own in the events file, so the story reads in one place."""
        self.record(account_id, {"kind": "DriverNote", "msg": text})

    def account(self, args):
        return Account(self.dc, int(args["account"]))

    # ----- commands ------------------------------------------------------------------

    def cmd_scan(self, args):
        """A new profile named `name`, set up from the QR code `qr` (DCACCOUNT: or dclogin:)."""
        acc = self.dc.add_account()
        self.names[acc.id] = args["name"]
        acc.set_config("displayname", args["name"])
        self.note(acc.id, f"add_transport_from_qr {redact(args['qr'])}")
        deadline = Deadline(float(args.get("timeout", DEFAULT_TIMEOUT)))
        try:
            bounded("add_transport_from_qr", deadline.left(), self.rpc.add_transport_from_qr, acc.id, args["qr"])
        except JsonRpcError as e:
            self.note(acc.id, f"add_transport_from_qr failed: {e}")
            return {"account": acc.id, "error": rpc_error_text(e)}
        info = bounded("get_info", deadline.left(), self.rpc.get_info, acc.id)
        # e.g. "1: ***@_postern.test imap:[_postern.test:993:ssl] smtp:[...] cert_strict"
        return {
            "account": acc.id,
            "addr": acc.get_config("configured_addr"),
            "servers": info.get("used_transport_settings"),
        }

    def cmd_password(self, args):
        """The password core uses for the account (for the test's own login checks)."""
        transports = bounded("list_transports", DEFAULT_TIMEOUT, self.rpc.list_transports, int(args["account"]))
        return {"password": transports[0]["password"]}

    def cmd_online(self, args):
        """Starts I/O and waits until every transport is idle."""
        acc = self.account(args)
        deadline = Deadline(float(args.get("timeout", DEFAULT_TIMEOUT)))
        bounded("start_io", deadline.left(), self.rpc.start_io, acc.id)
        bounded("wait_for_all_work_done", deadline.left(), self.rpc.wait_for_all_work_done, acc.id)
        return {"connectivity": self.rpc.get_connectivity(acc.id)}

    def cmd_introduce(self, args):
        """`to` learns `from`'s address and key (its vCard) and opens a chat with it."""
        src = Account(self.dc, int(args["from"]))
        dst = Account(self.dc, int(args["to"]))
        chat = dst.create_chat(src)
        self.note(dst.id, f"imported the vCard of {self.names.get(src.id)}; chat {chat.id}")
        return {"chat": chat.id}

    def cmd_send(self, args):
        """`from` sends `text` to `to` (an account it was introduced to); returns the message id."""
        src = Account(self.dc, int(args["from"]))
        dst = Account(self.dc, int(args["to"]))
        chat = src.create_chat(dst)
        msg = chat.send_text(args["text"])
        self.note(src.id, f"sent message {msg.id} to {self.names.get(dst.id)}: {args['text']!r}")
        return {"msg": msg.id, "chat": chat.id}

    def cmd_wait_incoming(self, args):
        """Waits for an incoming message with `text`; accepts its chat if it is a contact
        request. Returns what a person would see: sender, text, padlock."""
        acc = self.account(args)
        text = args["text"]
        timeout = float(args.get("timeout", DEFAULT_TIMEOUT))

        def find():
            for chat_id in self.rpc.get_chatlist_entries(acc.id, None, None, None):
                for msg_id in self.rpc.get_message_ids(acc.id, chat_id, False, False):
                    m = self.rpc.get_message(acc.id, msg_id)
                    if m.get("text") == text and m.get("fromId", 0) > 9:
                        return m
            return None

        m = poll(f"no incoming message {text!r} at {self.names.get(acc.id)}", timeout, find)
        chat = self.rpc.get_basic_chat_info(acc.id, m["chatId"])
        if chat.get("isContactRequest"):
            self.rpc.accept_chat(acc.id, m["chatId"])
        sender = m.get("sender") or {}
        return {
            "msg": m["id"],
            "text": m.get("text"),
            "from": sender.get("address"),
            "show_padlock": m.get("showPadlock"),
            "state": STATES.get(m.get("state"), m.get("state")),
            "chat_encrypted": chat.get("isEncrypted"),
            "contact_request": chat.get("isContactRequest"),
        }

    def cmd_wait_state(self, args):
        """Waits until outgoing message `msg` is in one of `states` (names from STATES)."""
        acc = self.account(args)
        want = set(args["states"])
        timeout = float(args.get("timeout", DEFAULT_TIMEOUT))
        last = {}

        def check():
            m = self.rpc.get_message(acc.id, int(args["msg"]))
            last["state"] = STATES.get(m.get("state"), m.get("state"))
            if last["state"] in want:
                return {"state": last["state"], "error": m.get("error"), "show_padlock": m.get("showPadlock")}
            return None

        try:
            return poll(f"message {args['msg']} not in {sorted(want)}", timeout, check)
        except Timeout as e:
            raise Timeout(f"{e} (still {last.get('state')})") from None

    def cmd_browser_signup(self, args):
        """POST /new as a browser's form does, then reads the page: the address and the
        `#dclogin` link. No certificate checks: the test's front has a self-signed one."""
        body = urllib.parse.urlencode(
            {"username": args["username"], "password": args["password"], "action": "choose"}
        ).encode()
        req = urllib.request.Request(
            args["url"],
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                "User-Agent": "Mozilla/5.0 (postern test)",
            },
        )
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=DEFAULT_TIMEOUT) as r:
                status, page = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, page = e.code, e.read().decode(errors="replace")
        p = DclinkParser()
        p.feed(page)
        return {"status": status, "address": p.address, "dclogin": p.dclogin, "error": p.error}

    def cmd_shutdown(self, _args):
        return {}

    def close(self):
        try:
            bounded("close deltachat-rpc-server", 15, self.rpc.close)
        except Exception as e:  # noqa: BLE001
            logging.warning("closing core: %s", e)
            try:
                self.rpc.process.kill()
            except Exception:  # noqa: BLE001
                pass


def rpc_error_text(e: JsonRpcError) -> str:
    arg = e.args[0] if e.args else e
    if isinstance(arg, dict):
        return str(arg.get("message", arg))
    return str(arg)


def redact(text: str) -> str:
    """A QR code or link without its password (`p=` of dclogin:)."""
    if "?" not in text:
        return text
    head, query = text.split("?", 1)
    parts = [("p=***" if part.startswith("p=") else part) for part in query.split("&")]
    return head + "?" + "&".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--rpc-server", required=True)
    ap.add_argument("--deadline", type=float, default=300, help="seconds; then exit whatever is going on")
    opts = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    # The test gives up long before; this only keeps a lost driver from living forever.
    watchdog = threading.Timer(opts.deadline, lambda: os._exit(3))
    watchdog.daemon = True
    watchdog.start()

    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers on the real standard output
    driver = Driver(opts.artifacts, opts.rpc_server)
    out.write(json.dumps({"id": 0, "ok": True, "result": {"ready": True}}) + "\n")
    out.flush()
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            answer = {"id": req.get("id")}
            cmd = req.get("cmd", "")
            logging.info("request %s %s", req.get("id"), cmd)
            fn = getattr(driver, "cmd_" + cmd, None)
            try:
                if fn is None:
                    raise ValueError(f"unknown command {cmd!r}")
                answer.update(ok=True, result=fn(req.get("args") or {}))
            except Exception as e:  # noqa: BLE001 - every failure is an answer
                logging.error("%s failed: %s", cmd, traceback.format_exc())
                text = rpc_error_text(e) if isinstance(e, JsonRpcError) else str(e)
                answer.update(ok=False, error=f"{type(e).__name__}: {text}")
            out.write(json.dumps(answer) + "\n")
            out.flush()
            if cmd == "shutdown":
                break
    finally:
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
