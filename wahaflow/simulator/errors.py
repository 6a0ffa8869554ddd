"""WAHA's error bodies (waha-api.md §1, waha-samples/errors.json) as exceptions the app turns into
responses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wahaflow.simulator.shapes import environment


class WahaError(Exception):
    """An error answered with `status`, JSON `body` and optional extra headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def bad_request(messages: list[str] | str) -> WahaError:
    """400 from NestJS validation (`message` is a list) or a DTO transform (`message` is a string)."""
    return WahaError(400, {"message": messages, "error": "Bad Request", "statusCode": 400})


def unauthorized() -> WahaError:
    return WahaError(401, {"message": "Unauthorized", "statusCode": 401})


def session_not_found(name: str) -> WahaError:
    """404 of data endpoints for an unknown or stopped session."""
    message = (
        f"We didn't find a session with name '{name}'.\n"
        f"Please start it first by using POST /api/sessions/{name}/start request"
    )
    return WahaError(404, {"message": message, "error": "Not Found", "statusCode": 404})


def session_info_not_found() -> WahaError:
    """404 of `GET /api/sessions/{session}`."""
    return WahaError(404, {"message": "Session not found", "error": "Not Found", "statusCode": 404})


def message_not_found() -> WahaError:
    return WahaError(404, {"statusCode": 404, "message": "Message not found", "error": "Not Found"})


def route_not_found(method: str, path: str) -> WahaError:
    return WahaError(404, {"message": f"Cannot {method} {path}", "error": "Not Found", "statusCode": 404})


def session_not_working(name: str, status: str) -> WahaError:
    """422 after the working-session gate gave up (a top-level object, not NestJS' usual shape)."""
    body = {
        "error": "Session status is not as expected. Try again later or restart the session",
        "session": name,
        "status": status,
        "expected": ["WORKING"],
    }
    return WahaError(422, body)


def not_implemented(detail: str) -> WahaError:
    message = f"The method is not implemented by the engine. {detail}"
    return WahaError(422, {"message": message, "error": "Unprocessable Entity", "statusCode": 422})


def internal(
    engine: str, path: str, method: str, query: dict[str, str], message: str, name: str = "Error"
) -> WahaError:
    """500 from NestJS' AllExceptionsFilter."""
    exception: dict[str, Any] = {"message": message, "name": name}
    if message.startswith("2 UNKNOWN"):
        exception = {"message": message, "code": 2, "details": message.split(": ", 1)[1], "name": name}
    body = {
        "statusCode": 500,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "exception": exception,
        "request": {"path": path, "method": method, "body": {}, "query": query},
        "version": environment(engine),
    }
    return WahaError(500, body)


def too_many_requests() -> WahaError:
    body = {"statusCode": 429, "message": "ThrottlerException: Too Many Requests"}
    return WahaError(429, body, {"Retry-After": "1"})
