"""The ASGI application: HTTP through Django; websockets join in the Streaming issue."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")

application = get_asgi_application()
