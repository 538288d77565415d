# Lists, dicts, sets and tuples built and dropped.
n = 0
for r in range(360):
    lst = [(i, i + r) for i in range(5000)]
    dct = {i: lst[i] for i in range(0, 5000, 2)}
    st = {t[1] for t in lst}
    n += len(lst) + len(dct) + len(st)
print(n)
