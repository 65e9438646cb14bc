"""The error type every package raises for bad user input.

The CLI prints these as one line (what was wrong and what to do) and exits 2;
anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from the user: a wrong path, an unknown name, an impossible setting."""


def validation_problems(exc, limit: int = 3) -> str:
    """A pydantic ValidationError as one line: 'not valid JSON (...)' or 'field.path: message; ...'."""
    errors = exc.errors()
    invalid_json = next((err for err in errors if err.get("type") == "json_invalid"), None)
    if invalid_json is not None:
        return f"not valid JSON ({invalid_json.get('ctx', {}).get('error', invalid_json['msg'])})"
    shown = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
                      for err in errors[:limit])
    return shown + (f" (and {len(errors) - limit} more)" if len(errors) > limit else "")
