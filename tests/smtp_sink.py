"""A real SMTP server for the email tests (aiosmtpd): stores every accepted message as
<n>.eml in the directory given, and answers recipients by their local part:
temp-fail@… 451 (a temporary failure), perm-fail@… 550 (a permanent one).
Usage: smtp_sink.py HOST PORT DIR  (prints "ready" once listening)."""

import asyncio
import itertools
import os
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local == "temp-fail":
            return "451 4.3.0 Mailbox temporarily unavailable"
        if local == "perm-fail":
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        path = os.path.join(self.directory, f"{n}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


async def main():
    host, port, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    controller = Controller(Sink(directory), hostname=host, port=port)
    controller.start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    asyncio.run(main())
