"""The staff pages beside the admin's models (/live/, /analytics/, /traces/), linked in the header
of every admin page: each link only for whom its page would not refuse."""

from __future__ import annotations

from django.urls import reverse

from quality.pages import PERMISSIONS as ANALYTICS
from streaming.views import LIVE_PERMISSIONS as LIVE
from traces.pages import PERMISSIONS as TRACES

PAGES = (("Live", "live", LIVE), ("Analytics", "analytics", ANALYTICS), ("Traces", "traces", TRACES))


def staff_pages(request) -> dict:
    """Context processor: `staff_pages`, the PAGES the request's staff user may open, the one it
    is on marked current."""
    user = getattr(request, "user", None)
    if user is None or not (user.is_active and user.is_staff):
        return {}
    links = [(label, reverse(name)) for label, name, needed in PAGES if user.has_perms(needed)]
    return {"staff_pages": [{"label": label, "url": url, "current": request.path == url} for label, url in links]}
