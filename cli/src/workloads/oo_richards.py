# OO scheduling in the style of pyperformance's richards: many small objects, attribute access.
class Task:
    __slots__ = ("ident", "prio", "count", "next", "state")

    def __init__(self, ident, prio, nxt):
        self.ident, self.prio, self.count, self.next, self.state = ident, prio, 0, nxt, [ident]


def run(rounds):
    total = 0
    for r in range(rounds):
        head = None
        for i in range(200):
            head = Task(i, (i * 7 + r) % 13, head)
        t = head
        while t is not None:
            t.count += t.prio
            t.state.append(t.count)
            total += len(t.state)
            t = t.next
    return total


print(run(7000))
