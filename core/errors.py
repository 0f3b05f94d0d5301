"""Errors people read: each names the field and what was expected."""

from __future__ import annotations


class PropflowError(Exception):
    """A refused request. Nothing has been changed when it is raised."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code

    def as_dict(self) -> dict[str, str | None]:
        return {"error": self.code, "field": self.field, "message": self.message}


class NotFound(PropflowError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field, code="not_found")


class Forbidden(PropflowError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field, code="forbidden")


class Conflict(PropflowError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field, code="conflict")
