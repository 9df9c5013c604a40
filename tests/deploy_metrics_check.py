#!/usr/bin/python3
"""Every metric the checked-in monitoring files name is one a live node exposes.

Usage: deploy_metrics_check.py METRICS_TXT FILE...
METRICS_TXT is a node's GET /metrics; each FILE (deploy/grafana-dashboard.json,
deploy/prometheus-rules.yml) is scanned for `drover_*` names. A histogram's `_bucket`, `_sum` and
`_count` series count as its family. Prints each unknown name with its file; exits 1 if any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NAME = re.compile(r"\bdrover_[a-z0-9_]*[a-z0-9]")


def exposed(metrics_text: str) -> tuple[set[str], set[str]]:
    """(every family from `# TYPE` lines, the histogram families among them)."""
    families: set[str] = set()
    histograms: set[str] = set()
    for line in metrics_text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "#" and parts[1] == "TYPE":
            families.add(parts[2])
            if parts[3] in ("histogram", "summary"):
                histograms.add(parts[2])
    return families, histograms


def known(name: str, families: set[str], histograms: set[str]) -> bool:
    if name in families:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return True
    return False


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    families, histograms = exposed(Path(sys.argv[1]).read_text())
    if not families:
        print(f"FAIL: no '# TYPE' line in {sys.argv[1]}")
        return 1
    bad = 0
    for file in sys.argv[2:]:
        names = sorted(set(NAME.findall(Path(file).read_text())))
        if not names:
            print(f"FAIL: {file} names no drover_ metric")
            bad += 1
        for name in names:
            if not known(name, families, histograms):
                print(f"FAIL: {file}: {name} is not exposed by the node")
                bad += 1
        print(f"{file}: {len(names)} metric names, all exposed" if not bad else "", end="")
        print()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
