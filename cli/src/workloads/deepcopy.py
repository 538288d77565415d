# copy.deepcopy of a nested structure of dicts, lists and tuples.
import copy

data = {"k%d" % i: [i, (i, str(i)), {"x": [i] * 3}] for i in range(3000)}
n = 0
for _ in range(36):
    n += len(copy.deepcopy(data))
print(n)
