# json dumps and loads of nested documents.
import json

doc = {"users": [{"id": i, "name": "user%d" % i, "tags": ["a", "b", str(i)], "score": i * 0.5} for i in range(2000)]}
n = 0
for _ in range(100):
    s = json.dumps(doc)
    n += len(json.loads(s)["users"])
print(n)
