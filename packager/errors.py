"""Errors that reach the user as one clear message and exit code 2."""
from __future__ import annotations


class UserError(Exception):
    """Bad input: printed as `file:line: field: message` plus a fix, exit code 2, no traceback."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        field = f"{self.field}: " if self.field else ""
        text = f"{where}{field}{self.message}"
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text
