"""A story of reviewed returns for the returns resolution report, worked out by
hand in tests/reporting/test_returns_report.py.

Every return goes through the real intake (`feedback_receive`) and the real
review services at a chosen instant, so the steps, the credits and their dates
are the ones production writes. The story, in March 2025 (UTC):

| # | buyer | source | reason | price | received | review |
|---|---|---|---|---|---|---|
| 1 | Acme | Blue | Wrong number | 40 | 03-02 10:00 | approved 03-03 10:00 (40.00) |
| 2 | Acme | Blue | Duplicate | 40 | 03-02 10:00 | approved 03-05 10:00 (12.50) |
| 3 | Acme | Red | Wrong number | 40 | 03-04 00:00 | rejected 03-04 06:00 |
| 4 | Acme | Red | Duplicate | 40 | 03-06 09:00 | rejected 03-07 09:00, disputed |
| 5 | Zenith | Blue | Wrong number | 30 | 02-20 12:00 | approved 03-01 12:00 (30.00) |
| 6 | Zenith | Red | (none) | 30 | 03-10 08:00 | rejected 03-11 08:00, disputed, |
|   |        |     |        |    |             | approved 03-14 (10.00) |
| 7 | Zenith | Blue | Duplicate | 30 | 03-20 15:00 | pending |
| 8 | Zenith | Red | Wrong number | 30 | 02-10 00:00 | pending |
| 9 | Acme | Blue | Wrong number | 40 | 03-25 00:00 | approved 04-02 (April) |
| 10 | Autobuy | Blue | Wrong number | 20 | 03-15 00:00 | approved at intake, 50 % |
| 11 | Acme | Blue | Duplicate | 40 | 03-09 00:00 | approved 03-10, refused by |
|    |      |      |           |    |             | the source: credit voided |

Blue is the source Bluesky, Red is Redwood. The report is read on 2025-04-10 00:00.
"""

import datetime
from decimal import Decimal

import time_machine

from feedback.intake.parse import ReceiveStatus
from feedback.intake.pipeline import feedback_receive
from feedback.intake.store import feedback_refuse_by_source
from feedback.models import BuyerPolicy, Feedback
from feedback.returns.services import (
    return_approve,
    return_decide,
    return_dispute,
    return_reject,
)
from tests.factories import (
    BuyerFactory,
    BuyerPolicyFactory,
    DeliveryEventFactory,
    FlowFactory,
    SourceFactory,
    UserFactory,
)

UTC = datetime.UTC


def at(month: int, day: int, hour: int = 0) -> datetime.datetime:
    return datetime.datetime(2025, month, day, hour, tzinfo=UTC)


class Story:
    """The table in the module's docstring, written through the services."""

    def __init__(self) -> None:
        self.flow = FlowFactory(slug="main", name="Main")
        self.bluesky = SourceFactory(slug="bluesky", name="Bluesky")
        self.redwood = SourceFactory(slug="redwood", name="Redwood")
        self.acme = BuyerFactory(slug="acme", name="Acme")
        self.zenith = BuyerFactory(slug="zenith", name="Zenith")
        self.autobuy = BuyerFactory(slug="autobuy", name="Autobuy")
        for buyer in (self.acme, self.zenith):
            BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
        BuyerPolicyFactory(
            buyer=self.autobuy, review=BuyerPolicy.Review.AUTO, credit_percent=50
        )
        self.staff = UserFactory(username="reviewer", is_staff=True)
        self.returns: dict[int, Feedback] = {}

    def receive(
        self, number, buyer, source, reason, price, when: datetime.datetime
    ) -> Feedback:
        delivery = DeliveryEventFactory(
            buyer=buyer,
            lead__source=source,
            lead__flow=self.flow,
            price=Decimal(price),
            delivered_at=at(2, 1),
        )
        with time_machine.travel(when, tick=False):
            result = feedback_receive(
                buyer=buyer,
                data={
                    "event_id": delivery.event_id,
                    "type": "return",
                    "reason": reason,
                },
                channel=Feedback.Channel.API,
            )
        assert result.status == ReceiveStatus.ACCEPTED, result.errors
        self.returns[number] = result.feedback
        return result.feedback

    def step(self, when: datetime.datetime, service, number: int, **kwargs) -> None:
        with time_machine.travel(when, tick=False):
            service(feedback=self.returns[number], user=self.staff, **kwargs)
            self.returns[number].refresh_from_db()

    def write(self) -> "Story":
        acme, zenith = self.acme, self.zenith
        blue, red = self.bluesky, self.redwood
        self.receive(1, acme, blue, "Wrong number", "40.00", at(3, 2, 10))
        self.step(at(3, 3, 10), return_approve, 1)
        self.receive(2, acme, blue, "Duplicate", "40.00", at(3, 2, 10))
        self.step(at(3, 5, 10), return_approve, 2, credit_amount="12.50")
        self.receive(3, acme, red, "Wrong number", "40.00", at(3, 4))
        self.step(at(3, 4, 6), return_reject, 3, note="Contact made")
        self.receive(4, acme, red, "Duplicate", "40.00", at(3, 6, 9))
        self.step(at(3, 7, 9), return_reject, 4)
        self.step(at(3, 8), self._dispute, 4)
        self.receive(5, zenith, blue, "Wrong number", "30.00", at(2, 20, 12))
        self.step(at(3, 1, 12), return_approve, 5)
        self.receive(6, zenith, red, "", "30.00", at(3, 10, 8))
        self.step(at(3, 11, 8), return_reject, 6)
        self.step(at(3, 12), self._dispute, 6)
        self.step(
            at(3, 14), return_decide, 6, decision="approve", credit_amount="10.00"
        )
        self.receive(7, zenith, blue, "Duplicate", "30.00", at(3, 20, 15))
        self.receive(8, zenith, red, "Wrong number", "30.00", at(2, 10))
        self.receive(9, acme, blue, "Wrong number", "40.00", at(3, 25))
        self.step(at(4, 2), return_approve, 9)
        self.receive(10, self.autobuy, blue, "Wrong number", "20.00", at(3, 15))
        self.receive(11, acme, blue, "Duplicate", "40.00", at(3, 9))
        self.step(at(3, 10), return_approve, 11)
        with time_machine.travel(at(3, 10, 1), tick=False):
            feedback_refuse_by_source(
                feedback=self.returns[11], reason="Source says not returnable"
            )
        return self

    @staticmethod
    def _dispute(*, feedback, user, **kwargs):
        return return_dispute(feedback=feedback, comment="We never reached them")
