import hashlib
import json

from django.db import connection
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


# The check's statement, written by hand: the entries' unique index on sha256.
SUPPRESSION_CEILING_SQL = (
    "SELECT list_id, field, sha256, added_at FROM feedback_suppressionentry "
    "WHERE sha256 = ANY(%s) AND (expires_at IS NULL OR expires_at > now())"
)


@csrf_exempt
@require_POST
def suppression_ceiling(request: HttpRequest) -> HttpResponse:
    """The ceiling of the suppression check (bench/suppression.py): parse the
    same body, normalise and hash the email and phone, run the one SELECT, answer.

    No authentication, validation, rate limit or serialisation: what is left
    is gunicorn, Django's middleware and the lookup itself.
    """
    payload = json.loads(request.body)
    wanted = {}
    email = str(payload.get("email") or "").strip().lower()
    if email:
        wanted[("email", hashlib.sha256(email.encode()).hexdigest())] = True
    phone = "".join(c for c in str(payload.get("phone") or "") if c.isdigit())
    if len(phone) == 11 and phone.startswith("1"):
        phone = phone[1:]
    if phone:
        wanted[("phone", hashlib.sha256(phone.encode()).hexdigest())] = True
    with connection.cursor() as cursor:
        cursor.execute(SUPPRESSION_CEILING_SQL, [[sha for _, sha in wanted]])
        rows = cursor.fetchall()
    hits = [
        {"list": list_id, "field": field, "added_at": added_at.isoformat()}
        for list_id, field, sha256, added_at in rows
        if (field, sha256) in wanted
    ]
    return JsonResponse({"suppressed": bool(hits), "hits": hits})
