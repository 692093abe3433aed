"""An SMTP server for tests and the demo: accepts every message (with or without AUTH PLAIN or
LOGIN, no TLS) and writes each one as an .eml file in a folder, named by arrival order.

With --tls-port, --cert and --key it also listens on a second port the way a production relay
does: STARTTLS required before anything else, then AUTH with --username/--password required."""

import argparse
import asyncio
import itertools
import os
import ssl
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

_counter = itertools.count(1)


class SaveToFolder:
    def __init__(self, folder):
        self.folder = folder

    async def handle_DATA(self, server, session, envelope):
        os.makedirs(self.folder, exist_ok=True)
        name = f"{time.time_ns()}-{next(_counter):06d}.eml"
        temporary = os.path.join(self.folder, "." + name)
        with open(temporary, "wb") as out:
            out.write(envelope.content)
        # Rename last so a reader never sees a half-written message.
        os.rename(temporary, os.path.join(self.folder, name))
        return "250 Message accepted for delivery"


def accept_any_login(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword):
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False)


def only(username, password):
    def check(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = auth_data.login.decode() == username and auth_data.password.decode() == password
        # handled=False: aiosmtpd then answers a refusal with 535 itself.
        return AuthResult(success=ok, handled=False)

    return check


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", required=True, help="where .eml files are written")
    parser.add_argument("--tls-port", type=int, help="a second port: STARTTLS and AUTH required")
    parser.add_argument("--cert", help="PEM certificate of the STARTTLS port")
    parser.add_argument("--key", help="PEM private key of the STARTTLS port")
    parser.add_argument("--username", default="cezbek")
    parser.add_argument("--password", default="cezbek-smtp")
    args = parser.parse_args()
    controller = Controller(
        SaveToFolder(args.dir),
        hostname=args.host,
        port=args.port,
        authenticator=accept_any_login,
        auth_require_tls=False,
    )
    controller.start()
    print(f"SMTP capture on {args.host}:{args.port}, writing to {args.dir}", flush=True)
    controllers = [controller]
    if args.tls_port:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        secure = Controller(
            SaveToFolder(args.dir),
            hostname=args.host,
            port=args.tls_port,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=only(args.username, args.password),
        )
        secure.start()
        controllers.append(secure)
        print(f"SMTP capture (STARTTLS + AUTH) on {args.host}:{args.tls_port}", flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        for running in controllers:
            running.stop()


if __name__ == "__main__":
    main()
