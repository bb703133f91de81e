"""The review queue's model: accepted returns seen as a queue of their own.

A proxy of Feedback, so that the queue has its own admin page and its own
permissions: seeing it (`view_returnreview`) and deciding returns
(`decide_returns`), which the read-only feedback pages do not grant.
"""

from feedback.models import Feedback


class ReturnReview(Feedback):
    class Meta:
        proxy = True
        verbose_name = "return to review"
        verbose_name_plural = "returns to review"
        default_permissions = ("view",)
        permissions = [("decide_returns", "Can approve and reject returns")]
