"""Exceptions raised by the Drover client.

Every answer the API refuses is an :class:`ApiError` carrying the problem detail the node sent
(``application/problem+json``, docs/API.md "Errors"); the common statuses have subclasses so that
callers can catch what they handle (``except drover.NotFound``).
"""

from __future__ import annotations

from typing import Any, Mapping


class DroverError(Exception):
    """Base of every error this package raises."""


class TransportError(DroverError):
    """No answer from the server: it could not be reached, or the connection broke.

    A submit that failed this way may or may not have been accepted; retrying it with the same
    ``id`` is safe (an identical repeat is answered 200, not duplicated).
    """


class ApiError(DroverError):
    """The server answered with a non-2xx status.

    Attributes mirror the problem detail: ``status``, ``title``, ``detail`` (what is wrong,
    naming the field for validation errors) and ``type``; ``retry_after`` holds the
    ``Retry-After`` header in seconds (429 and 503), ``problem`` the whole JSON body.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type: str = "about:blank",
        retry_after: float | None = None,
        problem: Mapping[str, Any] | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.retry_after = retry_after
        self.problem: Mapping[str, Any] = problem or {}
        self.method = method
        self.path = path


class BadRequest(ApiError):
    """400: malformed input or a validation error (``detail`` names the field)."""


class Unauthorized(ApiError):
    """401 or 403: the bearer token is missing, unknown or not allowed this call."""


class NotFound(ApiError):
    """404: no such task (or no such route)."""


class Conflict(ApiError):
    """409: the id exists with another spec; nothing was written."""


class PayloadTooLarge(ApiError):
    """413: the body or the batch is too large; nothing was written."""


class TooManyRequests(ApiError):
    """429: the cluster holds its cap of pending tasks; retry after ``retry_after`` seconds."""


class ServerError(ApiError):
    """5xx other than 503: a bug on the node (its log has the details)."""


class Unavailable(ServerError):
    """503: ZooKeeper unreachable, or the outcome of a write unknown; retry with the same id."""


class WaitTimeout(DroverError):
    """``Client.wait`` gave up before the task finished; ``task`` is its state at the end."""

    def __init__(self, task_id: str, timeout: float, task: Any) -> None:
        super().__init__(f"task {task_id!r} did not finish within {timeout:g} s")
        self.task_id = task_id
        self.timeout = timeout
        self.task = task


class EventsDropped(DroverError):
    """The event stream ended with ``event: dropped``: the client fell too far behind.

    Events were lost; re-read the tasks you care about, then open a new stream.
    """


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
    503: Unavailable,
}


def error_for(
    status: int,
    body: Any,
    retry_after: float | None,
    method: str,
    path: str,
) -> ApiError:
    """The exception for a non-2xx answer with JSON (or unparsable) ``body``."""
    problem: Mapping[str, Any] = body if isinstance(body, dict) else {}
    title = str(problem.get("title", "")) or _reason(status)
    detail = str(problem.get("detail", "")) if problem else (str(body) if body else "")
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(
        status,
        title,
        detail,
        type=str(problem.get("type", "about:blank")),
        retry_after=retry_after,
        problem=problem,
        method=method,
        path=path,
    )


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"
