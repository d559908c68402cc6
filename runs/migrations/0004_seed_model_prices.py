"""A starting price table (list prices per million tokens, late 2025), so costs and savings mean
something on the first day. Prices change: operators keep them current in the admin."""

from decimal import Decimal

from django.db import migrations

PRICES = [
    # model, provider, tier, input, output, cache read, cache write
    ("claude-3-5-haiku", "anthropic", "cheap", "0.80", "4", "0.08", "1"),
    ("claude-sonnet-4", "anthropic", "capable", "3", "15", "0.30", "3.75"),
    ("claude-sonnet-4-5", "anthropic", "capable", "3", "15", "0.30", "3.75"),
    ("claude-opus-4", "anthropic", "premium", "15", "75", "1.50", "18.75"),
    ("gpt-4o-mini", "openai", "cheap", "0.15", "0.60", "0.075", "0"),
    ("gpt-4o", "openai", "capable", "2.50", "10", "1.25", "0"),
]


def add_prices(apps, schema_editor):
    ModelPrice = apps.get_model("runs", "ModelPrice")
    for model, provider, tier, *prices in PRICES:
        input_price, output_price, cache_read, cache_write = (Decimal(price) for price in prices)
        ModelPrice.objects.get_or_create(
            model=model,
            defaults={
                "provider": provider,
                "tier": tier,
                "input_per_mtok": input_price,
                "output_per_mtok": output_price,
                "cache_read_per_mtok": cache_read,
                "cache_write_per_mtok": cache_write,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("runs", "0003_llm_usage_feedback")]
    operations = [migrations.RunPython(add_prices, migrations.RunPython.noop)]
