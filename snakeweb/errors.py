"""The one exception type whose message is meant for a person, not a traceback."""


class SnakewebError(Exception):
    """An error a user can hit; its message says what is wrong and what to do.

    The command line and the dashboard print the message alone, never a traceback.
    """
