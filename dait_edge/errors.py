"""The one exception users see: a problem with their input, and what to do about it."""


class UserError(Exception):
    """Bad input (missing data, unknown name, unreadable weights).

    The CLI prints ``str(err)`` on one line and exits with code 2, without a traceback.
    The message should name the problem and the fix.
    """

    exit_code = 2
