"""`manage.py ensure_admin`, which `make run` calls on every start."""

import re
import subprocess
import sys

import pytest

from tests.conftest import database_url
from tests.services import ROOT, production_env

pytestmark = pytest.mark.django_db(transaction=True)


def ensure_admin(env: dict) -> str:
    done = subprocess.run([sys.executable, "manage.py", "ensure_admin"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_first_start_creates_one_admin_and_later_starts_leave_it(django_user_model):
    env = production_env(DATABASE_URL=database_url())
    first = ensure_admin(env)
    password = re.search(r"as 'admin' with password (\S+)", first).group(1)
    admin = django_user_model.objects.get()
    assert (admin.username, admin.is_superuser, admin.is_staff) == ("admin", True, True)
    assert admin.check_password(password)

    again = ensure_admin(env)
    assert "/admin/" in again and password not in again
    assert list(django_user_model.objects.values_list("username", flat=True)) == ["admin"]
    admin.refresh_from_db()
    assert admin.check_password(password)  # not reset


def test_an_existing_superuser_of_another_name_is_enough(django_user_model):
    django_user_model.objects.create_superuser("ops", password="x")
    output = ensure_admin(production_env(DATABASE_URL=database_url()))
    assert "First start" not in output
    assert list(django_user_model.objects.values_list("username", flat=True)) == ["ops"]
