"""Series in the Prometheus text format, written directly (see the package's docstring)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from itertools import accumulate, groupby
from operator import itemgetter

from prometheus_client.utils import floatToGoString

# One series: its name, type (counter, gauge or histogram), labels as canonical JSON (sorted
# keys), value, sum, and an id that `buckets_of` answers a histogram's bucket counts for.
Series = tuple[str, str, str, float, float, int]


def series_text(series: Iterable[Series], buckets_of: Callable[[int], list[int]], bounds: Sequence[float], help_note: str) -> str:
    """The text of `series`, ordered by name: a counter as <name>_total, a gauge as its value, a
    histogram as cumulative buckets (upper `bounds`, not cumulative in `buckets_of`), count and sum.
    Names and label names must already be valid: nothing here checks or escapes them."""
    bound_text = [floatToGoString(bound) for bound in bounds]
    lines = []
    for name, group in groupby(series, itemgetter(0)):
        for index, (_, kind, labels_key, value, total, pk) in enumerate(group):
            labels = label_text(labels_key)
            if kind == "counter":
                exposed = f"{name.removesuffix('_total')}_total"
                samples = [(exposed, labels, value)]
            elif kind == "gauge":
                exposed = name
                samples = [(name, labels, value)]
            else:
                exposed, joined = name, f"{labels}," if labels else ""
                counts = list(accumulate(buckets_of(pk)))
                samples = [
                    (f"{name}_bucket", f'{joined}le="{bound}"', count) for bound, count in zip(bound_text, counts, strict=True)
                ]
                samples += [(f"{name}_count", labels, counts[-1]), (f"{name}_sum", labels, total)]
            if index == 0:
                lines.append(f"# HELP {exposed} {name} ({kind}, {help_note})\n# TYPE {exposed} {kind}\n")
            lines += [f"{sample}{{{text}}} {floatToGoString(number)}\n" if text else f"{sample} {floatToGoString(number)}\n"
                      for sample, text, number in samples]  # fmt: skip
    return "".join(lines)


@lru_cache(maxsize=100_000)
def label_text(labels_key: str) -> str:
    """`a="x",b="y"` of a series' labels (canonical JSON, sorted keys), values escaped; rendered
    once per process for each label set."""
    return ",".join(f'{name}="{_escaped(value)}"' for name, value in json.loads(labels_key).items())


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
