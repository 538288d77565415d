# A dict whose entries are replaced constantly: random-lifetime objects.
import random

random.seed(1)
d = {}
for i in range(600000):
    k = random.randrange(20000)
    d[k] = (k, str(k), [k])
print(len(d))
