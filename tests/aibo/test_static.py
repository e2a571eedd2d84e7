"""Static files: the favicon every browser asks for, and in the embedded default (DEBUG off,
files collected) hashed names served with a year's caching, so a page's CSS and scripts are
fetched once per release, not on every page."""

from __future__ import annotations

import json
import re

import pytest

from tests.aibo.test_settings import _django

pytestmark = pytest.mark.django_db


def test_favicon_ico_answers_with_the_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"].startswith("/static/favicon")
    assert response["Location"].endswith(".ico")
    # Not permanent: a new icon reaches browsers within a day.
    assert "max-age=86400" in response["Cache-Control"]


def test_every_page_names_its_icon(client, user):
    for page in ("/accounts/login/", "/"):
        if page == "/":
            client.force_login(user)
        html = client.get(page).text
        assert re.search(r'<link rel="icon" href="/static/favicon[^"]*\.svg"', html), page
        assert re.search(r'<link rel="icon" href="/static/favicon[^"]*\.png"', html), page


HEADERS = """
import json, re
from django.core.management import call_command
from django.test import Client
call_command("collectstatic", interactive=False, verbosity=0)  # what `make run` does first
client = Client(headers={"host": "localhost"})
page = client.get("/accounts/login/")
served = {}
for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text) + ["/favicon.ico"]:
    response = client.get(url)
    served[url] = [response.status_code, response.get("Cache-Control"), response.get("Location")]
unhashed = client.get("/static/css/aibo.css")
served["unhashed"] = [unhashed.status_code, unhashed.get("Cache-Control"), None]
print(json.dumps(served))
"""


def test_static_files_are_hashed_and_cached_for_a_year_in_the_embedded_default(tmp_path):
    result = _django(HEADERS, AIBO_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout.strip().splitlines()[-1])
    unhashed = served.pop("unhashed")
    favicon = served.pop("/favicon.ico")
    assert any("/css/aibo." in url for url in served), served
    for url, (status, cache, _) in served.items():
        # A content hash in the name: the file at this URL never changes.
        assert re.search(r"\.[0-9a-f]{12}\.(css|js|svg|png)$", url), url
        assert status == 200, (url, status)
        max_age = int(re.search(r"max-age=(\d+)", cache).group(1))
        assert max_age >= 365 * 24 * 3600, (url, cache)
        assert "immutable" in cache, (url, cache)
    # The unhashed name still answers, but may change with a release: cached briefly only.
    assert unhashed[0] == 200
    assert int(re.search(r"max-age=(\d+)", unhashed[1]).group(1)) < 3600, unhashed
    # /favicon.ico leads to the hashed icon.
    assert favicon[0] == 302 and re.search(r"/static/favicon\.[0-9a-f]{12}\.ico$", favicon[2])
