#!/usr/bin/env python3
"""tests/layers_check.py is itself tested: a copy of the real tree (the
layer folders' .h/.cc/.c files, in a temp dir) passes it, and the same copy
with one upward include added fails it, exit 1, naming the file and the
header. Every spelling the compiler accepts is tried ("dev/x.h",
<dev/x.h>, "../dev/x.h"), and every pair of layers that ARCHITECTURE.md's
arrows forbid.

  tests/layers_check_test.py SOURCE_DIR

Seen failing (each undone afterwards):
- layers_check.py's main() returning 0 always: all 8 cases that add a
  break failed ("1 != 0").
- "dev" added to ALLOWED["preload"] (the arrow the check exists for):
  test_preload_includes_dev, test_angle_brackets and
  test_architecture_arrows_are_forbidden failed.
- layers_check.py as it was before this test (it matched only
  '#include "layer/..."'): test_angle_brackets and test_relative_path
  failed, i.e. it let <dev/shm_doorbell.h> and "../runtime/x.h" through.
"""
import contextlib
import importlib.util
import io
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

SOURCE_DIR = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(
    __file__).resolve().parent.parent).resolve()
CHECK = SOURCE_DIR / "tests" / "layers_check.py"

_spec = importlib.util.spec_from_file_location("layers_check", CHECK)
layers_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layers_check)

# Arrows ARCHITECTURE.md forbids, written out here so that loosening
# ALLOWED in layers_check.py (the thing under test) fails this test too.
MUST_FORBID = [
    ("dev", "engine"), ("engine", "dev"),  # never include each other
    ("preload", "dev"), ("tools", "dev"),  # talk to the runtime only
    ("base", "wire"), ("wire", "engine"), ("engine", "runtime"),
    ("dev", "runtime"), ("runtime", "preload"), ("runtime", "tools"),
    ("preload", "tools"),
]


def a_header(root: pathlib.Path, folder: str) -> str:
    """An existing non-test header of `folder`, as "folder/x.h"."""
    for h in sorted((root / folder).glob("*.h")):
        if not layers_check.is_test_code(h):
            return f"{folder}/{h.name}"
    raise AssertionError(f"no header in {folder}/")


class LayersCheckTest(unittest.TestCase):

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="layers_check_test.")
        self.root = pathlib.Path(self._tmp.name)
        keep = ("*.h", "*.cc", "*.c")
        for layer in layers_check.ALLOWED:
            src = SOURCE_DIR / layer
            if src.is_dir():
                shutil.copytree(
                    src, self.root / layer,
                    ignore=lambda d, names: [
                        n for n in names if not (pathlib.Path(d, n).is_dir()
                                                 or any(
                                                     pathlib.Path(n).match(k)
                                                     for k in keep))
                    ])

    def tearDown(self):
        self._tmp.cleanup()

    def run_check(self):
        p = subprocess.run([sys.executable, str(CHECK), str(self.root)],
                           capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout + p.stderr

    def add_include(self, rel: str, line: str):
        path = self.root / rel
        text = path.read_text() if path.exists() else ""
        path.write_text(text + "\n" + line + "\n")

    def assert_fails_naming(self, rel: str, header: str):
        rc, out = self.run_check()
        self.assertEqual(rc, 1, out)
        self.assertIn(f"{rel}: includes {header}:", out)

    def test_copy_of_the_tree_passes(self):
        # Without this the cases below would prove nothing.
        rc, out = self.run_check()
        self.assertEqual(rc, 0, out)

    def test_dev_includes_engine(self):
        self.add_include("dev/shm_dmb.cc", '#include "engine/connection.h"')
        self.assert_fails_naming("dev/shm_dmb.cc", "engine/connection.h")

    def test_preload_includes_dev(self):
        # The include issue 17 removed from preload/conn.cc.
        self.add_include("preload/conn.cc", '#include "dev/shm_dmb.h"')
        self.assert_fails_naming("preload/conn.cc", "dev/shm_dmb.h")

    def test_angle_brackets(self):
        self.add_include("preload/epoll.cc", "#include <dev/shm_doorbell.h>")
        self.assert_fails_naming("preload/epoll.cc", "dev/shm_doorbell.h")

    def test_relative_path(self):
        self.add_include("engine/close.cc", '#include "../runtime/smc_socket.h"')
        self.assert_fails_naming("engine/close.cc", "runtime/smc_socket.h")

    def test_new_file(self):
        self.add_include("dev/new_device.h", '#include "engine/actions.h"')
        self.assert_fails_naming("dev/new_device.h", "engine/actions.h")

    def test_test_code_may_reach_down(self):
        self.add_include("dev/shm_dmb_test.cc", '#include "engine/actions.h"')
        rc, out = self.run_check()
        self.assertEqual(rc, 0, out)

    def test_only_dev_verbs_includes_libibverbs(self):
        # Test code included: dev/verbs.h is what everything else uses.
        self.add_include("dev/sim_rdma.cc", "#include <infiniband/verbs.h>")
        self.add_include("dev/zz_verbs_probe_test.cc",
                         "#include <infiniband/verbs.h>")
        rc, out = self.run_check()
        self.assertEqual(rc, 1, out)
        for rel in ("dev/sim_rdma.cc", "dev/zz_verbs_probe_test.cc"):
            self.assertIn(f"{rel}: includes infiniband/verbs.h: only "
                          "dev/verbs.cc may", out)

    def test_known_break(self):
        # A listed exception passes while it occurs and fails once it no
        # longer does, so the list only shrinks. (In-process, with a
        # KNOWN_BREAKS of this test's own: the real one may be empty.)
        rel, header = "dev/shm_dmb.cc", "engine/actions.h"
        self.add_include(rel, f'#include "{header}"')
        saved = (layers_check.KNOWN_BREAKS, sys.argv)
        try:
            layers_check.KNOWN_BREAKS = {(rel, header)}
            sys.argv = [str(CHECK), str(self.root)]
            with contextlib.redirect_stdout(io.StringIO()) as out:
                self.assertEqual(layers_check.main(), 0, out.getvalue())
            path = self.root / rel
            path.write_text(path.read_text().replace(f'#include "{header}"',
                                                     ""))
            with contextlib.redirect_stdout(io.StringIO()) as out:
                self.assertEqual(layers_check.main(), 1, out.getvalue())
            self.assertIn(f"{rel} no longer includes {header}", out.getvalue())
        finally:
            layers_check.KNOWN_BREAKS, sys.argv = saved

    def test_architecture_arrows_are_forbidden(self):
        # One probe file per forbidden pair, all in one run.
        probes = []
        for layer, target in MUST_FORBID:
            rel = f"{layer}/zz_layers_probe_{target}.cc"
            header = a_header(self.root, target)
            self.add_include(rel, f'#include "{header}"')
            probes.append((rel, header))
        rc, out = self.run_check()
        self.assertEqual(rc, 1, out)
        for rel, header in probes:
            self.assertIn(f"{rel}: includes {header}:", out)

    def test_every_upward_pair_is_forbidden(self):
        # Whatever ALLOWED says is forbidden must be reported as such.
        probes = []
        for layer, allowed in layers_check.ALLOWED.items():
            for target in layers_check.ALLOWED:
                if target == layer or target in allowed:
                    continue
                rel = f"{layer}/zz_layers_probe_{target}.cc"
                header = a_header(self.root, target)
                self.add_include(rel, f'#include "{header}"')
                probes.append((rel, header))
        self.assertTrue(probes)
        rc, out = self.run_check()
        self.assertEqual(rc, 1, out)
        for rel, header in probes:
            self.assertIn(f"{rel}: includes {header}:", out)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
