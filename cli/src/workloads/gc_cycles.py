# Cyclic garbage collected by the cycle collector.
import gc


class Node:
    def __init__(self):
        self.peer = None
        self.items = []


n = 0
for _ in range(120):
    nodes = [Node() for _ in range(5000)]
    for a, b in zip(nodes, nodes[1:]):
        a.peer, b.items = b, [a]
    del nodes
    n += gc.collect()
print(n > 0)
