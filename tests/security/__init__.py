"""Security: who may do what on every URL, keys never kept or logged in plain text, revocation at
once on every server, the websocket's authentication and Origin check, and CSRF on the admin's
actions. (`manage.py check --deploy`: tests/test_server.py::test_check_deploy_passes_with_production_settings.)"""
