"""test_docs - the packaging around the binary says what the binary does.

Run with Debian's /usr/bin/python3; standard library only.

- wsd.8 is clean under `mandoc -Tlint -Wall` (mandoc missing is a failure:
  apt-get install mandoc);
- every option `wsd --help` prints is in wsd.8 (as an item, with its WSD_*
  variable and its default) and in README.md's Options table (with the same
  default), and neither documents an option wsd does not have;
- README.md stands alone: no reference to ../shared;
- wsd.service has the keys the issue asks for and passes
  `systemd-analyze verify` and `systemd-analyze security` (missing
  systemd-analyze is a failure: apt-get install systemd);
- `make install DESTDIR=... PREFIX=/usr` puts the binary, the page and the
  unit (ExecStart rewritten) where they belong; `make uninstall` removes
  them;
- LICENSE is ISC, CHANGELOG.md has an entry for the version wsd prints.
"""
import os
import re
import shutil
import subprocess
import tempfile

from wsdtest import ROOT, WSD, check, done

MAN = os.path.join(ROOT, "wsd.8")
README = os.path.join(ROOT, "README.md")
UNIT = os.path.join(ROOT, "wsd.service")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def run(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300,
                          **kw)


def help_options():
    """{name: default or None} from `wsd --help`, in its order."""
    out = run([WSD, "--help"]).stdout
    opts = {}
    for line in out.splitlines():
        m = re.match(r"\s+--([a-z][a-z-]*)\s+(.*)$", line)
        if not m:
            continue
        name, text = m.groups()
        d = re.search(r"\(([^()]*)\)\s*$", text)
        default = None
        if d:
            v = d.group(1).split(": ")[0].strip()
            # "(IP, localhost)", "(by default they never expire)" describe
            # behaviour rather than a value.
            if "," not in v and "default" not in v:
                default = v
        opts[name] = default
    return opts


def man_items(src):
    """{name: item text} for each `.It Fl -name` in wsd.8's option list."""
    items, cur = {}, None
    for line in src.splitlines():
        m = re.match(r"\.It Fl -([a-z][a-z-]*)", line)
        if m:
            cur = m.group(1)
            items[cur] = line + "\n"
        elif line.startswith((".It", ".El", ".Sh")):
            cur = None
        elif cur is not None:
            items[cur] += line + "\n"
    return items


def readme_rows(src):
    """{name: default column} from README's Options table."""
    sec = src.split("\n## Options", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in sec.splitlines():
        if not line.startswith("| `--"):
            continue
        cols = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        for name in re.findall(r"`--([a-z][a-z-]*)", cols[0]):
            rows[name] = cols[1] if len(cols) > 1 else ""
    return rows


def test_mandoc():
    mandoc = shutil.which("mandoc")
    if not check("mandoc installed", mandoc is not None,
                 "apt-get install mandoc (or sudo test/deps.sh)"):
        return
    r = run([mandoc, "-Tlint", "-Wall", MAN], cwd=ROOT)
    # Two messages are facts about this host, not the page: whether the
    # pages named by .Xr (curl(1), sd_notify(3), ...) are installed, and
    # whether makewhatis(8) was run.  Everything else counts.
    rest = [l for l in r.stdout.splitlines()
            if "referenced manual not found: Xr" not in l
            and not re.search(r"mandoc\.db lacks \S+ entry", l)]
    check("mandoc -Tlint -Wall wsd.8 is clean", not rest and r.returncode <= 1,
          "rc=%d\n%s" % (r.returncode, "\n".join(rest)))
    # The page renders and names itself.
    r = run([mandoc, "-Tascii", MAN])
    check("wsd.8 renders", r.returncode == 0 and "WSD(8)" in r.stdout)


def test_options():
    opts = help_options()
    check("wsd --help lists options", len(opts) > 30, str(opts))
    man = read(MAN)
    items = man_items(man)
    rows = readme_rows(read(README))
    for name, default in opts.items():
        item = items.get(name)
        check("wsd.8 documents --%s" % name, item is not None)
        if name not in ("help", "version"):
            env = "WSD_" + name.upper().replace("-", "_")
            check("wsd.8 names %s" % env,
                  item is not None and ("Ev " + env) in item)
        row = rows.get(name)
        check("README documents --%s" % name, row is not None)
        if (default is None or item is None or row is None or
                name in ("help", "version")):
            continue
        v = re.escape(default)
        check("wsd.8 default of --%s is %s" % (name, default),
              re.search(r"default (?:Li |Cm )?%s(?:\s|$)" % v, item),
              item)
        check("README default of --%s is %s" % (name, default),
              re.search(r"(?:^|[\s`])%s(?:$|[\s`])" % v, row), row)
    for name in items:
        check("wsd.8 --%s exists in wsd --help" % name, name in opts)
    for name in rows:
        check("README --%s exists in wsd --help" % name, name in opts)


def test_readme():
    src = read(README)
    check("README has no reference to ../shared", "../shared" not in src)


UNIT_KEYS = [
    ("Unit", "Documentation", "man:wsd(8)"),
    ("Service", "Type", "notify"),
    ("Service", "ExecStart", "/usr/local/bin/wsd"),
    ("Service", "ExecReload", "/bin/kill -HUP $MAINPID"),
    ("Service", "EnvironmentFile", "-/etc/wsd/wsd.env"),
    ("Service", "WatchdogSec", "30"),
    ("Service", "Restart", "on-failure"),
    ("Service", "DynamicUser", "yes"),
    ("Service", "NoNewPrivileges", "yes"),
    ("Service", "CapabilityBoundingSet", ""),
    ("Service", "ProtectSystem", "strict"),
    ("Service", "ProtectHome", "yes"),
    ("Service", "PrivateTmp", "yes"),
    ("Service", "PrivateDevices", "yes"),
    ("Service", "ProtectKernelTunables", "yes"),
    ("Service", "ProtectKernelModules", "yes"),
    ("Service", "ProtectKernelLogs", "yes"),
    ("Service", "ProtectControlGroups", "yes"),
    ("Service", "RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ("Service", "RestrictNamespaces", "yes"),
    ("Service", "RestrictRealtime", "yes"),
    ("Service", "LockPersonality", "yes"),
    ("Service", "MemoryDenyWriteExecute", "yes"),
    ("Service", "SystemCallArchitectures", "native"),
    ("Service", "SystemCallFilter", "@system-service"),
    ("Install", "WantedBy", "multi-user.target"),
]


def unit_keys(src):
    """[(section, key, value)] of a unit file, comments dropped."""
    out, sec = [], None
    for line in src.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        m = re.match(r"\[(\w+)\]$", line)
        if m:
            sec = m.group(1)
        elif "=" in line:
            k, v = line.split("=", 1)
            out.append((sec, k.strip(), v.strip()))
    return out


def test_unit_keys():
    keys = unit_keys(read(UNIT))
    for want in UNIT_KEYS:
        check("wsd.service %s %s=%s" % want, want in keys)


def test_install():
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    # Install the binary under test: B is its build directory.
    b = os.path.relpath(os.path.dirname(WSD), ROOT)
    args = ["make", "-s", "-C", ROOT]
    if os.path.basename(WSD) == "wsd" and b != "." and not b.startswith(".."):
        args.append("B=" + b)
    dest = tempfile.mkdtemp(prefix="wsd-install-")
    try:
        r = run(args + ["install", "DESTDIR=" + dest, "PREFIX=/usr"], env=env)
        check("make install", r.returncode == 0, r.stdout)
        binp = os.path.join(dest, "usr/bin/wsd")
        manp = os.path.join(dest, "usr/share/man/man8/wsd.8")
        unitp = os.path.join(dest, "usr/lib/systemd/system/wsd.service")
        check("installed usr/bin/wsd", os.access(binp, os.X_OK))
        v = run([binp, "--version"]) if os.access(binp, os.X_OK) else None
        check("installed wsd runs", v is not None and v.returncode == 0 and
              v.stdout.startswith("wsd "), v and v.stdout)
        check("installed usr/share/man/man8/wsd.8",
              os.path.isfile(manp) and read(manp) == read(MAN))
        unit = read(unitp) if os.path.isfile(unitp) else ""
        check("installed usr/lib/systemd/system/wsd.service", unit != "")
        check("installed unit starts /usr/bin/wsd",
              ("Service", "ExecStart", "/usr/bin/wsd") in unit_keys(unit),
              unit)
        check("installed unit is otherwise the same",
              unit == read(UNIT).replace("ExecStart=/usr/local/bin/wsd",
                                         "ExecStart=/usr/bin/wsd"))
        if unit:
            verify_unit(dest, unit)
        r = run(args + ["uninstall", "DESTDIR=" + dest, "PREFIX=/usr"],
                env=env)
        check("make uninstall", r.returncode == 0, r.stdout)
        left = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs]
        check("make uninstall removes all three", not left, str(left))
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def verify_unit(dest, unit):
    """systemd-analyze on the installed unit, ExecStart at the DESTDIR copy
    (verify checks that the program exists and the man page is found)."""
    sa = shutil.which("systemd-analyze")
    if not check("systemd-analyze installed", sa is not None,
                 "apt-get install systemd (or sudo test/deps.sh)"):
        return
    tmp = tempfile.mkdtemp(prefix="wsd-unit-")
    try:
        path = os.path.join(tmp, "wsd.service")
        with open(path, "w") as f:
            f.write(unit.replace("ExecStart=/usr/bin/wsd",
                                 "ExecStart=%s/usr/bin/wsd" % dest))
        env = dict(os.environ, MANPATH=os.path.join(dest, "usr/share/man"))
        man = [] if shutil.which("man") else ["--man=no"]
        r = run([sa, "verify"] + man + [path], env=env)
        check("systemd-analyze verify wsd.service", r.returncode == 0 and
              not r.stdout.strip(), r.stdout)
        # Exposure 0.0 (locked down) to 10.0; the unit scores about 1.4.
        r = run([sa, "security", "--offline=yes", "--threshold=20", path])
        m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
        check("systemd-analyze security: exposure at most 2.0",
              r.returncode == 0 and m is not None,
              m.group(0) if m else r.stdout[-500:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_license_changelog():
    lic = read(os.path.join(ROOT, "LICENSE"))
    check("LICENSE is ISC", lic.startswith("ISC License") and
          "Copyright (c) 2026 the wsd authors" in lic)
    log = read(os.path.join(ROOT, "CHANGELOG.md"))
    ver = run([WSD, "--version"]).stdout.split()[-1]
    check("CHANGELOG has Unreleased", "\n## [Unreleased]\n" in log)
    check("CHANGELOG has wsd %s" % ver,
          re.search(r"^## \[%s\] - \d{4}-\d\d-\d\d$" % re.escape(ver), log,
                    re.M), ver)


test_mandoc()
test_options()
test_readme()
test_unit_keys()
test_install()
test_license_changelog()
done()
