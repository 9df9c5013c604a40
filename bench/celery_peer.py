#!/usr/bin/python3
"""The Celery peer of `make bench`: Celery 5 with a Redis broker, measured on this machine.

usage: celery_peer.py [--smoke] [--batch-tasks N] [--single-tasks N] ... [--out FILE]

Starts its own redis-server on a free loopback port (data in its own temporary folder) and one
Celery worker (prefork pool, `--concurrency` processes), then measures the scenarios that
drover_bench measures for Drover, under the same names:

  throughput-batch   N no-op tasks sent as fast as `--batch-clients` client threads can, each
                     holding one broker connection; end to end = first send -> last result stored
  throughput-single  N no-op tasks from `--single-clients` threads, one send per "request", each
                     thread on its own connection (the 64 keep-alive clients of Drover's scenario)
  latency-light      an open-loop rate (`--light-rate` tasks/s for `--latency-seconds`);
                     submit -> done is the result's `date_done` minus the client's clock just
                     before the send (Drover's figure: its status's finished_at - submitted_at)

Tasks are no-ops with late acks (`task_acks_late=True`) and `worker_prefetch_multiplier=1`, the
setting Celery's documentation pairs with late acks; results go to Redis (the result backend).
Redis persists with `appendonly yes` + `appendfsync everysec` unless `--persistence none`; both
may be given (`--persistence everysec none`), each run gets a fresh Redis and worker.

Completions are watched without polling: the Redis result backend publishes every stored result
on the channel named after its key, and the peer subscribes to that pattern. At the end every
result is read once (MGET) and the scenario fails unless every task SUCCEEDED.

Prints one JSON document (also to `--out`). Exit 0: every scenario ok; 1: a scenario failed;
77: Celery, redis-py or redis-server is not installed (the ctest SKIP code). It ends only the
processes it started (by PID; the worker's pool is in the worker's own process group) and
removes its temporary folder, also on an error, SIGINT, SIGTERM or SIGHUP; killed with SIGKILL,
its Redis and worker still end (parent-death signal), only the folder is left in $TMPDIR.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

SKIP = 77

# The Celery app, written into the temporary folder so that the worker (`celery -A`) and this
# client load the same definition. Configured from the environment: DROVER_PEER_REDIS.
APP_SOURCE = '''
import os
from celery import Celery

url = os.environ["DROVER_PEER_REDIS"]
app = Celery("drover_peer", broker=url + "/0", backend=url + "/1")
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="drover-peer",
    broker_pool_limit=None,
    worker_hijack_root_logger=False,
)


@app.task(name="drover_peer.noop")
def noop():
    return None
'''
TASK = "drover_peer.noop"
META_PREFIX = "celery-task-meta-"


def dies_with_us(sig):
    """preexec_fn: the child gets `sig` when this process dies, even by SIGKILL (prctl
    PR_SET_PDEATHSIG), so a killed peer leaves no Redis or worker behind."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def arm():
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    return arm


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of one process from /proc; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def descendants(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for child in f.read().split():
                    out.append(int(child))
                    out.extend(descendants(int(child)))
    except OSError:
        pass
    return out


def tree_cpu(pid):
    return sum(cpu_seconds(p) for p in [pid] + descendants(pid))


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    rank = p / 100 * (len(v) - 1)
    lo = int(rank)
    hi = min(len(v) - 1, lo + 1)
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


def latency_figures(values):
    return {"count": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99),
            "p999_ms": percentile(values, 99.9), "max_ms": max(values) if values else None}


class Stopped(Exception):
    """A signal asked the peer to stop; raised in the main thread so `finally` cleans up."""


class Peer:
    """One Redis and one Celery worker, started and stopped by this object."""

    def __init__(self, args, persistence):
        self.args = args
        self.persistence = persistence
        self.dir = tempfile.mkdtemp(prefix="drover-celery-peer-")
        self.redis_proc = None
        self.worker_proc = None
        self.port = 0

    # --- processes ---------------------------------------------------------------------------

    def start(self):
        import redis
        for _ in range(5):  # a free port can be taken between our probe and redis' bind
            self.port = free_port()
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--dir", self.dir, "--save", "", "--daemonize", "no",
                   "--logfile", os.path.join(self.dir, "redis.log")]
            if self.persistence == "everysec":
                cmd += ["--appendonly", "yes", "--appendfsync", "everysec"]
            else:
                cmd += ["--appendonly", "no"]
            self.redis_proc = subprocess.Popen(cmd, start_new_session=True,
                                               preexec_fn=dies_with_us(signal.SIGKILL),
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.redis = redis.Redis(host="127.0.0.1", port=self.port)  # db 0: the broker
            self.results = redis.Redis(host="127.0.0.1", port=self.port, db=1)  # the backend
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.redis_proc.poll() is None:
                try:
                    if self.redis.ping():
                        break
                except redis.exceptions.ConnectionError:
                    time.sleep(0.02)
            if self.redis_proc.poll() is None:
                break
            self.redis_proc = None
        if self.redis_proc is None:
            raise RuntimeError("redis-server did not start: " + self.tail("redis.log"))

        with open(os.path.join(self.dir, "drover_peer_app.py"), "w") as f:
            f.write(APP_SOURCE)
        env = dict(os.environ, DROVER_PEER_REDIS=f"redis://127.0.0.1:{self.port}",
                   PYTHONPATH=self.dir, PYTHONDONTWRITEBYTECODE="1")
        os.environ["DROVER_PEER_REDIS"] = env["DROVER_PEER_REDIS"]
        sys.path.insert(0, self.dir)
        import drover_peer_app
        self.app = drover_peer_app.app
        log = open(os.path.join(self.dir, "worker.log"), "w")
        self.worker_proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "drover_peer_app", "worker", "--pool", "prefork",
             "--concurrency", str(self.args.concurrency), "--prefetch-multiplier", "1",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", f"peer{self.port}@127.0.0.1", "--loglevel", "WARNING"],
            cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=dies_with_us(signal.SIGTERM))  # SIGTERM: the worker stops its pool
        log.close()
        # Ready when a task has gone through (every pool process forked, the queue consumed).
        r = self.app.send_task(TASK, task_id="ready-probe")
        deadline = time.monotonic() + 120
        while True:
            if r.ready():
                break
            if self.worker_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not start: " + self.tail("worker.log"))
            time.sleep(0.05)

    def tail(self, name, n=2000):
        try:
            with open(os.path.join(self.dir, name)) as f:
                return f.read()[-n:]
        except OSError:
            return "(no log)"

    @staticmethod
    def end(proc, grace):
        """SIGTERM, then SIGKILL after `grace` s; for the worker, also its pool (its group)."""
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        try:  # pool processes left behind by a killed worker: its own group, started by us
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self):
        try:
            self.end(self.worker_proc, 15)
            self.end(self.redis_proc, 10)
        finally:
            sys.modules.pop("drover_peer_app", None)
            if self.dir in sys.path:
                sys.path.remove(self.dir)
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- measurement helpers -----------------------------------------------------------------

    def cpu(self):
        return {"worker": tree_cpu(self.worker_proc.pid), "redis": cpu_seconds(self.redis_proc.pid),
                "client": self_cpu()}

    def verify(self, ids, figures, fail):
        """Reads every result once; fails unless every task SUCCEEDED."""
        states = {}
        missing = 0
        for start in range(0, len(ids), 2000):
            keys = [META_PREFIX + i for i in ids[start:start + 2000]]
            for raw in self.results.mget(keys):
                if raw is None:
                    missing += 1
                    continue
                s = json.loads(raw)["status"]
                states[s] = states.get(s, 0) + 1
        figures["states"] = states
        figures["missing_results"] = missing
        if states.get("SUCCESS", 0) != len(ids):
            fail(f"{len(ids) - states.get('SUCCESS', 0)} of {len(ids)} tasks did not succeed "
                 f"({missing} results missing)")


class Watcher:
    """Counts stored results of one scenario (prefix) from the backend's publications."""

    def __init__(self, peer, prefix):
        self.prefix = META_PREFIX + prefix
        self.done = {}  # task id -> (time.time() when seen, date_done as a Unix time)
        self.lock = threading.Lock()
        self.pubsub = peer.redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(self.prefix + "*")
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            msg = self.pubsub.get_message(timeout=0.1)
            if msg is None or msg["type"] != "pmessage":
                continue
            now = time.time()
            meta = json.loads(msg["data"])
            if meta.get("status") not in ("SUCCESS", "FAILURE"):
                continue
            done = datetime.fromisoformat(meta["date_done"]).replace(tzinfo=timezone.utc)
            with self.lock:
                self.done.setdefault(meta["task_id"], (now, done.timestamp()))

    def count(self):
        with self.lock:
            return len(self.done)

    def close(self):
        self.stop = True
        self.thread.join()
        self.pubsub.close()

    def wait(self, n, sending, stall_s, deadline_s, t0):
        """Until n results were seen (returns the time of the last), no progress for stall_s after
        the senders finished, or deadline_s passed (returns None with the reason)."""
        last, last_change = -1, time.monotonic()
        while True:
            c = self.count()
            if c != last:
                last, last_change = c, time.monotonic()
            if c >= n and not sending():
                with self.lock:
                    return max(t for t, _ in self.done.values()), None
            if not sending() and time.monotonic() - last_change > stall_s:
                return None, f"no progress for {stall_s} s with {n - c} tasks left"
            if time.monotonic() - t0 > deadline_s:
                return None, f"deadline passed with {n - c} tasks left"
            time.sleep(0.02)


def send_all(peer, ids, clients, errors, paced=None):
    """Sends `ids` from `clients` threads (thread c sends ids c, c+clients, ...), each thread on
    one connection of its own. paced(i) -> the monotonic time to send id i at (open loop)."""
    sent_at = [None] * len(ids)

    def worker(c):
        with peer.app.producer_or_acquire() as producer:
            for i in range(c, len(ids), clients):
                if paced is not None:
                    delay = paced(i) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                sent_at[i] = time.time()
                try:
                    peer.app.send_task(TASK, task_id=ids[i], producer=producer)
                except Exception as e:  # noqa: BLE001 -- counted and reported as the failure
                    errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent_at


def scenario(peer, name, n, clients, rate=None):
    params = {"tasks": n, "clients": clients, "concurrency": peer.args.concurrency,
              "persistence": peer.persistence}
    if rate is not None:
        params["rate_per_s"] = rate
    figures, failures = {}, []
    ids = [f"{name}-{i}" for i in range(n)]
    watcher = Watcher(peer, name + "-")
    try:
        cpu0 = peer.cpu()
        errors = []
        sending = threading.Event()
        sending.set()
        result = {}
        t0 = time.monotonic()
        w0 = time.time()
        paced = None
        if rate is not None:
            paced = lambda i: t0 + i / rate  # noqa: E731

        def run_senders():
            try:
                result["sent_at"] = send_all(peer, ids, clients, errors, paced)
            finally:
                result["seconds"] = time.monotonic() - t0
                sending.clear()

        sender = threading.Thread(target=run_senders, daemon=True)
        sender.start()
        last, why = watcher.wait(n, sending.is_set, peer.args.stall_seconds,
                                 n * 0.2 + 120, t0)
        sender.join()
        cpu1 = peer.cpu()
        figures["submit_seconds"] = result["seconds"]
        figures["submit_rate"] = n / max(1e-9, result["seconds"])
        figures["submit_errors"] = len(errors)
        if errors:
            failures.append(f"{len(errors)} send errors: {errors[0]}")
        if last is not None:
            figures["e2e_seconds"] = last - w0
            figures["e2e_rate"] = n / (last - w0)
        else:
            failures.append(why)
        for k in cpu0:
            figures[f"{k}_core_us_per_task"] = (cpu1[k] - cpu0[k]) / n * 1e6
        series = None
        if rate is not None:
            with watcher.lock:
                seen = dict(watcher.done)
            to_done, to_seen = [], []
            for i, tid in enumerate(ids):
                if tid in seen and result["sent_at"][i] is not None:
                    to_done.append((seen[tid][1] - result["sent_at"][i]) * 1000)
                    to_seen.append((seen[tid][0] - result["sent_at"][i]) * 1000)
            figures["submit_to_done"] = latency_figures(to_done)
            figures["submit_to_result_seen"] = latency_figures(to_seen)
            series = {"submit_to_done_ms": to_done}
    finally:
        watcher.close()
    peer.verify(ids, figures, failures.append)
    out = {"scenario": name, "parameters": params, "figures": figures, "ok": not failures}
    if failures:
        out["failure"] = "; ".join(failures)
    if series:
        out["series"] = series
    print(("[ ok ] " if not failures else "[ FAILED ] ") + f"celery {peer.persistence} {name} "
          + json.dumps({k: v for k, v in figures.items() if not isinstance(v, dict)})
          + ("" if not failures else " -- " + out["failure"]), file=sys.stderr, flush=True)
    return out


def wants(args, name):
    return not args.only or any(name.startswith(p) for p in args.only)


def run(args, persistence):
    peer = Peer(args, persistence)
    try:
        peer.start()
        # Warm-up: fork costs and first imports of every pool process are not measured.
        scenario(peer, "warmup", args.warmup_tasks, 2)
        out = []
        if wants(args, "throughput-batch"):
            out.append(scenario(peer, "throughput-batch", args.batch_tasks, args.batch_clients))
        if wants(args, "throughput-single"):
            out.append(scenario(peer, "throughput-single", args.single_tasks, args.single_clients))
        if wants(args, "latency-light"):
            n = max(1, int(args.light_rate * args.latency_seconds))
            clients = min(16, max(2, int(args.light_rate / 10)))
            out.append(scenario(peer, "latency-light", n, clients, rate=args.light_rate))
        return out
    finally:
        peer.stop()


def versions():
    import celery
    import kombu
    import redis
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    v = next((w[2:] for w in server.split() if w.startswith("v=")), server.strip())
    return {"celery": celery.__version__, "kombu": kombu.__version__, "redis_py": redis.__version__,
            "redis_server": v}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the peer works")
    p.add_argument("--batch-tasks", type=int, default=100000)
    p.add_argument("--batch-clients", type=int, default=2)
    p.add_argument("--single-tasks", type=int, default=100000)
    p.add_argument("--single-clients", type=int, default=64)
    p.add_argument("--light-rate", type=float, default=20)
    p.add_argument("--latency-seconds", type=float, default=15)
    p.add_argument("--concurrency", type=int, default=24,
                   help="worker pool processes (drover_bench passes its nodes x slots)")
    p.add_argument("--warmup-tasks", type=int, default=2000)
    p.add_argument("--stall-seconds", type=float, default=30)
    p.add_argument("--persistence", nargs="+", choices=["everysec", "none"], default=["everysec"],
                   help="Redis persistence per run: AOF with fsync every second, or none")
    p.add_argument("--only", nargs="*", default=[], help="scenario name prefixes")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    if args.smoke:
        args.batch_tasks, args.single_tasks, args.single_clients = 200, 100, 16
        args.latency_seconds, args.concurrency, args.warmup_tasks = 2, 4, 50
        args.stall_seconds = 20

    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError as e:
        print(f"celery_peer: SKIP: {e.name} is not installed (Debian: python3-celery "
              "python3-redis redis-server; `make bench` installs them)", file=sys.stderr)
        return SKIP
    if shutil.which("redis-server") is None:
        print("celery_peer: SKIP: redis-server is not installed (Debian: redis-server)",
              file=sys.stderr)
        return SKIP

    def stop(signum, _frame):
        raise Stopped(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, stop)

    doc = {"peer": "celery", "versions": versions(), "smoke": args.smoke,
           "setup": {"broker": "redis", "result_backend": "redis", "pool": "prefork",
                     "concurrency": args.concurrency, "acks_late": True,
                     "prefetch_multiplier": 1, "task": "no-op, json",
                     "batch_clients": args.batch_clients, "single_clients": args.single_clients},
           "runs": [], "ok": True}
    t0 = time.monotonic()
    try:
        for persistence in args.persistence:
            try:
                scenarios = run(args, persistence)
            except Stopped:
                raise
            except Exception as e:  # noqa: BLE001 -- a failed setup is this run's record
                scenarios = [{"scenario": "setup", "ok": False, "failure": repr(e)}]
            doc["runs"].append({"persistence": persistence,
                                "redis": "appendonly yes, appendfsync everysec"
                                if persistence == "everysec" else "no persistence",
                                "scenarios": scenarios})
            doc["ok"] = doc["ok"] and all(s["ok"] for s in scenarios)
    except Stopped as e:
        print(f"celery_peer: stopped by {e}", file=sys.stderr)
        return 1
    doc["total_seconds"] = time.monotonic() - t0
    text = json.dumps(doc, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
