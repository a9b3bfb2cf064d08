"""test_readme - the README's shell example, run as written.

The ```sh block of README.md's Quick start runs against a real wsd on a
free port (its 127.0.0.1:8000 replaced); each command's output must match
the "# ..." line under it, "..." standing for any text.
"""
import os
import re
import subprocess

from wsdtest import Server, check, done

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

with open(os.path.join(ROOT, "README.md")) as f:
    block = re.search(r"```sh\n(.*?)```", f.read(), re.S)
check("README has a sh block", block is not None)
with Server() as srv:
    text = block.group(1).replace("127.0.0.1:8000",
                                  "127.0.0.1:%d" % srv.port)
    cmd, cmds = "", []
    for line in text.splitlines():
        if line.startswith("# "):
            cmds.append((cmd, line[2:]))
            cmd = ""
        else:
            cmd += line + "\n"
    check("two commands with their output", len(cmds) == 2, cmds)
    for cmd, want in cmds:
        out = subprocess.run(["bash", "-c", cmd], stdout=subprocess.PIPE,
                             timeout=30).stdout.decode()
        pat = ".*".join(re.escape(p) for p in want.split("..."))
        check("README: %s" % cmd.split("\n")[0][:60],
              re.fullmatch(pat, out.strip()) is not None,
              "got %r want %r" % (out, want))
done()
