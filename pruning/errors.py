"""The error type every package raises for bad user input.

The CLI prints these as one line (what was wrong and what to do) and exits 2;
anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from the user: a wrong path, an unknown name, an impossible setting."""
