"""The client against a real Drover node (ZooKeeper + `drover up`), started by
tests/python_client_test.sh, which passes its URL in DROVER_TEST_SERVER."""

from __future__ import annotations

import os
import threading
import unittest
import uuid

import drover

SERVER = os.environ.get("DROVER_TEST_SERVER", "")


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@unittest.skipUnless(SERVER, "DROVER_TEST_SERVER is not set (tests/python_client_test.sh sets it)")
class LiveNodeTest(unittest.TestCase):
    client: drover.Client

    @classmethod
    def setUpClass(cls) -> None:
        # A trailing slash is part of what users type; the client must not double it.
        cls.client = drover.Client(SERVER + "/", timeout=10)

    def test_submit_then_wait_returns_the_result(self) -> None:
        sub = self.client.submit("echo", {"hello": [1, 2]})
        self.assertTrue(sub.created)
        self.assertEqual(sub.state, "pending")
        task = self.client.wait(sub.id, timeout=30)
        self.assertEqual(task.state, "succeeded")
        self.assertEqual(task.result, {"hello": [1, 2]})
        self.assertEqual(task.attempts, 1)
        self.assertIsNotNone(task.worker)

    def test_an_identical_repeat_is_not_created_again_and_another_spec_conflicts(self) -> None:
        tid = fresh("py-idem")
        first = self.client.submit("noop", id=tid)
        again = self.client.submit("noop", id=tid)
        self.assertTrue(first.created)
        self.assertFalse(again.created)
        self.assertEqual(again.id, tid)
        with self.assertRaises(drover.Conflict) as ctx:
            self.client.submit("echo", {"other": True}, id=tid)
        self.assertEqual(ctx.exception.status, 409)

    def test_batch_is_all_or_nothing(self) -> None:
        a, b = fresh("py-batch-a"), fresh("py-batch-b")
        res = self.client.submit_batch(
            [drover.TaskSpec("noop", id=a), {"id": b, "type": "echo", "payload": 7}]
        )
        self.assertEqual(res.ids, [a, b])
        self.assertTrue(res.created)
        self.assertEqual(self.client.wait(b, timeout=30).result, 7)
        # One bad task refuses the whole batch, and the detail names it.
        c = fresh("py-batch-c")
        with self.assertRaises(drover.BadRequest) as ctx:
            self.client.submit_batch(
                [drover.TaskSpec("noop", id=c), drover.TaskSpec("no-such-type", id=fresh("x"))]
            )
        self.assertIn("tasks[1].type", ctx.exception.detail)
        with self.assertRaises(drover.NotFound):
            self.client.get(c)

    def test_errors_carry_the_problem_detail(self) -> None:
        with self.assertRaises(drover.NotFound) as nf:
            self.client.get(fresh("py-missing"))
        self.assertEqual(nf.exception.status, 404)
        self.assertEqual(nf.exception.title, "Not Found")
        with self.assertRaises(drover.BadRequest) as bad:
            self.client.submit("sleep", {"ms": -1})
        self.assertIn("payload.ms", bad.exception.detail)
        self.assertEqual(bad.exception.problem.get("status"), 400)
        with self.assertRaises(drover.BadRequest) as bad_id:
            self.client.get("not a valid id")
        self.assertIn("id", bad_id.exception.detail)

    def test_wait_times_out_with_the_last_state(self) -> None:
        sub = self.client.submit("sleep", {"ms": 5000})
        with self.assertRaises(drover.WaitTimeout) as ctx:
            self.client.wait(sub.id, timeout=0.5)
        self.assertIn(ctx.exception.task.state, ("pending", "assigned", "running"))
        self.client.cancel(sub.id)

    def test_cancel_then_resubmit_submits_a_new_task_with_the_same_spec(self) -> None:
        sub = self.client.submit("sleep", {"ms": 60000}, priority=7, max_attempts=2)
        first = self.client.cancel(sub.id)
        self.assertTrue(first.cancelled)
        self.assertEqual(first.task.state, "cancelled")
        again = self.client.cancel(sub.id)
        self.assertFalse(again.cancelled)
        new_id = fresh("py-resubmit")
        resubmitted = self.client.resubmit(sub.id, new_id=new_id)
        self.assertEqual(resubmitted.id, new_id)
        task = self.client.get(new_id)
        self.assertEqual((task.type, task.payload), ("sleep", {"ms": 60000}))
        self.assertEqual((task.priority, task.max_attempts), (7, 2))
        self.client.cancel(new_id)
        self.assertEqual(self.client.get(sub.id).state, "cancelled")

    def test_retry_reopens_a_failed_task_under_its_id_with_its_history(self) -> None:
        tid = fresh("py-retry")
        self.client.submit("fail", {}, id=tid, max_attempts=1)
        failed = self.client.wait(tid, timeout=30)
        self.assertEqual(failed.state, "failed")
        again = self.client.retry(tid)
        self.assertEqual((again.id, again.state), (tid, "pending"))
        task = self.client.wait(tid, timeout=30)
        self.assertEqual(task.state, "failed")
        self.assertEqual(task.attempts, 2)
        self.assertEqual([(a.attempt, a.state) for a in task.history],
                         [(1, "failed"), (1, "pending"), (2, "failed")])
        ok = self.client.submit("noop", id=fresh("py-retry-ok"))
        self.client.wait(ok.id, timeout=30)
        with self.assertRaises(drover.Conflict) as ctx:
            self.client.retry(ok.id)
        self.assertIn("succeeded", ctx.exception.detail or "")

    def test_list_pages_with_the_cursor_until_the_end(self) -> None:
        prefix = fresh("py-page")
        ids = [f"{prefix}-{i}" for i in range(5)]
        self.client.submit_batch([drover.TaskSpec("noop", id=i) for i in ids])
        for i in ids:
            self.client.wait(i, timeout=30)
        seen: list[str] = []
        pages = 0
        cursor = None
        while True:
            page = self.client.list(state="succeeded", limit=2, cursor=cursor)
            pages += 1
            self.assertLessEqual(len(page.tasks), 2)
            seen += [t.id for t in page.tasks]
            if page.next is None:
                break
            cursor = page.next
        self.assertGreaterEqual(pages, 3)
        self.assertEqual(len(seen), len(set(seen)), "a task was listed twice")
        self.assertTrue(set(ids) <= set(seen))
        self.assertTrue(set(ids) <= {t.id for t in self.client.iter_tasks(page_size=3)})

    def test_newest_first_lists_the_last_submitted_task_first(self) -> None:
        ids = [fresh("py-new") for _ in range(3)]
        for i in ids:
            self.client.submit("noop", id=i)
        page = self.client.list(order="newest", limit=3)
        self.assertEqual([t.id for t in page.tasks], list(reversed(ids)))
        # The cursor continues below the last task of the page, without repeats.
        rest = self.client.list(order="newest", limit=1000, cursor=page.next)
        self.assertFalse({t.id for t in rest.tasks} & set(ids))

    def test_events_of_one_task_arrive_in_order(self) -> None:
        tid = fresh("py-events")
        states: list[str] = []
        opened = threading.Event()
        failure: list[BaseException] = []

        def read() -> None:
            try:
                with self.client.events(tid, idle_timeout=30) as stream:
                    opened.set()
                    for ev in stream:
                        self.assertEqual(ev.event, "task")
                        self.assertEqual(ev.data["id"], tid)
                        states.append(ev.data["state"])
                        if ev.data["state"] in drover.TERMINAL_STATES:
                            return
            except BaseException as e:  # reported by the main thread
                failure.append(e)
                opened.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        self.assertTrue(opened.wait(10))
        self.client.submit("echo", {"n": 1}, id=tid)
        reader.join(30)
        self.assertFalse(reader.is_alive(), "no terminal event within 30 s")
        self.assertEqual(failure, [])
        self.assertEqual(states[0], "pending")
        self.assertEqual(states[-1], "succeeded")
        order = ["pending", "assigned", "running", "succeeded"]
        self.assertEqual(states, sorted(states, key=order.index))

    def test_workers_and_cluster(self) -> None:
        workers = self.client.workers()
        self.assertGreaterEqual(len(workers), 1)
        self.assertEqual(sum(w.leader for w in workers), 1)
        cluster = self.client.cluster()
        self.assertTrue(cluster["zookeeper"]["connected"])
        self.assertIn(cluster["leader"], {w.id for w in workers})

    def test_routing_fields_waiting_for_and_queue_control(self) -> None:
        # Nobody serves this queue: the task waits and says why; a served queue runs.
        queue = fresh("pyq")
        sub = self.client.submit("noop", queue=queue, labels=["b", "a", "b"])
        task = self.client.get(sub.id)
        self.assertEqual(task.state, "pending")
        self.assertEqual(task.queue, queue)
        self.assertEqual(task.labels, ["a", "b"])
        self.assertEqual(task.waiting_for, f"no live worker serves queue '{queue}'")
        self.assertIn("default", self.client.workers()[0].queues)
        self.assertIn("noop", self.client.workers()[0].types)
        paused = self.client.set_queue(queue, paused=True, max_running=3)
        self.assertEqual((paused["paused"], paused["max_running"]), (True, 3))
        listed = {q["name"]: q for q in self.client.queues()}
        self.assertTrue(listed[queue]["paused"])
        self.assertTrue(self.client.cancel(sub.id).cancelled)
        done = self.client.wait(self.client.submit("noop", queue="default").id, timeout=30)
        self.assertEqual(done.state, "succeeded")
        with self.assertRaises(drover.NotFound):
            self.client.drain("no-such-worker")


class UnreachableTest(unittest.TestCase):
    def test_no_server_is_a_transport_error(self) -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nobody listens there now
        client = drover.Client(f"http://127.0.0.1:{port}", timeout=5)
        with self.assertRaises(drover.TransportError) as ctx:
            client.get("t1")
        self.assertIn(f"127.0.0.1:{port}", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(SERVER, "DROVER_TEST_SERVER is not set (tests/python_client_test.sh sets it)")
class LiveScheduleTest(unittest.TestCase):
    def test_a_schedule_fires_its_task_and_goes_on_delete(self) -> None:
        import time

        client = drover.Client(SERVER, timeout=10)
        sid = fresh("py-sched")
        created = client.create_schedule(sid, {"type": "noop"}, every_s=1)
        self.assertIsNone(created["last_firing"])
        self.assertEqual(client.create_schedule(sid, {"type": "noop"}, every_s=1)["id"], sid)
        with self.assertRaises(drover.Conflict):
            client.create_schedule(sid, {"type": "noop"}, every_s=2)
        with self.assertRaises(drover.BadRequest):
            client.create_schedule(fresh("py-bad"), {"type": "noop"}, cron="61 * * * *")
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline and last is None:
            last = client.schedule(sid)["last_firing"]
            if last is None:
                time.sleep(0.2)
        self.assertIsNotNone(last, "no firing within 30 s")
        assert last is not None
        self.assertEqual(last["task"], f"{sid}-{last['slot']}")
        self.assertEqual(client.get(last["task"]).type, "noop")
        self.assertIn(sid, [s["id"] for s in client.schedules()])
        client.delete_schedule(sid)
        with self.assertRaises(drover.NotFound):
            client.schedule(sid)
