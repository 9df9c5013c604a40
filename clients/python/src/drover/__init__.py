"""Python client of the Drover task scheduler's REST API v1 (docs/API.md).

    import drover
    client = drover.Client("http://127.0.0.1:8080")
    task = client.wait(client.submit("echo", {"hello": 1}).id, timeout=30)
    print(task.state, task.result)
"""

from .client import DEFAULT_SERVER, Client, EventStream
from .errors import (
    ApiError,
    BadRequest,
    Conflict,
    DroverError,
    EventsDropped,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TooManyRequests,
    TransportError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from .models import (
    TERMINAL_STATES,
    Attempt,
    BatchSubmitted,
    Cancelled,
    Event,
    RetryPolicy,
    Submitted,
    Task,
    TaskPage,
    TaskSpec,
    Worker,
)

__all__ = [
    "DEFAULT_SERVER",
    "TERMINAL_STATES",
    "Attempt",
    "RetryPolicy",
    "ApiError",
    "BadRequest",
    "BatchSubmitted",
    "Cancelled",
    "Client",
    "Conflict",
    "DroverError",
    "Event",
    "EventStream",
    "EventsDropped",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "Submitted",
    "Task",
    "TaskPage",
    "TaskSpec",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "Worker",
]
