"""Every report by its code, in the order the reports page lists them."""

from reporting.reports.base import Report
from reporting.reports.breakdowns import (
    BuyerBreakdownReport,
    FlowBreakdownReport,
    KindBreakdownReport,
    ScorecardReport,
    SourceBreakdownReport,
    TrendReport,
)
from reporting.reports.operations import BillingReport, DeliveryHealthReport
from reporting.reports.reasons import ReasonBreakdownReport, ReturnsMatrixReport
from reporting.reports.returns import ReturnsResolutionReport
from reporting.reports.time_to_feedback import (
    BuyerTimeToFeedbackReport,
    SourceTimeToFeedbackReport,
)

REPORTS: dict[str, type[Report]] = {
    report.code: report
    for report in (
        TrendReport,
        ReasonBreakdownReport,
        SourceBreakdownReport,
        FlowBreakdownReport,
        BuyerBreakdownReport,
        KindBreakdownReport,
        SourceTimeToFeedbackReport,
        BuyerTimeToFeedbackReport,
        ScorecardReport,
        ReturnsMatrixReport,
        ReturnsResolutionReport,
        DeliveryHealthReport,
        BillingReport,
    )
}
