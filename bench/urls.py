from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry_site.urls import handler404, handler500, urlpatterns  # noqa: F401


class Bare(APIView):
    """A bare DRF view: no authentication, no permission, no database. Under /api/ so that the
    bench's requests, which carry an agent key, take the same way through the server as the API's."""

    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request):
        return Response({"ok": True, "echo": len(request.data)})


@csrf_exempt
async def bare_async(request):
    """A bare async Django view: no DRF, no authentication, no database."""
    return JsonResponse({"ok": True, "echo": len(request.body)})


urlpatterns = [path("api/bench/bare", Bare.as_view()), path("api/bench/bare-async", bare_async), *urlpatterns]
