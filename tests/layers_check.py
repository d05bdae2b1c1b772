#!/usr/bin/env python3
"""The layers of ARCHITECTURE.md, enforced: each folder may include only
the folders its arrows point to (and itself). Tests, fuzzers and benchmarks
(*_test.cc, *_fuzz.cc, *test_util*, tests/, fuzz/, bench/) may reach below
their layer freely; the code they test may not.

  tests/layers_check.py [SOURCE_DIR]     exit 1 and one line per break

KNOWN_BREAKS lists today's exceptions, each with the issue that removes it;
a new upward include fails, and so does an exception that no longer occurs
(so the list only ever shrinks)."""
import pathlib
import re
import sys

# folder -> folders it may include (besides itself and system headers).
ALLOWED = {
    "base": set(),
    "wire": {"base"},
    "engine": {"base", "wire"},
    "dev": {"base"},
    "negotiate": {"base", "wire"},
    "runtime": {"base", "wire", "engine", "dev", "negotiate"},
    # preload/ and tools/ talk to the runtime, never to a device directly.
    "preload": {"base", "wire", "engine", "negotiate", "runtime"},
    "tools": {"base", "wire", "engine", "negotiate", "runtime", "bench"},
}

# System headers one file owns: no other file of any layer (tests included)
# may include them, so the rest of usmc stays buildable and testable
# without the library behind them (docs/dev-rdma.md).
OWNED = {"infiniband/verbs.h": "dev/verbs.cc"}

# (file, included header): known upward includes, each with the issue that
# removes it. None left since issue 17 (one device interface and executor).
KNOWN_BREAKS: set = set()

# Every spelling the compiler accepts with the source root on the include
# path: "dev/x.h", <dev/x.h>, and relative ones such as "../dev/x.h".
INCLUDE = re.compile(r'^\s*#\s*include\s*(?:"([^"]+)"|<([^>]+)>)', re.M)


def included_header(root: pathlib.Path, path: pathlib.Path, spelled: str):
    """The header as "folder/rest" relative to the source root, or None for
    a header outside the layers (system, same folder)."""
    if spelled.startswith(("./", "../")):
        target = (path.parent / spelled).resolve()
        try:
            spelled = target.relative_to(root.resolve()).as_posix()
        except ValueError:
            return None
    folder = spelled.split("/", 1)[0]
    if "/" not in spelled or folder not in ALLOWED:
        return None  # "vmlinux.h", a system header such as <linux/bpf.h>
    return folder, spelled


def is_test_code(path: pathlib.Path) -> bool:
    n = path.name
    return (n.endswith("_test.cc") or n.endswith("_test.c") or
            n.endswith("_fuzz.cc") or "test_util" in n or
            "_testing" in n or n.endswith("_helper.cc"))


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                        pathlib.Path(__file__).resolve().parent.parent)
    breaks, seen_known = [], set()
    for layer, allowed in ALLOWED.items():
        for path in sorted((root / layer).rglob("*")):
            if path.suffix not in (".h", ".cc", ".c"):
                continue
            rel = path.relative_to(root).as_posix()
            for m in INCLUDE.finditer(path.read_text(errors="replace")):
                spelled = m.group(1) or m.group(2)
                if OWNED.get(spelled, rel) != rel:
                    breaks.append(f"{rel}: includes {spelled}: only "
                                  f"{OWNED[spelled]} may")
            if is_test_code(path):
                continue
            for m in INCLUDE.finditer(path.read_text(errors="replace")):
                found = included_header(root, path, m.group(1) or m.group(2))
                if found is None:
                    continue
                folder, header = found
                if folder == layer or folder in allowed:
                    continue
                if (rel, header) in KNOWN_BREAKS:
                    seen_known.add((rel, header))
                    continue
                breaks.append(f"{rel}: includes {header}: {layer}/ may "
                              f"include only {sorted(allowed) or 'itself'}")
    for rel, header in sorted(KNOWN_BREAKS - seen_known):
        breaks.append(f"{rel} no longer includes {header}: remove it from "
                      f"KNOWN_BREAKS in {pathlib.Path(__file__).name}")
    for b in breaks:
        print(b)
    print(f"layers: {len(breaks)} break(s), "
          f"{len(seen_known)} known exception(s) left")
    return 1 if breaks else 0


if __name__ == "__main__":
    sys.exit(main())
