"""A WSGI service for benches/web_services.py: GET / returns a 300-item JSON document
(web_payload.py). Served by gunicorn: `gunicorn --threads 32 flask_app:app`."""
import itertools

from flask import Flask, jsonify

from web_payload import items

app = Flask(__name__)
counter = itertools.count()


@app.get("/")
def index():
    return jsonify(items(next(counter)))
