"""Bad input against one real server: schemathesis over every operation of the OpenAPI schema, then
by hand. Each is refused with a 4xx and the API's error body (`{"error": {"code", "message",
"fields"?}}`), the server keeps serving, and what was stored before reads the same."""
