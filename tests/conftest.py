"""Personas and helpers shared by every app's tests: staff, agents with keys, strangers."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from core.models import AgentKey
from core.redis import get_redis
from core.scopes import AGENT_SCOPES


@pytest.fixture(autouse=True)
def clean_redis():
    get_redis().flushdb()


def make_key(name: str, agents: list[str] | None = None, scopes: list[str] | None = None, **fields) -> tuple[AgentKey, str]:
    key = AgentKey(name=name, agents=agents or [name], scopes=list(AGENT_SCOPES) if scopes is None else scopes, **fields)
    raw = AgentKey.objects.assign_key(key)
    key.save()
    return key, raw


def key_client(raw_key: str, scheme: str = "Api-Key") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {raw_key}")
    return client


@pytest.fixture
def agent(db) -> APIClient:
    """An API client acting as agent 'alpha' with every agent scope."""
    return key_client(make_key("alpha")[1])


@pytest.fixture
def other_agent(db) -> APIClient:
    """An API client acting as agent 'beta'."""
    return key_client(make_key("beta")[1])


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def staff(db, django_user_model) -> APIClient:
    user = django_user_model.objects.create_user("reviewer", password="x", is_staff=True)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client
