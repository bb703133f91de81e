"""Correcting feedback in the portal (DESIGN §12): the buyer retracts its own
feedback, or amends a conversion's revenue, within its policy's
`retract_hours`, from the lead's page."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from feedback.corrections.services import (
    CorrectionInvalid,
    CorrectionRefused,
    correction_deadline,
    correction_refusal,
    feedback_amend,
    feedback_retract,
)
from feedback.models import Feedback, FeedbackCorrection
from feedback.portal.context import PortalRequest, buyer_required

Action = FeedbackCorrection.Action


@dataclass(frozen=True)
class Correctable:
    """What the buyer may still correct of one feedback, and until when."""

    retract: bool
    amend: bool
    until: datetime | None
    # The message tag of what the last correction said, shown at the feedback.
    tag: str


def correctable(feedback: Feedback, *, hours: int) -> Correctable:
    """The corrections the buyer may make to `feedback` now, given its
    policy's window (`correction_hours_of`)."""
    retract = not correction_refusal(
        feedback, action=Action.RETRACT, staff=False, hours=hours
    )
    amend = not correction_refusal(
        feedback, action=Action.AMEND, staff=False, hours=hours
    )
    until = correction_deadline(feedback, hours=hours) if retract or amend else None
    return Correctable(retract=retract, amend=amend, until=until, tag=_tag(feedback))


def _tag(feedback: Feedback) -> str:
    return f"correction-{feedback.public_id}"


def _feedback_for_buyer(portal: PortalRequest, public_id: uuid.UUID) -> Feedback:
    found = (
        Feedback.objects.select_related("delivery")
        .filter(buyer=portal.buyer, public_id=public_id)
        .first()
    )
    if found is None:
        raise Http404("No such feedback.")
    return found


@require_POST
@buyer_required
def feedback_correct(
    request: HttpRequest, public_id: uuid.UUID, action: str
) -> HttpResponse:
    """Retract a feedback or amend its revenue, then back to the lead's page
    with what happened (or why not) said at the feedback."""
    portal: PortalRequest = request  # type: ignore[assignment]
    if action not in Action.values:
        raise Http404("No such correction.")
    feedback = _feedback_for_buyer(portal, public_id)
    tag = f"inline {_tag(feedback)}"
    try:
        if action == Action.RETRACT:
            feedback_retract(
                feedback=feedback,
                reason=request.POST.get("reason", ""),
                user=portal.user,
                channel=Feedback.Channel.PORTAL,
            )
            messages.success(request, "Feedback retracted.", extra_tags=tag)
        else:
            correction = feedback_amend(
                feedback=feedback,
                revenue=request.POST.get("revenue", ""),
                reason=request.POST.get("reason", ""),
                user=portal.user,
                channel=Feedback.Channel.PORTAL,
            )
            messages.success(
                request, f"Revenue amended to {correction.revenue}.", extra_tags=tag
            )
    except CorrectionInvalid as exc:
        label = "Revenue" if exc.field == "revenue" else "Reason"
        messages.error(request, f"{label}: {exc.message}", extra_tags=tag)
    except CorrectionRefused as exc:
        messages.error(request, exc.message, extra_tags=tag)
    return redirect("portal:delivery-detail", event_id=feedback.delivery.event_id)
