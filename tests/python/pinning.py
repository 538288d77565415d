"""pymalloc_rs.pinning() on a scenario with two known pinning sites (run with
``-X tracemalloc`` on pymalloc-rs, the package on PYTHONPATH): site A leaves 1 bytes
object in 100 (48-byte blocks, 85 a pool), site B 1 in 10 (64-byte blocks, 64 a pool).
Both leave their pools sparse; A strands more. (bytes: no free list hands them out, so
every object's traceback is its own allocation's.) Checks the ranking, each site's
objects, live bytes and pools against what the script knows of its own objects, and
that the groups' shares add up to the stranded bytes the statistics count."""

import gc
import sys

import pymalloc_rs


def site_a(n):
    return [b"%010d" % i for i in range(n)]


def site_b(n):
    return [b"%030d" % i for i in range(n)]


LINE_A = site_a.__code__.co_firstlineno + 1
LINE_B = site_b.__code__.co_firstlineno + 1

# Pools the classes held before: the sites fill their free blocks first, so those pools
# may stay dense.
before = {c["size"]: c["pools"] for c in pymalloc_rs.stats()["classes"]}
a = site_a(100000)
b = site_b(40000)
kept_a = a[::100]
kept_b = b[::10]
del a, b
gc.collect()

p = pymalloc_rs.pinning(top=None)
ends = ("pinning.py:%d" % LINE_A, "pinning.py:%d" % LINE_B)
sites = [g for g in p.by_site if g.name.endswith(ends)]
assert [g.name for g in p.by_site[:2]] == [g.name for g in sites], (p.by_site[:3], sites)
ga, gb = sites
assert ga.name.endswith("pinning.py:%d" % LINE_A) and gb.name.endswith("pinning.py:%d" % LINE_B)
for g, kept, size, per_pool in ((ga, kept_a, 48, 85), (gb, kept_b, 64, 64)):
    pages = set(id(o) // 4096 for o in kept)
    assert g.objects == len(kept), (g, len(kept))
    assert g.live_bytes == size * len(kept), g
    assert len(pages) - before[size] <= g.pools <= len(pages), (g, len(pages), before[size])
    assert g.pool_bytes == 4096 * g.pools, g
    # Each sparse pool strands at least what half of its blocks leave, none more than
    # its page.
    assert g.pools * (4096 - size * per_pool // 2) < g.stranded_bytes <= 4096 * len(pages), g
assert ga.stranded_bytes > gb.stranded_bytes

# The shares (by type, and the blocks of no object seen) add up to the stranded bytes of
# the pools in use, up to rounding.
in_use = sum(c["bytes_stranded"] for c in p.stats["classes"])
shares = sum(g.stranded_bytes for g in p.by_type) + p.unseen.stranded_bytes
assert abs(shares - in_use) <= len(p.by_type) + 1, (shares, in_use)
kind = [g for g in p.by_type if g.name == "bytes"][0]
assert kind.objects >= len(kept_a) + len(kept_b) and kind.pools >= ga.pools + gb.pools, kind

text = str(p)
assert "by allocation site (tracemalloc):" in text and ga.name in text, text
# The first occupancy bin's pools each hold a live block: "<10%", not "0%" (read as empty).
assert "pools by blocks in use: <10%: " in text, text
r = repr(p)
assert r.startswith("<Pinning: ") and "stranded in pools in use" in r and " at 0x" not in r, r
assert p.in_pools >= len(kept_a) + len(kept_b) and p.in_pools <= p.objects
print("pinning ok: %s stranded %d, %s stranded %d, %d objects in %.2f s"
      % (ga.name, ga.stranded_bytes, gb.name, gb.stranded_bytes, p.objects, p.seconds))
