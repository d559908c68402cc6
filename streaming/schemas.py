from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(default_factory=dict)
    # Accepted for the SDKs that send it, and ignored: an event's source is the publishing key's name.
    source: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        default=None, description="Ignored: the server records the publishing key's name as the source."
    )


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
