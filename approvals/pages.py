"""The page a notification links to: it checks the link and opens the request in the admin."""

from django.core import signing
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_GET

from approvals import services
from approvals.models import ApprovalRequest
from core.views import staff_only


@require_GET
@staff_only("approvals.view_approvalrequest")
def open_link(request, token: str):
    """Login first (the link alone grants nothing); then the link is used up and redirects to the
    decision page, where deciding still needs the approve permission and a POST."""
    try:
        found = services.open_link(token)
    except signing.SignatureExpired:
        return HttpResponse("This link has expired. Find the request in the admin.", status=410, content_type="text/plain")
    except (signing.BadSignature, ApprovalRequest.DoesNotExist):
        return HttpResponse("This link is not valid.", status=404, content_type="text/plain")
    except services.LinkUsed:
        return HttpResponse("This link was used already. Find the request in the admin.", status=410, content_type="text/plain")
    return HttpResponseRedirect(reverse("admin:approvals_approvalrequest_change", args=[found.pk]))
