"""An SMTP server for tests and the demo: accepts every message (with or without AUTH PLAIN or
LOGIN, no TLS) and writes each one as an .eml file in a folder, named by arrival order."""

import argparse
import asyncio
import itertools
import os
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


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", required=True, help="where .eml files are written")
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
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
