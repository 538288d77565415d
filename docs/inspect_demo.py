"""The service behind docs/inspect-watch.svg (README, "Inspect a running service"): a
steady cache, a traffic burst at 3 s that builds 600,000 small objects, 90 % of them
dropped at 5 s (the rest stays: a sparse heap), the rest dropped at 10 s; small requests
all along. Run it preloaded and watch it from outside:

    LD_PRELOAD=target/release/libpymalloc.so python3.11 docs/inspect_demo.py &
    target/release/pymalloc inspect $! --watch 14 --every 0.25 --svg docs/inspect-watch.svg
"""
import time

start = time.monotonic()
cache = {i: str(i) for i in range(50_000)}
burst = []
phase = 0
while time.monotonic() - start < 15:
    t = time.monotonic() - start
    if phase == 0 and t > 3:
        burst = [(i, float(i), str(i) * 2) for i in range(600_000)]
        phase = 1
    elif phase == 1 and t > 5:
        burst = burst[::10]
        phase = 2
    elif phase == 2 and t > 10:
        burst = []
        phase = 3
    request = [{"id": i, "v": [i] * 3} for i in range(200)]
    del request
    time.sleep(0.02)
