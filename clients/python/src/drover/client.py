"""A client of the Drover REST API v1 (docs/API.md), on the standard library's http.client."""

from __future__ import annotations

import builtins
import datetime
import http.client
import json
import socket
import ssl
import time
import urllib.parse
from typing import Any, Iterable, Iterator, Mapping

from .errors import EventsDropped, TransportError, WaitTimeout, error_for
from .models import (
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

DEFAULT_SERVER = "http://127.0.0.1:8080"
# The longest long poll the API accepts in one request (`?wait=`, seconds).
MAX_WAIT_S = 300.0
# How long one long-poll request of Client.wait lasts when the caller gives no timeout: short
# enough that a node going away is noticed, long enough to cost next to nothing.
_WAIT_CHUNK_S = 60.0


class Client:
    """Talks to one Drover node (any node serves the whole API).

    ``server`` is the node's base URL, ``http://`` or ``https://`` (a trailing slash and a path
    prefix are fine). ``token``, when given, is sent as ``Authorization: Bearer <token>``.
    ``timeout`` bounds each request's connect and reads, in seconds (a long poll adds its own
    wait to it). ``ssl_context`` is used for https (default: the system's trusted CAs, hostname
    checked). A Client holds no connection between calls and is safe to share between threads.
    """

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "drover-python/0.1",
    ) -> None:
        url = urllib.parse.urlsplit(server.strip())
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"server must be an http:// or https:// URL, not {server!r}")
        if url.query or url.fragment:
            raise ValueError(f"server must not have a query or fragment: {server!r}")
        self.server = server
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._user_agent = user_agent

    # --- tasks ---

    def submit(
        self,
        type: str,
        payload: Any = None,
        *,
        id: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
        callback_url: str | None = None,
        queue: str | None = None,
        labels: Iterable[str] | None = None,
        retry: RetryPolicy | None = None,
        run_at: str | datetime.datetime | None = None,
        delay_s: float | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> Submitted:
        """Submits one task. Give an ``id`` to make retries safe: the same id and spec again is
        answered with the existing task (``created`` False), another spec raises Conflict.
        ``run_at`` (RFC 3339 or an aware datetime) or ``delay_s`` delays it (state
        ``waiting`` until then; protocol 2). ``depends_on`` lists ids of tasks that must
        succeed first (protocol 2; docs/WORKFLOWS.md "DAGs")."""
        spec = TaskSpec(
            type,
            payload,
            id,
            priority,
            max_attempts,
            timeout_s,
            callback_url,
            queue,
            None if labels is None else tuple(labels),
            retry,
            run_at,
            delay_s,
            None if depends_on is None else tuple(depends_on),
        )
        return self.submit_spec(spec)

    def submit_spec(self, spec: TaskSpec) -> Submitted:
        status, body, _ = self._request("POST", "/v1/tasks", spec.to_json())
        return Submitted(id=body["id"], state=body["state"], created=status == 202)

    def submit_batch(self, tasks: Iterable[TaskSpec | Mapping[str, Any]]) -> BatchSubmitted:
        """Submits tasks all or nothing, in one ZooKeeper transaction (at most 1000)."""
        items = [t.to_json() if isinstance(t, TaskSpec) else dict(t) for t in tasks]
        status, body, _ = self._request("POST", "/v1/tasks/batch", {"tasks": items})
        return BatchSubmitted(ids=list(body["ids"]), created=status == 202)

    def get(self, task_id: str) -> Task:
        """The task's current status; raises NotFound when there is none."""
        _, body, _ = self._request("GET", self._task_path(task_id))
        return Task.from_json(body)

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """Returns the task once it is terminal (succeeded, failed or cancelled).

        Long-polls (``GET /v1/tasks/{id}?wait=``; the node answers when the task finishes, woken
        by a ZooKeeper watch), so it does not poll in a loop. Raises WaitTimeout after
        ``timeout`` seconds (None: wait as long as it takes); its ``task`` is the last state read.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            chunk = _WAIT_CHUNK_S
            if deadline is not None:
                chunk = min(chunk, deadline - time.monotonic())
            if chunk <= 0:
                task = self.get(task_id)
                if task.terminal:
                    return task
                raise WaitTimeout(task_id, timeout or 0.0, task)
            chunk = min(max(chunk, 0.001), MAX_WAIT_S)
            path = f"{self._task_path(task_id)}?wait={chunk:.3f}"
            _, body, _ = self._request("GET", path, read_timeout=self._timeout + chunk)
            task = Task.from_json(body)
            if task.terminal:
                return task

    def cancel(self, task_id: str) -> Cancelled:
        """Cancels a task (a pending one at once; a running one is stopped by its worker).
        Cancelling a finished task changes nothing (``cancelled`` False)."""
        _, body, headers = self._request("DELETE", self._task_path(task_id))
        return Cancelled(
            task=Task.from_json(body),
            cancelled=headers.get("drover-cancel", "") == "cancelled",
        )

    def retry(self, task_id: str) -> Submitted:
        """Puts a failed or cancelled task back under its id (``POST /v1/tasks/{id}/retry``):
        it waits again at its next attempt, its ``history`` kept. Raises Conflict
        when the task is not failed or cancelled, NotFound when there is none."""
        _, body, _ = self._request("POST", self._task_path(task_id) + "/retry", {})
        return Submitted(id=body["id"], state=body["state"], created=True)

    def resubmit(self, task_id: str, *, new_id: str | None = None) -> Submitted:
        """Submits a task's spec again as a new task under ``new_id`` (generated when None); the
        old one is left as it was, history and all (``retry`` reopens the same task instead)."""
        old = self.get(task_id)
        spec = old.spec()
        return self.submit_spec(TaskSpec(spec.type, spec.payload, new_id, spec.priority,
                                         spec.max_attempts, spec.timeout_s, spec.callback_url,
                                         spec.queue, spec.labels, spec.retry))

    def list(
        self,
        *,
        state: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        order: str | None = None,
    ) -> TaskPage:
        """One page of tasks. ``order`` is ``"id"`` (the server's default) or ``"newest"``
        (most recently submitted first); pass the page's ``next`` as ``cursor`` for the next."""
        query: dict[str, str] = {"limit": str(limit)}
        if state:
            query["state"] = state
        if cursor:
            query["cursor"] = cursor
        if order:
            query["order"] = order
        _, body, _ = self._request("GET", "/v1/tasks?" + urllib.parse.urlencode(query))
        return TaskPage(
            tasks=[Task.from_json(t) for t in body.get("tasks", [])],
            next=body.get("next"),
        )

    def iter_tasks(
        self, *, state: str | None = None, page_size: int = 100, order: str | None = None
    ) -> Iterator[Task]:
        """Every retained task, page by page (follows the cursor until the last page)."""
        cursor: str | None = None
        while True:
            page = self.list(state=state, limit=page_size, cursor=cursor, order=order)
            yield from page.tasks
            if page.next is None:
                return
            cursor = page.next

    # --- cluster ---

    def workers(self) -> builtins.list[Worker]:
        _, body, _ = self._request("GET", "/v1/workers")
        return [Worker.from_json(w) for w in body.get("workers", [])]

    def queues(self) -> builtins.list[dict[str, Any]]:
        """``GET /v1/queues``: each queue's name, ``paused``, ``max_running`` and serving workers."""
        _, body, _ = self._request("GET", "/v1/queues")
        return [dict(q) for q in body.get("queues", [])]

    def set_queue(
        self, name: str, *, paused: bool | None = None, max_running: int | None = None
    ) -> dict[str, Any]:
        """Changes a queue's settings (admin role); ``max_running=0`` removes the limit."""
        patch: dict[str, Any] = {}
        if paused is not None:
            patch["paused"] = paused
        if max_running is not None:
            patch["max_running"] = max_running
        path = "/v1/queues/" + urllib.parse.quote(name, safe="")
        _, body, _ = self._request("PUT", path, patch)
        return dict(body)

    def drain(self, worker_id: str) -> None:
        """Drains a worker (admin role): it takes nothing new, finishes its tasks, then leaves."""
        self._request("POST", "/v1/workers/" + urllib.parse.quote(worker_id, safe="") + "/drain")

    def create_schedule(
        self,
        schedule_id: str,
        task: TaskSpec | Mapping[str, Any],
        *,
        cron: str | None = None,
        every_s: int | None = None,
        timezone: str | None = None,
        overlap: str | None = None,
        catchup: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/schedules`` (admin role): fires ``task`` (without an id) as
        ``{schedule_id}-{slot}`` at each slot of ``cron`` (in ``timezone``) or every ``every_s``
        seconds. ``overlap`` is "allow" or "skip", ``catchup`` "none", "one" or "all"
        (docs/WORKFLOWS.md). An equal existing schedule is returned; another under the same id
        raises Conflict. Returns the schedule with its ``next_firing`` and ``last_firing``."""
        if (cron is None) == (every_s is None):
            raise ValueError("give exactly one of cron and every_s")
        spec = task.to_json() if isinstance(task, TaskSpec) else dict(task)
        spec.pop("id", None)
        body: dict[str, Any] = {"id": schedule_id, "task": spec}
        if cron is not None:
            body["cron"] = cron
        if every_s is not None:
            body["every_s"] = every_s
        for key, value in (("timezone", timezone), ("overlap", overlap), ("catchup", catchup)):
            if value is not None:
                body[key] = value
        _, answer, _ = self._request("POST", "/v1/schedules", body)
        return dict(answer)

    def schedules(self) -> builtins.list[dict[str, Any]]:
        """``GET /v1/schedules``: every schedule with its next and last firing, by id."""
        _, body, _ = self._request("GET", "/v1/schedules")
        return [dict(s) for s in body.get("schedules", [])]

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        """``GET /v1/schedules/{id}``; NotFound if there is none."""
        _, body, _ = self._request("GET", self._schedule_path(schedule_id))
        return dict(body)

    def delete_schedule(self, schedule_id: str) -> None:
        """``DELETE /v1/schedules/{id}`` (admin role); the tasks it fired stay."""
        self._request("DELETE", self._schedule_path(schedule_id))

    def cluster(self) -> dict[str, Any]:
        """``GET /v1/cluster`` as JSON: leader, epoch, zookeeper, workers, task counts."""
        _, body, _ = self._request("GET", "/v1/cluster")
        return dict(body)

    def events(
        self,
        task_id: str | None = None,
        *,
        last_event_id: str | None = None,
        idle_timeout: float = 60.0,
    ) -> EventStream:
        """Opens the server-sent event stream (``GET /v1/events``), optionally of one task.

        Iterate over the returned stream for Events; close it (or use ``with``) when done. The
        node sends a heartbeat every 15 s, so ``idle_timeout`` seconds of silence mean the
        connection is gone (TransportError). ``last_event_id`` is sent as ``Last-Event-ID`` to
        resume after the last event seen (``stream.last_event_id``): the node replays what its
        event log still holds after it, then streams live events.
        """
        path = "/v1/events"
        if task_id is not None:
            path += "?" + urllib.parse.urlencode({"id": task_id})
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        conn = self._connection(idle_timeout)
        try:
            conn.request("GET", self._prefix + path, headers=self._headers(headers))
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise TransportError(f"no answer from {self.server}: {e}") from e
        if resp.status != 200:
            try:
                self._finish(resp, "GET", path)  # raises the ApiError of a non-2xx answer
            finally:
                conn.close()
            raise TransportError(f"{self.server} answered {resp.status} instead of a stream")
        return EventStream(conn, resp, self.server, last_event_id)

    # --- plumbing ---

    def _task_path(self, task_id: str) -> str:
        if not task_id:
            raise ValueError("a task id must not be empty")
        return "/v1/tasks/" + urllib.parse.quote(task_id, safe="")

    @staticmethod
    def _schedule_path(schedule_id: str) -> str:
        if not schedule_id:
            raise ValueError("a schedule id must not be empty")
        return "/v1/schedules/" + urllib.parse.quote(schedule_id, safe="")

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            ctx = self._ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {"User-Agent": self._user_agent, **extra}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        read_timeout: float | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """Sends one request; returns (status, JSON body, lower-cased headers) of a 2xx answer,
        raises ApiError for any other answer and TransportError when there is none."""
        conn = self._connection(read_timeout or self._timeout)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, self._prefix + path, body=data, headers=self._headers(headers))
            resp = conn.getresponse()
            return self._finish(resp, method, path)
        except (OSError, http.client.HTTPException) as e:
            raise TransportError(f"no answer from {self.server} to {method} {path}: {e}") from e
        finally:
            conn.close()

    @staticmethod
    def _finish(
        resp: http.client.HTTPResponse, method: str, path: str
    ) -> tuple[int, Any, dict[str, str]]:
        raw = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        if 200 <= resp.status < 300:
            return resp.status, parsed, headers
        retry_after = None
        if "retry-after" in headers:
            try:
                retry_after = float(headers["retry-after"])
            except ValueError:
                retry_after = None
        raise error_for(resp.status, parsed, retry_after, method, path)


class EventStream:
    """An open ``text/event-stream`` answer; iterate for Events.

    Iteration ends when the server closes the stream; ``event: dropped`` raises EventsDropped
    (events were lost). A stream resumed from an id the server's log no longer holds starts with
    an Event named ``gap``: events may be missing, so re-read the tasks you follow. ``last_event_id`` is the id of the last event read that had one (the
    value to resume from), else the one the stream was opened with.
    """

    def __init__(
        self,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        server: str,
        last_event_id: str | None,
    ) -> None:
        self._conn = conn
        self._resp = resp
        self._server = server
        self.last_event_id = last_event_id

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def __iter__(self) -> Iterator[Event]:
        event = ""
        data: list[str] = []
        event_id: str | None = None
        while True:
            try:
                raw = self._resp.readline()
            except (OSError, http.client.HTTPException) as e:
                if isinstance(e, socket.timeout):
                    raise TransportError(f"the event stream of {self._server} went silent") from e
                raise TransportError(f"the event stream of {self._server} broke: {e}") from e
            if not raw:
                return  # the server ended the stream
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line == "":
                if data or event:
                    if event_id is not None:
                        self.last_event_id = event_id
                    yield self._dispatch(event or "message", "\n".join(data), event_id)
                event, data, event_id = "", [], None
                continue
            if line.startswith(":"):
                continue  # a comment: the heartbeat
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id" and "\0" not in value:
                event_id = value

    @staticmethod
    def _dispatch(event: str, text: str, event_id: str | None) -> Event:
        try:
            data: Any = json.loads(text) if text else None
        except ValueError:
            data = text
        if event == "dropped":
            reason = data.get("reason") if isinstance(data, dict) else data
            raise EventsDropped(f"the event stream was cut: {reason}")
        return Event(event=event, data=data, id=event_id)
