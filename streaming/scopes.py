SCOPES = {
    "streams:read": "read the event streams and the live feed",
    "streams:write": "publish to the event streams",
    "streams:admin": "trim and delete event streams",
}
ADMINISTRATIVE = {"streams:admin"}
