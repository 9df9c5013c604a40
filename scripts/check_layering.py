#!/usr/bin/env python3
"""Checks the dependency rule of docs/ARCHITECTURE.md on the source tree.

1. A file under src/<folder>/ includes headers only from <folder> itself and the folders below it.
2. Only src/coord/zk/ (and the tests of that implementation) include the ZooKeeper C client.
3. Each library's link line (src/<folder>/CMakeLists.txt) names only drover_ libraries of the
   folders below it, and names every folder its sources include, so the link line states the
   dependencies (transitive links through a named library count).

Prints each violation as `file:line: message` and exits 1 if there is any; exits 0 otherwise.
Usage: check_layering.py [REPO_ROOT]
"""
import pathlib
import re
import sys

# Each folder and the folders it may use directly; what those may use is allowed too.
BELOW = {
    "base": set(),
    "coord": {"base"},
    "local": {"base"},  # the test harness and `drover up`: processes, ports, ZooKeeper servers
    "recipes": {"coord"},
    "tasks": {"recipes", "coord"},
    "scheduler": {"tasks"},
    "worker": {"tasks"},
    "api": {"scheduler", "worker", "tasks"},
    "app": {"api", "scheduler", "worker", "local"},
}

# Files outside src/coord/zk/ that may include the C client: the tests of that implementation,
# which reach into the client to open the window a fix closes.
ZK_HEADER_ALLOWED = {"tests/zk_coordination_test.cc"}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
LINK = re.compile(r"target_link_libraries\(\s*(drover_[a-z_]+)\s+([^)]*)\)", re.S)


def allowed(folder):
    """The folder itself and everything below it, transitively."""
    seen, todo = {folder}, [folder]
    while todo:
        for dep in BELOW[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def library_folder(name):
    """drover_coord_zk -> coord; drover_api -> api; None for a non-folder library."""
    rest = name[len("drover_"):]
    for folder in BELOW:
        if rest == folder or rest.startswith(folder + "_"):
            return folder
    return None


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    src = root / "src"
    problems = []
    includes_of = {folder: set() for folder in BELOW}

    for path in sorted(src.rglob("*")):
        if path.suffix not in (".h", ".cc"):
            continue
        rel = path.relative_to(root).as_posix()
        folder = path.relative_to(src).parts[0]
        if folder not in BELOW:
            problems.append(f"{rel}:1: folder '{folder}' is not in the dependency rule")
            continue
        ok = allowed(folder)
        is_test = path.name.endswith("_test.cc") or "test" in path.name
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            kind, header = m.groups()
            if header.startswith("zookeeper/") and not rel.startswith("src/coord/zk/"):
                problems.append(f"{rel}:{n}: only src/coord/zk/ may include the ZooKeeper client")
            if kind != '"' or "/" not in header:
                continue
            target = header.split("/")[0]
            if target not in BELOW:
                continue
            if target not in ok:
                problems.append(
                    f"{rel}:{n}: '{folder}' may not include '{header}' "
                    f"('{target}' is not below '{folder}')")
            elif target != folder and not is_test:
                includes_of[folder].add(target)

    for path in sorted(root.glob("tests/**/*")) + sorted(root.glob("bench/**/*")):
        if path.suffix not in (".h", ".cc"):
            continue
        rel = path.relative_to(root).as_posix()
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if m and m.group(2).startswith("zookeeper/") and rel not in ZK_HEADER_ALLOWED:
                problems.append(f"{rel}:{n}: only src/coord/zk/ may include the ZooKeeper client")

    for folder in BELOW:
        cmake = src / folder / "CMakeLists.txt"
        if not cmake.exists():
            continue
        text = cmake.read_text()
        linked = {}
        for m in LINK.finditer(text):
            lib = m.group(1)
            if library_folder(lib) != folder:
                continue
            deps = {library_folder(t) for t in m.group(2).split() if t.startswith("drover_")}
            deps.discard(None)
            linked.setdefault(lib, set()).update(deps)
        main_lib = f"drover_{folder}"
        for lib, deps in linked.items():
            for dep in sorted(deps - allowed(folder)):
                problems.append(f"src/{folder}/CMakeLists.txt:1: {lib} links drover_{dep}, "
                                f"which is not below '{folder}'")
        reach = set()
        for dep in linked.get(main_lib, set()) - {folder}:
            reach |= allowed(dep)
        for target in sorted(includes_of[folder] - reach):
            problems.append(f"src/{folder}/CMakeLists.txt:1: {main_lib} includes from "
                            f"'{target}' but does not link drover_{target}")

    for p in problems:
        print(p)
    if problems:
        print(f"layering: {len(problems)} violation(s) of the dependency rule (docs/ARCHITECTURE.md)")
        return 1
    print("layering: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
