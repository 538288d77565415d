"""The response of the web service benches (flask_app.py, aiohttp_app.py): 300 small dicts,
built afresh for every request, as a view builds its reply from a query's rows."""


def items(request):
    return [{"id": i, "request": request, "name": "item-%d" % i, "price": i * 1.25,
             "tags": ["a", "b", str(i)]} for i in range(300)]
