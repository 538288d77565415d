"""tracemalloc's view of a fixed workload, including allocations made by extension modules
(array's buffers, _json's decoder): prints traced totals per source line."""
import array
import json
import tracemalloc

tracemalloc.start()
arrays = [array.array("d", range(i % 64)) for i in range(20000)]  # line: arrays
docs = [json.loads('{"a": [1, 2, 3], "b": "%d", "c": {"d": null}}' % i) for i in range(20000)]  # line: json
texts = [json.dumps(d) for d in docs]  # line: dumps
snapshot = tracemalloc.take_snapshot()
tracemalloc.stop()
by_line = {}
for stat in snapshot.statistics("lineno"):
    frame = stat.traceback[0]
    if frame.filename == __file__:
        by_line[frame.lineno] = (stat.size, stat.count)
for lineno in sorted(by_line):
    size, count = by_line[lineno]
    print(lineno, size, count)
