"""The quality app's admin: prices edited, usage and feedback looked at but not edited."""

import pytest

from quality import services as quality
from quality.models import LlmUsage

pytestmark = pytest.mark.django_db


def test_operators_edit_prices_and_look_at_usage_and_feedback_without_editing_it(admin_client, sonnet_price):
    call = {"event_id": "u1", "agent_name": "alpha", "model": "claude-sonnet-4", "input_tokens": 7}
    quality.ingest_usage([call], lambda _: True)
    for page in ("modelprice", "llmusage", "feedbackentry", "templatefeedback"):
        assert admin_client.get(f"/admin/quality/{page}/").status_code == 200, page
    assert "claude-sonnet-4" in admin_client.get("/admin/quality/llmusage/").content.decode()
    usage = LlmUsage.objects.get()
    detail = admin_client.get(f"/admin/quality/llmusage/{usage.pk}/change/").content.decode()
    assert 'name="input_tokens"' not in detail  # read-only
    assert admin_client.get("/admin/quality/llmusage/add/").status_code == 403
    form = {"model": "claude-sonnet-4", "provider": "anthropic", "tier": "capable", "input_per_mtok": "2.5",
            "output_per_mtok": "15", "cache_read_per_mtok": "0.3", "cache_write_per_mtok": "3.75"}  # fmt: skip
    assert admin_client.post(f"/admin/quality/modelprice/{sonnet_price.pk}/change/", form).status_code == 302
    sonnet_price.refresh_from_db()
    assert str(sonnet_price.input_per_mtok) == "2.500000"
