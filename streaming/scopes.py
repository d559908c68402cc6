SCOPES = {
    "streams:read": "read the event streams and the live feed",
    "streams:write": "publish to the event streams",
    "streams:admin": "trim and delete event streams",
}
ADMINISTRATIVE = {"streams:admin"}
PERMISSIONS = {
    "streams:read": ("streaming.view_eventstream",),
    "streams:write": ("streaming.add_eventstream",),
    "streams:admin": ("streaming.trim_eventstream",),
}
