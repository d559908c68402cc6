from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(default_factory=dict)
    source: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None


class TrimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_length: Annotated[int, Field(ge=0, le=2**63 - 1)] = 1000  # Redis's range


class StreamEventOut(BaseModel):
    event_id: str
    event_type: str
    timestamp: str | None
    source: str | None
    data: dict[str, Any]


class StreamEventList(RootModel[list[StreamEventOut]]):
    pass
