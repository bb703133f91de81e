"""Report generators: each turns a filter into a table for HTML and CSV.

In the spirit of django-oscar's dashboard reports: one class per report, a
`generate()` that returns columns and rows, and no knowledge of HTML or CSV. Every
generator runs a fixed number of GROUP BY queries, whatever the number of groups:
labels are fetched in one query per dimension, never per row. docs/reports.md
defines every figure."""

from reporting.reports.base import (
    CHART_BARS,
    FAILURE,
    KIND_LABELS,
    SUCCESS,
    Column,
    EpochSeconds,
    PercentileCont,
    Report,
    ReportTable,
    Section,
    as_dicts,
    csv_label,
    csv_value,
    is_postgresql,
    labels_for,
    month_of,
    percentile,
    rate,
)
from reporting.reports.breakdowns import (
    BREAKDOWN_COLUMNS,
    DIMENSIONS,
    SCORE_CONVERSION_TARGET,
    SCORE_RETURN_CEILING,
    SCORE_WEIGHTS,
    Breakdown,
    BreakdownReport,
    BuyerBreakdownReport,
    Dimension,
    FlowBreakdownReport,
    KindBreakdownReport,
    ReasonBreakdownReport,
    ScorecardReport,
    SourceBreakdownReport,
    TrendReport,
    breakdown_rows,
    finish_row,
    rollup_usable,
    source_score,
)
from reporting.reports.operations import BillingReport, DeliveryHealthReport
from reporting.reports.registry import REPORTS
from reporting.reports.returns import ReturnsResolutionReport
from reporting.reports.time_to_feedback import (
    BuyerTimeToFeedbackReport,
    SourceTimeToFeedbackReport,
    TimeToFeedbackReport,
)

__all__ = [
    "BREAKDOWN_COLUMNS",
    "CHART_BARS",
    "DIMENSIONS",
    "FAILURE",
    "KIND_LABELS",
    "REPORTS",
    "SCORE_CONVERSION_TARGET",
    "SCORE_RETURN_CEILING",
    "SCORE_WEIGHTS",
    "SUCCESS",
    "BillingReport",
    "Breakdown",
    "BreakdownReport",
    "BuyerBreakdownReport",
    "BuyerTimeToFeedbackReport",
    "Column",
    "DeliveryHealthReport",
    "Dimension",
    "EpochSeconds",
    "FlowBreakdownReport",
    "KindBreakdownReport",
    "PercentileCont",
    "ReasonBreakdownReport",
    "Report",
    "ReportTable",
    "ReturnsResolutionReport",
    "ScorecardReport",
    "Section",
    "SourceBreakdownReport",
    "SourceTimeToFeedbackReport",
    "TimeToFeedbackReport",
    "TrendReport",
    "as_dicts",
    "breakdown_rows",
    "csv_label",
    "csv_value",
    "finish_row",
    "is_postgresql",
    "labels_for",
    "month_of",
    "percentile",
    "rate",
    "rollup_usable",
    "source_score",
]
