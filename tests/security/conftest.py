"""Hypothesis settings for the property-based and corpus tests in tests/security.

Profiles (pick one with HYPOTHESIS_PROFILE, else CI picks ``security-ci``):

- ``security``: the default, about 200 examples per property, so the whole directory stays
  well under 30 s on two cores.
- ``security-ci``: the same budget, derandomized (the examples are derived from each test's
  source), so a CI run is reproducible and a red build can be replayed as it was.
- ``security-thorough``: ten times the examples, for a local hunt (``HYPOTHESIS_PROFILE=
  security-thorough``); still no deadline.

Locally, failing examples are kept in Hypothesis' example database (``.hypothesis/``, which
Hypothesis git-ignores itself) and replayed first on the next run. CI keeps no database: a
derandomized run needs none, and a failure prints the falsifying example and a
``@reproduce_failure`` blob.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,  # timing is asserted explicitly where it matters, not per example
    "print_blob": True,
    # The corpus strategies build whole probe documents; generation is deliberately heavy.
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

settings.register_profile("security", max_examples=200, **_COMMON)
settings.register_profile("security-ci", max_examples=200, derandomize=True, database=None, **_COMMON)
settings.register_profile("security-thorough", max_examples=2000, **_COMMON)

settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("security-ci" if os.environ.get("CI") else "security")
)
