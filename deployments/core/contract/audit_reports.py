"""The audit trail's and the anonymous reports' shapes: ``GET /audit`` and ``GET /reports/summary``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, Optional, Union

from pydantic import ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from deployments.core.auth import ROLES
from deployments.core.contract.validation import CaseRef, QueryText, _Body, _Request
from deployments.core.reports import DIMENSIONS, PERIODS

# Reports cover days of this range: far enough either way, and every period end stays a valid date.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)
RoleName = Literal[tuple(ROLES)]  # type: ignore[valid-type]

# -- GET /audit -------------------------------------------------------------------------------------


class AuditParams(_Request):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True,
                              json_schema_extra={"additionalProperties": True})

    key_name: Optional[QueryText] = Field(None, description="Only calls made with the key of this name "
                                          "('anonymous' when no keys are configured).")
    role: Optional[RoleName] = Field(None, description="Only calls made with a key of this role.")
    route: Optional[QueryText] = Field(None, description="Only this route, as the rows name it: 'GET /cases/{id}'.")
    case_id: Optional[CaseRef] = Field(None, description="Only calls that named this id or answered with this case.")
    status: Optional[int] = Field(None, ge=100, le=599, description="Only calls answered with this HTTP status.")
    since: Optional[datetime] = Field(None, alias="from", description="From this time (ISO 8601; UTC if no zone).")
    until: Optional[datetime] = Field(None, alias="to", description="Before this time (ISO 8601; UTC if no zone).")
    limit: int = Field(100, ge=1, le=1000, description="Rows per page.")
    cursor: Optional[QueryText] = Field(None, description="The next_cursor of the previous page.")


class AuditEntry(_Body):
    id: str
    at: str = Field(description="When the call arrived (ISO 8601, UTC).")
    key_name: Optional[str] = Field(description="The key's name; 'anonymous' with no keys configured; null when "
                                    "the call had no valid key (401).")
    role: Optional[str]
    route: str = Field(description="Method and path template, e.g. 'GET /cases/{id}'.")
    permission: str
    subject: Optional[str] = Field(description="The id the request named (path or body), if any.")
    case_ids: list[str] = Field(description="The case ids the answer carried.")
    status: int = Field(description="The HTTP status answered.")
    error_code: Optional[str] = Field(description="The error's code when the call failed.")
    request_id: Optional[str]


class AuditResponse(_Body):
    success: bool
    events: list[AuditEntry] = Field(description="Newest first.")
    next_cursor: Optional[str] = Field(description="Pass as 'cursor' for the next page; null on the last one.")


# -- GET /reports/summary ----------------------------------------------------------------------------


class ReportParams(_Request):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True,
                              json_schema_extra={"additionalProperties": True})

    first: Optional[date] = Field(None, alias="from", ge=FIRST_DAY, le=LAST_DAY, description="First day (UTC, "
                                  "YYYY-MM-DD, included); default: 12 weeks before 'to'.")
    last: Optional[date] = Field(None, alias="to", ge=FIRST_DAY, le=LAST_DAY, description="Last day (UTC, "
                                 "YYYY-MM-DD, included); default: today.")
    period: Literal[PERIODS] = Field("week", description="Counts per day, ISO week (from Monday) or "  # type: ignore[valid-type]
                                     "calendar month.")
    by: Annotated[str, Field(min_length=1, max_length=200, description="Comma-separated dimensions to count by: "
                             + ", ".join(DIMENSIONS) + ".")] = "main_category"

    @field_validator("by")
    @classmethod
    def _known_dimensions(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in DIMENSIONS]
        if unknown or not names or len(set(names)) != len(names):
            raise PydanticCustomError("unknown_dimension", "names {names}; 'by' takes each of {known} at most once.",
                                      {"names": ", ".join(unknown or names) or "nothing", "known": ", ".join(DIMENSIONS)})
        return ",".join(names)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(self.by.split(","))


class ReportCell(_Body):
    group: dict[str, str] = Field(description="The value of each dimension of 'by'.")
    count: Union[int, str] = Field(description="Cases; a count under min_count shows as '<min_count'.")


class ReportPeriod(_Body):
    start: str
    end: str = Field(description="The period's last day.")
    counts: list[ReportCell]


class ReportTaxonomy(_Body):
    name: str
    source: str
    kept_as_ours: list[str] = Field(description="Our main categories counted as they are: their sub categories "
                                    "have no counterpart in the mapping.")


class ReportSummary(_Body):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    success: bool
    first: str = Field(alias="from")
    last: str = Field(alias="to")
    period: str
    by: list[str]
    min_count: int = Field(description="Counts under it show as '<min_count'.")
    taxonomy: Optional[ReportTaxonomy] = Field(description="Where main categories are Child Helpline "
                                               "International's, and the mapping's source.")
    periods: list[ReportPeriod]
