"""Reusable click parameter types: numbers in their valid range, ports, finite floats.

Bad values fail in click's parsing as one line naming the flag and exit 2, before any work starts.
"""

from __future__ import annotations

import math

import click

#: A count that must be at least one (``--num``, ``--workers``).
POSITIVE_INT = click.IntRange(min=1)
#: A size or count where 0 means "none"/"off" (``--max-size=0``: no resizing).
NON_NEGATIVE_INT = click.IntRange(min=0)
#: A TCP port.
PORT = click.IntRange(1, 65535)


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses ``nan`` and ``inf`` (which compare False with any bound)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


#: A ratio or an amount >= 0 (``--ext-ratio``).
NON_NEGATIVE_FLOAT = FiniteFloat(min=0)
#: A rate or a duration > 0 (``--frame-rate``, ``--timeout``).
POSITIVE_FLOAT = FiniteFloat(min=0, min_open=True)
