"""`hobotnica hash-password`: a password hash for `[ui] users`, printed on stdout.

The password never comes from the command line (it would sit in the shell's history and in
`ps`): on a terminal it is asked for twice without echo; otherwise the first line of stdin is
read, for scripts (`printf '%s\\n' "$PASSWORD" | hobotnica hash-password`).
"""

import getpass
from typing import TextIO

from runner.core.passwords import hash_password

MIN_LENGTH = 8


def hash_password_command(stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("hobotnica hash-password: the passwords differ", file=stderr)
            return 1
    else:
        password = stdin.readline().removesuffix("\n").removesuffix("\r")
    if len(password) < MIN_LENGTH:
        print(f"hobotnica hash-password: use at least {MIN_LENGTH} characters", file=stderr)
        return 1
    print(hash_password(password), file=stdout)
    print('add it to the config: [ui] users = { NAME = "<the hash above>" }', file=stderr)
    return 0
