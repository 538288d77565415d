# Unicode text processing: encode, decode, normalise, count.
import unicodedata

text = "".join(chr(0x41 + i % 26) + chr(0xE9) + chr(0x3B1 + i % 20) for i in range(20000))
n = 0
for _ in range(200):
    n += len(unicodedata.normalize("NFD", text).encode("utf-8").decode("utf-8").lower().split("a"))
print(n)
