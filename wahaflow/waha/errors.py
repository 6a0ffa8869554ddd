"""The WAHA client's exceptions: one small hierarchy, every message safe to log (never an API key)."""

from __future__ import annotations


class WahaError(Exception):
    """Base of every error raised by the WAHA client.

    `status` is the last HTTP status seen (None when no response came back) and `source` the request
    that failed, as `METHOD /path` without query string.
    """

    def __init__(self, message: str, *, status: int | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.source = source


class WahaAuthError(WahaError):
    """WAHA answered 401/403: the API key is missing or wrong. Never retried."""


class WahaNotFound(WahaError):
    """WAHA answered 404 for something other than the session (a chat, a message). Never retried."""


class WahaSessionNotFound(WahaNotFound):
    """WAHA answered 404 for the session itself: it does not exist or is not started. Never retried."""


class WahaRequestError(WahaError):
    """WAHA refused the request for good (400, 422 not-implemented, other 4xx). Never retried."""


class WahaEmptyWindowCrash(WahaRequestError):
    """WEBJS's history loader crashed because nothing it loaded passes the timestamp filters.

    WAHA's `WebjsClientCore.getMessages` reads `msgs[msgs.length - 1].t` after loading a batch; when
    no loaded message lies in `[gte, lte]` the array is empty and WAHA answers 500 "Cannot read
    properties of undefined (reading 't')". The same request crashes again on every retry, so it is
    not retried; the pager treats it as an empty window (see `paging`).
    """


class WahaTransientError(WahaError):
    """A failure worth retrying: 429, 5xx, timeouts, dropped connections, 422 session-not-working.

    `retry_after` is the delay (seconds) the server asked for with `Retry-After`, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        source: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, source=source)
        self.retry_after = retry_after


class WahaBadResponse(WahaTransientError):
    """A response that is not what the API promises: broken or truncated JSON, not a JSON array where
    one is expected, not an object where one is expected. Retried like any transient failure."""


class WahaUnavailable(WahaError):
    """The retry budget (attempts or total time) ran out: says what failed, how often, and the last error.

    `attempts` is the number of requests made, `last_error` the last failure's description.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        source: str | None = None,
        attempts: int = 0,
        last_error: str = "",
    ) -> None:
        super().__init__(message, status=status, source=source)
        self.attempts = attempts
        self.last_error = last_error


class WahaFetchError(WahaError):
    """Fetching one chat's messages failed for good; names the chat. The chunk fetch fails with it."""

    def __init__(self, message: str, *, chat_id: str, status: int | None = None, source: str | None = None):
        super().__init__(message, status=status, source=source)
        self.chat_id = chat_id
