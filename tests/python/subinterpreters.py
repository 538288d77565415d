"""Interpreters with a GIL of their own (3.12+) allocate at the same time as the main
interpreter's threads: each runs a JSON round-trip loop in its own thread while main
interpreter threads do the same, then the allocator's invariant walker (`pymalloc_check`)
runs. Prints "ok" (and on 3.8-3.11, which have one GIL, only "ok")."""
import ctypes
import json
import sys
import threading

LOOP = "for n in range(400):\n    d = [{'a': i, 'b': str(i) * 3} for i in range(100)]\n    json.loads(json.dumps(d))\n"

if sys.version_info >= (3, 13):
    import _interpreters as interpreters

    def create():
        return interpreters.create()

    def run(i, code):
        interpreters.exec(i, code)

elif sys.version_info >= (3, 12):
    import _xxsubinterpreters as interpreters

    def create():
        return interpreters.create(isolated=True)

    def run(i, code):
        interpreters.run_string(i, code)

else:
    print("ok")
    sys.exit(0)


def main_work():
    exec("import json\n" + LOOP)


subs = [create() for _ in range(3)]
threads = [threading.Thread(target=run, args=(i, "import json\n" + LOOP)) for i in subs]
threads += [threading.Thread(target=main_work) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
main_work()
for i in subs:
    interpreters.destroy(i)
check = ctypes.CDLL(None).pymalloc_check
if check() != 0:
    sys.exit("pymalloc_check failed")
print("ok")
