"""Integrations with LLM client libraries: `instrument(client)` makes each model call of that
client a span of the current run or span, with the model and its tokens, which the server records
as LLM usage priced from its price table.

    from openai import OpenAI
    from telemetry_client.integrations.openai import instrument

    client = instrument(OpenAI())

Each needs its library (`pip install telemetry-client[openai]`, `[anthropic]`); the SDK does not.
"""
