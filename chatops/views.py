from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from chatops import slack
from core.api import error_body


@csrf_exempt  # Slack's requests are checked by their signature instead
@require_POST
def slack_actions(request):
    """Slack's interactivity request URL: a button pressed on a message a Slack app channel posted."""
    try:
        slack.act(request.body, request.headers)
    except slack.Refused as refused:
        return JsonResponse(error_body(refused.code, refused.message), status=refused.status)
    return HttpResponse(status=200)  # the acknowledgement Slack waits for (3 s at most); replies go by a worker
