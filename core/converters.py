"""The path converter of the ids in the API's URLs (`<id:event_id>`): Django's `str` without NUL.
PostgreSQL cannot compare text holding NUL (the lookup fails: a 500); a path with one names
nothing, so it is a 404, on every database. Registered by core.apps."""


class IdConverter:
    regex = "[^/\x00]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
