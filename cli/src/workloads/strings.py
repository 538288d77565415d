# String building: formatting, joins, splits.
n = 0
for r in range(280):
    parts = ["item-%d-%s" % (i, "x" * (i % 17)) for i in range(5000)]
    text = ",".join(parts)
    n += len(text.split(",")) + len(text.upper())
print(n)
