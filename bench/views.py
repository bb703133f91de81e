import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bench.models import CeilingHit


@csrf_exempt  # as DRF's APIView is: API clients send no CSRF token
@require_POST
def ceiling(request: HttpRequest) -> HttpResponse:
    """The ceiling: parse the same JSON body as a feedback, INSERT one row, answer.

    No authentication, validation or serialisation: what is left is gunicorn,
    Django's middleware and one committed INSERT through the ORM.
    """
    payload = json.loads(request.body)
    hit = CeilingHit.objects.create(
        event_id=str(payload.get("event_id", ""))[:24], created_at=timezone.now()
    )
    return JsonResponse({"id": hit.pk}, status=201)
