from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.models import AgentKey
from core.scopes import agent_default, known


class Command(BaseCommand):
    help = "Create an agent API key and print it once, alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the key's name; by default also the one agent id it acts as")
        parser.add_argument("--agents", nargs="+", metavar="GLOB", help="agent ids or glob patterns (default: NAME)")
        parser.add_argument(
            "--scope",
            dest="scopes",
            action="append",
            choices=list(known()),
            metavar="SCOPE",
            help=f"repeatable; default every agent scope ({', '.join(agent_default())})",
        )
        parser.add_argument("--expires", metavar="ISO_DATETIME", help="when the key stops working")

    def handle(self, name, agents, scopes, expires, **options):
        key = AgentKey(name=name, agents=agents or [name], scopes=scopes or agent_default())
        if expires:
            key.expiry_date = expires
        try:
            key.full_clean(exclude=["id", "prefix", "hashed_key"])
        except ValidationError as exc:
            raise CommandError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())) from None
        raw_key = AgentKey.objects.assign_key(key)
        key.save()
        self.stderr.write(f"Key '{name}' acts as {', '.join(key.agents)} with scopes {', '.join(key.scopes)}.")
        self.stderr.write("Store it now: it is shown only this once. Send it as 'Authorization: Api-Key <key>'.")
        self.stdout.write(raw_key)
