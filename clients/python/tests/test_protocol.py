"""The client's side of the wire against a scripted loopback server: headers it sends (bearer
token, Last-Event-ID), how it reads problem details and event streams. What a real node answers
is covered by test_live.py."""

from __future__ import annotations

import datetime
import http.server
import json
import threading
import unittest
from typing import Any, Callable

import drover

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class ScriptedServer:
    """Answers every request with `handler`; records each request's path and headers."""

    def __init__(self, handler: Handler) -> None:
        seen: list[dict[str, Any]] = []
        self.seen = seen

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers),
                     "body": body}
                )
                handler(self)

            do_GET = do_POST = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(h: http.server.BaseHTTPRequestHandler, status: int, body: Any,
          ctype: str = "application/json", headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)


def stream(h: http.server.BaseHTTPRequestHandler, text: str) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(text.encode())
    h.wfile.flush()
    h.close_connection = True


TASK = {"id": "t1", "type": "noop", "state": "pending", "payload": None, "priority": 5,
        "max_attempts": 3, "attempts": 0, "worker": None, "result": None, "error": None,
        "submitted_at": 1, "started_at": None, "finished_at": None}


class ProtocolTest(unittest.TestCase):
    def serve(self, handler: Handler) -> ScriptedServer:
        s = ScriptedServer(handler)
        self.addCleanup(s.close)
        return s

    def test_bearer_token_and_path_prefix_are_sent(self) -> None:
        s = self.serve(lambda h: reply(h, 200, TASK))
        client = drover.Client(s.url + "/drover/", token="s3cret")
        self.assertEqual(client.get("t1").id, "t1")
        self.assertEqual(s.seen[0]["path"], "/drover/v1/tasks/t1")
        self.assertEqual(s.seen[0]["headers"]["Authorization"], "Bearer s3cret")

    def test_no_token_sends_no_authorization_header(self) -> None:
        s = self.serve(lambda h: reply(h, 200, TASK))
        drover.Client(s.url).get("t1")
        self.assertNotIn("Authorization", s.seen[0]["headers"])

    def test_problem_detail_and_retry_after_become_the_exception(self) -> None:
        problem = {"type": "about:blank", "title": "Too Many Requests", "status": 429,
                   "detail": "the cluster holds 10 pending tasks"}
        s = self.serve(lambda h: reply(h, 429, problem, "application/problem+json",
                                       {"Retry-After": "2"}))
        with self.assertRaises(drover.TooManyRequests) as ctx:
            drover.Client(s.url).submit("noop")
        e = ctx.exception
        self.assertEqual((e.status, e.title, e.detail, e.retry_after), (429, "Too Many Requests",
                         "the cluster holds 10 pending tasks", 2.0))
        self.assertEqual(json.loads(s.seen[0]["body"]), {"type": "noop"})

    def test_401_is_unauthorized_and_503_unavailable(self) -> None:
        for status, cls in ((401, drover.Unauthorized), (503, drover.Unavailable),
                            (500, drover.ServerError)):
            def answer(h: http.server.BaseHTTPRequestHandler, st: int = status) -> None:
                reply(h, st, {"title": "x", "status": st, "detail": "why"})

            s = self.serve(answer)
            with self.assertRaises(cls):
                drover.Client(s.url).get("t1")

    def test_event_stream_parses_ids_comments_and_multiline_data(self) -> None:
        text = (": heartbeat\n\n"
                "id: 41\nevent: task\ndata: {\"id\":\"t1\",\n"
                "data: \"state\":\"running\"}\n\n"
                "event: task\r\ndata: {\"id\":\"t1\",\"state\":\"succeeded\"}\r\n\r\n")
        s = self.serve(lambda h: stream(h, text))
        with drover.Client(s.url).events("t1", last_event_id="40") as st:
            events = list(st)
            self.assertEqual(st.last_event_id, "41")
        self.assertEqual([(e.event, e.data["state"], e.id) for e in events],
                         [("task", "running", "41"), ("task", "succeeded", None)])
        self.assertEqual(s.seen[0]["path"], "/v1/events?id=t1")
        self.assertEqual(s.seen[0]["headers"]["Last-Event-ID"], "40")

    def test_dropped_event_raises(self) -> None:
        text = ("event: task\ndata: {\"id\":\"a\",\"state\":\"pending\"}\n\n"
                "event: dropped\ndata: {\"reason\":\"the client fell too far behind\"}\n\n")
        s = self.serve(lambda h: stream(h, text))
        got: list[drover.Event] = []
        with self.assertRaises(drover.EventsDropped) as ctx:
            for ev in drover.Client(s.url).events():
                got.append(ev)
        self.assertEqual(len(got), 1)
        self.assertIn("fell too far behind", str(ctx.exception))

    def test_schedules_are_sent_and_read_as_the_api_has_them(self) -> None:
        sched = {"id": "beat", "every_s": 5, "task": {"type": "noop"}, "next_firing": None,
                 "last_firing": None}

        def handler(h: http.server.BaseHTTPRequestHandler) -> None:
            if h.command == "DELETE":
                h.send_response(204)
                h.send_header("Content-Length", "0")
                h.end_headers()
            elif h.path == "/v1/schedules" and h.command == "GET":
                reply(h, 200, {"schedules": [sched]})
            else:
                reply(h, 201 if h.command == "POST" else 200, sched)

        s = self.serve(handler)
        client = drover.Client(s.url)
        got = client.create_schedule("beat", drover.TaskSpec(type="noop", id="dropped"),
                                     every_s=5, catchup="all")
        self.assertEqual(got["id"], "beat")
        self.assertEqual(json.loads(s.seen[0]["body"]),
                         {"id": "beat", "every_s": 5, "catchup": "all",
                          "task": drover.TaskSpec(type="noop").to_json()})
        self.assertEqual([x["id"] for x in client.schedules()], ["beat"])
        self.assertEqual(client.schedule("a b")["id"], "beat")
        self.assertEqual(s.seen[2]["path"], "/v1/schedules/a%20b")
        client.delete_schedule("beat")
        self.assertEqual((s.seen[3]["method"], s.seen[3]["path"]), ("DELETE", "/v1/schedules/beat"))
        with self.assertRaises(ValueError):
            client.create_schedule("x", {"type": "noop"}, cron="* * * * *", every_s=5)

    def test_retry_posts_to_the_task_and_history_and_policy_are_read(self) -> None:
        task = {"id": "t1", "type": "fail", "state": "failed", "attempts": 2,
                "retry": {"backoff_base_s": 0.5, "backoff_cap_s": 4, "jitter": 0.2},
                "history": [{"attempt": 1, "state": "pending", "worker": "w1", "error": "boom",
                             "started_at": 1, "finished_at": 2},
                            {"attempt": 2, "state": "failed", "worker": "w2", "error": "boom",
                             "started_at": 3, "finished_at": 4}]}

        def handler(h: http.server.BaseHTTPRequestHandler) -> None:
            if h.command == "POST":
                reply(h, 202, {"id": "t1", "state": "pending"})
            else:
                reply(h, 200, task)

        server = ScriptedServer(handler)
        try:
            client = drover.Client(server.url)
            sub = client.retry("t1")
            self.assertEqual((sub.id, sub.state), ("t1", "pending"))
            self.assertEqual((server.seen[0]["method"], server.seen[0]["path"]),
                             ("POST", "/v1/tasks/t1/retry"))
            got = client.get("t1")
            self.assertEqual([(a.attempt, a.state, a.worker) for a in got.history],
                             [(1, "pending", "w1"), (2, "failed", "w2")])
            self.assertEqual(got.retry, drover.RetryPolicy(0.5, 4.0, 0.2))
            client.submit("noop", retry=drover.RetryPolicy(2, 30, 0.5))
            sent = json.loads(server.seen[-1]["body"])
            self.assertEqual(sent["retry"],
                             {"backoff_base_s": 2, "backoff_cap_s": 30, "jitter": 0.5})
        finally:
            server.close()

    def test_delays_are_sent_as_the_api_has_them(self) -> None:
        def handler(h: http.server.BaseHTTPRequestHandler) -> None:
            if h.command == "POST":
                reply(h, 202, {"id": "t1", "state": "waiting"})
            else:
                reply(h, 200, dict(TASK, state="waiting", run_at="2030-01-02T03:04:05.000Z"))

        s = self.serve(handler)
        client = drover.Client(s.url)
        got = client.submit("noop", id="t1", delay_s=90)
        self.assertEqual(got.state, "waiting")
        self.assertEqual(json.loads(s.seen[0]["body"]), {"type": "noop", "id": "t1", "delay_s": 90})
        plus_one = datetime.timezone(datetime.timedelta(hours=1))
        when = datetime.datetime(2030, 1, 2, 4, 4, 5, tzinfo=plus_one)
        client.submit("noop", run_at=when)
        self.assertEqual(json.loads(s.seen[1]["body"])["run_at"], "2030-01-02T04:04:05+01:00")
        client.submit("noop", run_at="2030-01-02T03:04:05Z")
        self.assertEqual(json.loads(s.seen[2]["body"])["run_at"], "2030-01-02T03:04:05Z")
        with self.assertRaises(ValueError):
            client.submit("noop", run_at=datetime.datetime(2030, 1, 2))
        task = client.get("t1")
        self.assertEqual((task.state, task.run_at), ("waiting", "2030-01-02T03:04:05.000Z"))
        self.assertFalse(task.terminal)

    def test_depends_on_is_sent_as_a_list(self) -> None:
        def handler(h: http.server.BaseHTTPRequestHandler) -> None:
            reply(h, 202, {"id": "t2", "state": "pending"})

        s = self.serve(handler)
        client = drover.Client(s.url)
        client.submit("noop", id="t2", depends_on=["t1"])
        self.assertEqual(json.loads(s.seen[0]["body"]),
                         {"type": "noop", "id": "t2", "depends_on": ["t1"]})
        client.submit("noop")
        self.assertNotIn("depends_on", json.loads(s.seen[1]["body"]))

    def test_bad_server_urls_are_refused(self) -> None:
        for bad in ("127.0.0.1:8080", "ftp://x", "http://", "http://h/?q=1"):
            with self.assertRaises(ValueError, msg=bad):
                drover.Client(bad)

    def test_https_uses_the_given_ssl_context(self) -> None:
        import ssl

        ctx = ssl.create_default_context()
        client = drover.Client("https://drover.example:8443", ssl_context=ctx)
        conn = client._connection(5)
        self.assertEqual((conn.host, conn.port), ("drover.example", 8443))
        self.assertIs(conn._context, ctx)  # type: ignore[attr-defined]


if __name__ == "__main__":
    unittest.main()
