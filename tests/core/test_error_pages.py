"""The 500 handler (core.views.server_error): JSON for the API and /health, Django's page elsewhere."""

from django.test import RequestFactory

from core.views import server_error


def test_a_server_error_in_the_api_is_a_json_body_without_details():
    response = server_error(RequestFactory().get("/api/v1/runs"))
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert response.content == (
        b'{"error": {"code": "server_error", "message": "Internal server error; the details are in the server log."}}'
    )


def test_a_server_error_on_a_page_is_djangos_html_page():
    response = server_error(RequestFactory().get("/live/"))
    assert response.status_code == 500 and response["Content-Type"].startswith("text/html")
    assert b"Server Error (500)" in response.content
