# Generators and closures: short-lived frames and cells.
def gen(n):
    for i in range(n):
        yield (i, lambda x=i: x + 1)


n = 0
for _ in range(240):
    n += sum(f() for _, f in gen(10000))
print(n)
