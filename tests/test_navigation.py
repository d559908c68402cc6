"""The front page and the staff pages' links in the header of every admin page: each link shown
only to whom its page would not refuse, the page one is on marked."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission

from telemetry_site.navigation import PAGES
from tests.conftest import make_operator, make_reviewer

pytestmark = pytest.mark.django_db


def header_links(html: str) -> dict[str, str]:
    """label -> href of the links in the header's staff-pages navigation ("*" after the current one's label)."""
    nav = re.search(r'<nav id="staff-pages".*?</nav>', html, re.S)
    links = re.findall(r'<a href="([^"]+)"( aria-current="page")?>([^<]+)</a>', nav.group(0)) if nav else []
    return {label + ("*" if current else ""): href for href, current, label in links}


def test_the_front_page_is_the_admin(client):
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/admin/")


@pytest.mark.parametrize(
    "who, permissions",
    [
        ("reviewer", None),  # approvals only: none of the pages
        ("feed watcher", ["view_eventstream"]),
        ("trace reader", ["view_span"]),
        ("operator", "all views"),
    ],
)
def test_the_header_links_the_staff_pages_each_to_whom_may_open_it(client, django_user_model, who, permissions):
    if permissions == "all views":
        user = make_operator(django_user_model, "operator")
    else:
        user = make_reviewer("reviewer")
        user.user_permissions.add(*Permission.objects.filter(codename__in=permissions or []))
    client.force_login(user)
    index = client.get("/admin/")
    assert index.status_code == 200 and "View site" not in index.content.decode()
    linked = header_links(index.content.decode())
    for label, name, _ in PAGES:
        url = f"/{name}/"
        opened = client.get(url).status_code
        assert opened in (200, 403), (who, url, opened)
        assert (linked.get(label) == url) == (opened == 200), (who, label, linked)
    assert bool(linked) == (who != "reviewer")


def test_the_header_marks_the_page_one_is_on(client, django_user_model):
    client.force_login(make_operator(django_user_model, "operator"))
    on_live, on_traces = (header_links(client.get(url).content.decode()) for url in ("/live/", "/traces/"))
    assert on_live == {"Live*": "/live/", "Analytics": "/analytics/", "Traces": "/traces/"}
    assert on_traces == {"Live": "/live/", "Analytics": "/analytics/", "Traces*": "/traces/"}


def test_the_login_page_links_nothing(client):
    assert header_links(client.get("/admin/login/").content.decode()) == {}
