"""The one exception type whose message is meant for a person, not a traceback."""


class SnakewebError(Exception):
    """An error a user can hit; its message says what is wrong and what to do.

    The command line and the dashboard print the message alone, never a traceback.
    """


def shell_word(path: object) -> str:
    """`path` as one word of a command to copy into a shell: quoted when it holds spaces or other special characters
    (shlex.quote), as is otherwise."""
    import shlex

    return shlex.quote(str(path))
