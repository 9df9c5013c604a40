#!/usr/bin/env python3
"""Turns drover_bench's JSON into a markdown table and PNG plots.

usage: report.py RESULTS.json OUT_DIR

Writes OUT_DIR/latest.md and OUT_DIR/{throughput,latency,failover,scaling}.png. Plots need
matplotlib (Debian: python3-matplotlib); without it only the markdown is written.
"""
import json
import os
import sys


def fmt(v, digits=0):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def find(doc, name):
    for s in doc["scenarios"]:
        if s.get("scenario") == name:
            return s
    return None


def fig(doc, name, *path):
    s = find(doc, name)
    if s is None:
        return None
    v = s.get("figures", {})
    for p in path:
        if not isinstance(v, dict) or p not in v:
            return None
        v = v[p]
    return v


def scenario_row(s):
    p = s.get("parameters", {})
    f = dict(s.get("figures", {}))
    for k in [k for k in f if k.startswith("mntr_") or k in ("nodes",)]:
        f.pop(k)
    figs = []
    for k, v in f.items():
        if isinstance(v, dict):
            if "p50_ms" in v:
                figs.append(f"{k}: p50 {fmt(v['p50_ms'], 1)} / p99 {fmt(v['p99_ms'], 1)} / "
                            f"p99.9 {fmt(v['p999_ms'], 1)} ms")
            else:
                figs.append(f"{k}: " + ", ".join(f"{a} {b}" for a, b in v.items()))
        else:
            figs.append(f"{k}: {fmt(v, 2 if isinstance(v, float) and abs(v) < 10 else 0)}")
    params = ", ".join(f"{k} {v}" for k, v in p.items())
    ok = "yes" if s.get("ok") else f"**FAILED**: {s.get('failure', '')}"
    return f"| {s['scenario']} | {params} | {'<br>'.join(figs)} | {ok} |"


def markdown(doc):
    m = doc["machine"]
    out = [
        "# Drover benchmark results",
        "",
        f"Commit `{doc['git_commit'][:12]}`{' (dirty tree)' if doc.get('git_dirty') else ''}, "
        f"{doc['date']}, {m['nproc']} cores, {m['memory_mib'] / 1024:.1f} GiB, {m['cpu']}, "
        f"ZooKeeper {m['zookeeper']}; run took {doc['total_seconds']:.0f} s"
        f"{' (smoke sizes)' if doc.get('smoke') else ''}.",
        "",
        "| scenario | parameters | figures | ok |",
        "| --- | --- | --- | --- |",
    ]
    for s in doc["scenarios"]:
        out.append(scenario_row(s))
    r = doc.get("ratios_to_zookeeper_limits", {})
    if r:
        out += ["", "Drover as a share of ZooKeeper's raw limits on the same ensemble:", "",
                "| figure | tasks/s | of pipelined creates/s | of multi-100 znodes/s |",
                "| --- | --- | --- | --- |"]
        for k, v in r.items():
            out.append(f"| {k} | {fmt(v['value'])} | {v['of_pipelined_creates'] * 100:.1f}% | "
                       f"{v['of_multi100_znodes'] * 100:.2f}% |")
    out += peer_markdown(doc)
    return "\n".join(out) + "\n"


def peer_markdown(doc):
    """The Celery peer (bench/celery_peer.py): its setup, Drover beside it, and its own rows."""
    peer = doc.get("peer_celery")
    if not isinstance(peer, dict):
        return []
    if "skipped" in peer:
        return ["", f"Celery peer: skipped ({peer['skipped'].strip()})."]
    out = []
    if "setup" in peer:
        st, v = peer["setup"], peer.get("versions", {})
        out += ["", f"Drover beside Celery {v.get('celery', '?')} (kombu {v.get('kombu', '?')}, "
                f"redis-py {v.get('redis_py', '?')}) with Redis {v.get('redis_server', '?')} as "
                f"broker and result backend, run after Drover's scenarios on the same machine: "
                f"{st['pool']} pool of {st['concurrency']} processes, acks_late, prefetch "
                f"multiplier {st['prefetch_multiplier']}, {st['task']}."]
    if peer.get("failure"):
        out += ["", f"**Celery peer FAILED**: {peer['failure']}"]
    ratios = doc.get("ratios_to_celery") or {}
    if ratios:
        out += ["", "| figure | Redis persistence | Drover | Celery | Drover / Celery |",
                "| --- | --- | --- | --- | --- |"]
        for persistence, figures in ratios.items():
            for k, v in figures.items():
                unit = "ms" if k.endswith("_ms") else "tasks/s"
                note = " (time: below 1 is faster)" if unit == "ms" else ""
                out.append(f"| {k} | {persistence} | {fmt(v['drover'], 1)} {unit} | "
                           f"{fmt(v['celery'], 1)} {unit} | {v['ratio']:.2f}x{note} |")
    for run in peer.get("runs", []):
        out += ["", f"Celery peer, Redis {run.get('redis', run.get('persistence'))}:", "",
                "| scenario | parameters | figures | ok |", "| --- | --- | --- | --- |"]
        for s in run.get("scenarios", []):
            out.append(scenario_row(s))
    return out


def plots(doc, out_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report.py: matplotlib missing, no plots", file=sys.stderr)
        return

    # Throughput over time: tasks done per second (1 s windows) of each throughput run.
    fig_, ax = plt.subplots(figsize=(8, 4.5))
    for s in doc["scenarios"]:
        series = (s.get("series") or {}).get("done_over_time")
        if not series or not s["scenario"].startswith(("throughput", "backlog")):
            continue
        xs, ys = [], []
        j = 0
        for i, (t, n) in enumerate(series):
            while series[j][0] < t - 1.0:
                j += 1
            dt = t - series[j][0]
            if dt >= 0.5:
                xs.append(t)
                ys.append(max(0.0, (n - series[j][1]) / dt))
        ax.plot(xs, ys, label=s["scenario"])
    ax.set_xlabel("seconds since the first submit (backlog: since workers started)")
    ax.set_ylabel("tasks finished per second (1 s window)")
    ax.set_title("End-to-end no-op throughput over time")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig_.tight_layout()
    fig_.savefig(os.path.join(out_dir, "throughput.png"), dpi=80)
    plt.close(fig_)

    # Latency CDFs.
    fig_, ax = plt.subplots(figsize=(8, 4.5))
    for s in doc["scenarios"]:
        if not s["scenario"].startswith("latency"):
            continue
        for key, style in (("submit_to_done_ms", "-"), ("submit_to_running_ms", "--")):
            v = sorted((s.get("series") or {}).get(key) or [])
            if not v:
                continue
            ys = [(i + 1) / len(v) for i in range(len(v))]
            rate = s["parameters"]["rate_per_s"]
            ax.plot(v, ys, style, label=f"{s['scenario']} ({rate:.0f}/s) {key[:-3]}")
    for run in (doc.get("peer_celery") or {}).get("runs", []):
        for s in run.get("scenarios", []):
            v = sorted((s.get("series") or {}).get("submit_to_done_ms") or [])
            if v:
                ys = [(i + 1) / len(v) for i in range(len(v))]
                ax.plot(v, ys, ":", label=f"Celery (Redis {run['persistence']}) {s['scenario']} "
                        "submit_to_done")
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log)")
    ax.set_ylabel("fraction of tasks")
    ax.set_title("Latency CDF (status timestamps)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig_.tight_layout()
    fig_.savefig(os.path.join(out_dir, "latency.png"), dpi=80)
    plt.close(fig_)

    # Failover timelines: one row per case, a marker per milestone, the session timeout dashed.
    cases = [s for s in doc["scenarios"] if s["scenario"].startswith("failover")]
    if cases:
        fig_, ax = plt.subplots(figsize=(9, 0.6 * len(cases) + 1.5))
        markers = {}
        for row, s in enumerate(cases):
            tl = (s.get("series") or {}).get("timeline", [])
            session = s["parameters"]["session_timeout_ms"]
            ax.plot([session, session], [row - 0.4, row + 0.4], "k--", lw=0.8)
            for ev in tl:
                if ev["ms"] is None or ev["ms"] < 0:
                    continue
                name = ev["event"]
                if name not in markers:
                    markers[name] = "os^vD*xP"[len(markers) % 8]
                ax.scatter([ev["ms"]], [row], marker=markers[name], s=50,
                           label=name if name not in ax.get_legend_handles_labels()[1] else None)
        ax.set_yticks(range(len(cases)))
        ax.set_yticklabels([s["scenario"] for s in cases], fontsize=8)
        ax.set_xlabel("ms after the signal (dashed: session timeout)")
        ax.set_title("Failover timelines")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        fig_.tight_layout()
        fig_.savefig(os.path.join(out_dir, "failover.png"), dpi=80)
        plt.close(fig_)

    # Scaling.
    pts = []
    for s in doc["scenarios"]:
        if s["scenario"].startswith("scaling-") and "e2e_rate" in s.get("figures", {}):
            pts.append((s["parameters"]["workers"], s["figures"]["e2e_rate"]))
    if pts:
        fig_, ax = plt.subplots(figsize=(6, 4))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("worker node processes")
        ax.set_ylabel("end-to-end tasks/s")
        ax.set_title("Throughput vs workers")
        ax.grid(alpha=0.3)
        fig_.tight_layout()
        fig_.savefig(os.path.join(out_dir, "scaling.png"), dpi=80)
        plt.close(fig_)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    os.makedirs(sys.argv[2], exist_ok=True)
    with open(os.path.join(sys.argv[2], "latest.md"), "w") as f:
        f.write(markdown(doc))
    plots(doc, sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
