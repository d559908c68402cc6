"""The production settings plus one bare DRF view to measure the server setup itself against."""

from telemetry_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
