"""An asyncio service for benches/web_services.py: GET / returns a 300-item JSON document
(web_payload.py), from aiohttp's own server.

    python aiohttp_app.py PORT"""
import itertools
import sys

from aiohttp import web

from web_payload import items

counter = itertools.count()


async def index(request):
    return web.json_response(items(next(counter)))


app = web.Application()
app.router.add_get("/", index)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
