# Float-heavy arithmetic creating many float objects (nbody-like).
import math

bodies = [[float(i), float(i) * 0.5, float(-i), 0.01 * i, 0.02, 0.03] for i in range(1, 6)]
e = 0.0
for step in range(80000):
    for i, a in enumerate(bodies):
        for b in bodies[i + 1:]:
            dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
            d = math.sqrt(dx * dx + dy * dy + dz * dz) + 0.01
            a[3] -= dx / d * 0.001
            b[3] += dx / d * 0.001
    for a in bodies:
        a[0] += a[3] * 0.01
    e += bodies[0][0]
print(round(e, 3))
