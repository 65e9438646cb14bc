"""The error type every package raises for bad user input.

Library code words its messages for any caller (Python parameter names, no
command-line flags) and names the offending parameter in `param`; the CLI adds
the matching flag (`--ratio` for `param="ratio"`) when it prints the error.
Anything that is not a UserError is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user: a wrong path, an unknown name, an impossible setting."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param


def validation_problems(exc, limit: int = 3) -> str:
    """A pydantic ValidationError as one line: 'not valid JSON (...)' or 'field.path: message; ...'."""
    errors = exc.errors()
    invalid_json = next((err for err in errors if err.get("type") == "json_invalid"), None)
    if invalid_json is not None:
        return f"not valid JSON ({invalid_json.get('ctx', {}).get('error', invalid_json['msg'])})"
    shown = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in errors[:limit]
    )
    return shown + (f" (and {len(errors) - limit} more)" if len(errors) > limit else "")
