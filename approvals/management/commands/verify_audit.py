from django.core.management.base import BaseCommand, CommandError

from approvals import audit
from approvals.models import AuditEntry
from core.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Check the approvals audit log's hash chain from its first entry. Exit 0 with the count when "
        "it is intact; exit 1 naming the first entry altered, removed or inserted."
    )

    def handle(self, **options):
        with progress_bar("Verifying", AuditEntry.objects.count()) as advance:
            result = audit.verify(advance)
        if result.problem:
            intact = f"({result.count} entries before it are intact.)"
            raise CommandError(f"The audit log was tampered with. {result.problem} {intact}")
        self.stdout.write(f"The audit log is intact: {result.count} entries.")
