"""test_static_root - the static binary alone in an empty root.

The FROM scratch image of the Containerfile, without a container engine:
`make static`, then test/static-root.sh runs build/static/wsd by itself
in an empty directory under chroot (server, /health, pub, sub, token).
Its last line is the summary this file passes on.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

build = subprocess.run(["make", "-s", "-C", ROOT, "static"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
if build.returncode != 0:
    sys.stdout.write(build.stdout.decode("utf-8", "replace")[-2000:])
    print("0 passed, 1 failed")
    sys.exit(1)
run = subprocess.run(["bash", os.path.join(ROOT, "test", "static-root.sh"),
                      os.path.join(ROOT, "build", "static", "wsd")],
                     timeout=300)
sys.exit(run.returncode)
