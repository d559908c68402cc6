import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "On the first start, create an 'admin' superuser with a random password and say how to log in."

    def handle(self, **options):
        users = get_user_model()
        url = f"http://127.0.0.1:{settings.PORT}/admin/"
        if users.objects.filter(is_superuser=True).exists():
            self.stdout.write(f"Admin: {url} (reset a password with: python manage.py changepassword <username>)")
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"\nFirst start: log in to {url} as 'admin' with password {password}\n"
                "(shown only now; change it with: .venv/bin/python manage.py changepassword admin)\n"
            )
        )
