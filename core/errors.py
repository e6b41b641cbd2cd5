"""One error hierarchy; each class carries its HTTP status.

The service renders every ``RagkeepError`` as ``{"error": "<ClassName>", "detail": "..."}``.
Library code (ingest/, eval/, workers/) raises these too, so an expected problem is
never a 500 and never an unreadable traceback in a job's ``error``.
"""

from __future__ import annotations


class RagkeepError(Exception):
    status_code: int = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthorized(RagkeepError):
    status_code = 401


class Forbidden(RagkeepError):
    status_code = 403


class TooManyRequests(RagkeepError):
    status_code = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class NotFound(RagkeepError):
    status_code = 404


class CollectionNotFound(NotFound):
    pass


class DocumentNotFound(NotFound):
    pass


class VersionNotFound(NotFound):
    pass


class JobNotFound(NotFound):
    pass


class Conflict(RagkeepError):
    status_code = 409


class CollectionExists(Conflict):
    pass


class VersionNotReady(Conflict):
    pass


class ConcurrentChange(Conflict):
    pass


class Gone(RagkeepError):
    status_code = 410


class VersionDropped(Gone):
    pass


class FileTooLarge(RagkeepError):
    status_code = 413


class UnsupportedFileType(RagkeepError):
    status_code = 415


class InvalidInput(RagkeepError):
    status_code = 422


class PasswordRequired(InvalidInput):
    """An uploaded file is password-protected and the upload carries no password (its ``password`` field)."""


class WrongPassword(InvalidInput):
    """An uploaded file is password-protected and the upload's password does not open it."""


class ServiceUnavailable(RagkeepError):
    """Overloaded or a dependency is down: the same request may succeed after ``retry_after`` seconds."""

    status_code = 503

    def __init__(self, detail: str, retry_after: int = 2) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class BlobStoreUnavailable(ServiceUnavailable):
    """The object store holding uploaded files is unreachable, refuses ragkeep's credentials or lacks its bucket."""


class DocumentParseError(RagkeepError):
    """A document that cannot be turned into chunks; fails that document alone."""

    status_code = 422


class GoldenSetMissing(Conflict):
    """An evaluation needs a golden set and the collection has none."""
