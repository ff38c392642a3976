#!/usr/bin/env python3
"""A minimal real SMTP server for tests (Python standard library only).

Listens on 127.0.0.1, speaks EHLO/HELO, MAIL FROM, RCPT TO, DATA (with dot-unstuffing), RSET,
NOOP, QUIT and, when given a certificate and key, STARTTLS (RFC 3207). Every accepted message is
written to --dir as NNNNNN.eml (the exact bytes after dot-unstuffing, CRLF line endings kept)
with the envelope in NNNNNN.json:
    {"mail_from": "...", "rcpt_to": ["..."], "helo": "...", "tls": true|false, "transaction": n}
The .json is written first and each file is renamed into place, so a reader that sees NNNNNN.eml
can read both.

Options:
    --dir DIR          where received messages go (created if missing)
    --port N           port to bind (0, the default: any free port)
    --print-port       print the bound port on stdout (one line) once the server accepts
    --fail-first N     answer the end of DATA of the first N transactions with --fail-code
    --fail-code CODE   451 (default, transient) or e.g. 550 (permanent)
    --tls-cert PEM, --tls-key PEM   advertise and implement STARTTLS
    --require-tls      refuse MAIL FROM with 530 until STARTTLS succeeded
Stops on SIGTERM or SIGINT.
"""

import argparse
import json
import os
import signal
import socket
import socketserver
import ssl
import sys
import threading

MAX_LINE = 4096
MAX_MESSAGE = 32 * 1024 * 1024


class PeerState:
    def __init__(self, args):
        self.dir = args.dir
        self.fail_remaining = args.fail_first
        self.fail_code = args.fail_code
        self.require_tls = args.require_tls
        self.tls_context = None
        if args.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
            self.tls_context = ctx
        self.lock = threading.Lock()
        self.transactions = 0
        self.saved = 0

    def end_of_data(self):
        """Returns (transaction number, failure code or None)."""
        with self.lock:
            self.transactions += 1
            n = self.transactions
            if self.fail_remaining > 0:
                self.fail_remaining -= 1
                return n, self.fail_code
            return n, None

    def save(self, data, envelope):
        with self.lock:
            self.saved += 1
            stem = os.path.join(self.dir, "%06d" % self.saved)
        for suffix, payload in ((".json", json.dumps(envelope).encode()), (".eml", data)):
            tmp = stem + suffix + ".tmp"
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, stem + suffix)
        return stem


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.sock = self.request
        self.reader = self.sock.makefile("rb")
        self.tls = False
        self.helo = None
        self.reset()

    def finish(self):
        try:
            self.reader.close()
        except OSError:
            pass

    def reset(self):
        self.mail_from = None
        self.rcpt_to = []

    def reply(self, code, *lines):
        lines = lines or ("OK",)
        out = b""
        for i, text in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out += ("%d%s%s\r\n" % (code, sep, text)).encode()
        self.sock.sendall(out)

    def read_line(self):
        line = self.reader.readline(MAX_LINE + 1)
        if not line:
            return None
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            raise ValueError("line too long")
        return line

    @staticmethod
    def path_arg(arg, keyword):
        """'FROM:<a@b> SIZE=1' -> 'a@b' (None if malformed)."""
        if not arg.upper().startswith(keyword):
            return None
        rest = arg[len(keyword):].strip()
        if not rest.startswith("<") or ">" not in rest:
            return None
        return rest[1:rest.index(">")]

    def handle(self):
        state = self.server.peer
        self.reply(220, "localhost otd-smtp-peer ESMTP ready")
        try:
            while True:
                raw = self.read_line()
                if raw is None:
                    return
                line = raw.rstrip(b"\r\n").decode("latin-1")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    self.helo = arg
                    self.reset()
                    caps = ["localhost greets " + arg, "SIZE %d" % MAX_MESSAGE]
                    if state.tls_context is not None and not self.tls:
                        caps.append("STARTTLS")
                    caps.append("HELP")
                    self.reply(250, *caps)
                elif verb == "HELO":
                    self.helo = arg
                    self.reset()
                    self.reply(250, "localhost")
                elif verb == "STARTTLS":
                    if state.tls_context is None or self.tls:
                        self.reply(502, "5.5.1 STARTTLS not available")
                        continue
                    self.reply(220, "2.0.0 Ready to start TLS")
                    # Anything the client pipelined after STARTTLS is discarded (RFC 3207 §5).
                    self.reader.close()
                    self.sock = state.tls_context.wrap_socket(self.sock, server_side=True)
                    self.request = self.sock  # so the server closes the TLS socket
                    self.reader = self.sock.makefile("rb")
                    self.tls = True
                    self.helo = None
                    self.reset()
                elif verb == "MAIL":
                    if self.helo is None:
                        self.reply(503, "5.5.1 EHLO first")
                    elif state.require_tls and not self.tls:
                        self.reply(530, "5.7.0 Must issue a STARTTLS command first")
                    elif self.mail_from is not None:
                        self.reply(503, "5.5.1 nested MAIL")
                    else:
                        addr = self.path_arg(arg, "FROM:")
                        if addr is None:
                            self.reply(501, "5.5.4 syntax: MAIL FROM:<address>")
                        else:
                            self.mail_from = addr
                            self.reply(250, "2.1.0 OK")
                elif verb == "RCPT":
                    if self.mail_from is None:
                        self.reply(503, "5.5.1 MAIL first")
                    else:
                        addr = self.path_arg(arg, "TO:")
                        if not addr:
                            self.reply(501, "5.5.4 syntax: RCPT TO:<address>")
                        else:
                            self.rcpt_to.append(addr)
                            self.reply(250, "2.1.5 OK")
                elif verb == "DATA":
                    if not self.rcpt_to:
                        self.reply(503, "5.5.1 RCPT first")
                        continue
                    self.reply(354, "End data with <CR><LF>.<CR><LF>")
                    self.receive_data(state)
                elif verb == "RSET":
                    self.reset()
                    self.reply(250, "2.0.0 OK")
                elif verb == "NOOP":
                    self.reply(250, "2.0.0 OK")
                elif verb == "QUIT":
                    self.reply(221, "2.0.0 Bye")
                    return
                else:
                    self.reply(500, "5.5.2 command not recognized")
        except (OSError, ValueError, ssl.SSLError):
            return

    def receive_data(self, state):
        chunks = []
        size = 0
        while True:
            raw = self.read_line()
            if raw is None:
                raise ValueError("connection closed in DATA")
            if raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b"."):
                raw = raw[1:]  # dot-unstuffing (RFC 5321 §4.5.2)
            size += len(raw)
            if size > MAX_MESSAGE:
                raise ValueError("message too large")
            chunks.append(raw)
        n, fail = state.end_of_data()
        if fail is not None:
            self.reply(fail, "%s transaction %d refused for testing" %
                       ("4.3.0" if fail < 500 else "5.7.1", n))
        else:
            envelope = {"mail_from": self.mail_from, "rcpt_to": self.rcpt_to,
                        "helo": self.helo, "tls": self.tls, "transaction": n}
            stem = state.save(b"".join(chunks), envelope)
            self.reply(250, "2.0.0 OK queued as " + os.path.basename(stem))
        self.reset()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--print-port", action="store_true")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-code", type=int, default=451)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--require-tls", action="store_true")
    args = p.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.require_tls and not args.tls_cert:
        p.error("--require-tls needs --tls-cert and --tls-key")
    os.makedirs(args.dir, exist_ok=True)

    server = Server(("127.0.0.1", args.port), Handler)
    server.peer = PeerState(args)

    def stop(_signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.print_port:
        print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
