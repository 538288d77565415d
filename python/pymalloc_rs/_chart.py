"""``--report-svg``: the report drawn as SVG by the ``pymalloc`` command (``pymalloc
chart``, the drawing code ``pymalloc compare --svg`` uses): the pools of each size class
by occupancy, and the top groups by stranded bytes."""

import os
import shutil
import subprocess
import sys
import sysconfig

#: Occupancy tenths merged into the chart's series: (name, first tenth, last tenth).
BANDS = (("<20 %", 0, 1), ("20-49 %", 2, 4), ("50-79 %", 5, 7), ("80-100 %", 8, 9))

#: Groups drawn.
TOP = 12


def _command():
    """The ``pymalloc`` command installed with this package (the environment's scripts,
    then beside the interpreter, then ``PATH``); raises ``RuntimeError`` without one."""
    places = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    for d in places + [None]:
        found = shutil.which("pymalloc", path=d)
        if found:
            return found
    raise RuntimeError(
        "the pymalloc command (installed with the package by pip) is not found: "
        "not in %s nor on PATH" % " or ".join(p for p in places if p)
    )


def _label(name):
    """A group's label, short: a site's file without its directory."""
    if name.startswith("/") and ":" in name:
        return os.path.basename(name)
    return name


def describe(p):
    """The text ``pymalloc chart`` reads, for a :class:`~pymalloc_rs.Pinning`."""
    lines = ["chart\tPools by share of their blocks in use, per size class (pools)"]
    lines.append("series\t" + "\t".join(name for name, _, _ in BANDS))
    for c in p.stats["classes"]:
        if c["pools"]:
            counts = [sum(c["occupancy"][a : b + 1]) for _, a, b in BANDS]
            lines.append("row\t%d B\t%s" % (c["size"], "\t".join(map(str, counts))))
    groups = p.by_site if p.by_site is not None else p.by_type
    kind = "allocation site" if p.by_site is not None else "type"
    lines.append("chart\tWhat keeps pools resident, by %s (MiB)" % kind)
    lines.append("series\tstranded\tlive")
    for g in groups[:TOP]:
        label = _label(g.name).replace("\t", " ")
        lines.append(
            "row\t%s\t%.3f\t%.3f" % (label, g.stranded_bytes / 2.0**20, g.live_bytes / 2.0**20)
        )
    return "\n".join(lines) + "\n"


def write_svg(p, path):
    """Writes the chart of ``p`` into ``path``; raises ``RuntimeError`` when the
    ``pymalloc`` command is missing or fails."""
    out = subprocess.run(
        [_command(), "chart", "--output", path],
        input=describe(p).encode(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.decode(errors="replace").strip())
