"""User-facing errors: one line, non-zero exit, no traceback.

Anything the user can fix (a missing file, an unknown model, a malformed registry) raises
`CodegenError`; the CLI prints its message as a single line and exits with `exit_code`.
"""

from __future__ import annotations


class CodegenError(Exception):
    """An error the user can act on. `str(err)` is the whole message, one line."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        location = ""
        if path is not None:
            location = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(location + message)
