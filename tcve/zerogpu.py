"""Facts about Hugging Face ZeroGPU that tcve sizes its GPU calls by, and how to tell that it runs there.

No torch import here: ``app.py`` asks ``on_zerogpu()`` before anything imports torch, because ZeroGPU's ``spaces``
package must patch torch before CUDA is touched.

Sources (read 2026-12-02): the Hub's ZeroGPU page (docs/hub/spaces-zerogpu.md in huggingface/hub-docs, snapshot of
2026-08-22, PyTorch list updated in hub-docs PR #2763) and the ``spaces`` package 0.51.3 (``spaces/config.py``,
``spaces/zero/client.py``, ``spaces/zero/configs.json``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# spaces/config.py reads SPACES_ZERO_GPU with this truth table; anything else means "not ZeroGPU".
_TRUE = frozenset({"1", "t", "true"})

# Included daily GPU time per visitor tier (ZeroGPU docs, "Usage Tiers"), in seconds.
DAILY_QUOTA_SECONDS = (("unauthenticated", 120), ("free account", 300), ("PRO / Team", 2400), ("Enterprise", 3600))


def on_zerogpu() -> bool:
    """Whether this process runs on ZeroGPU hardware (the platform sets ``SPACES_ZERO_GPU``)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in _TRUE


@dataclass(frozen=True)
class ZeroGPULimits:
    """What one ``@spaces.GPU`` call may ask for.

    ``max_call_seconds``: the largest request tcve lets a call make. The platform's per-call cap depends on the
    visitor and is not published; ``spaces`` tells regular visitors who hit it that PRO allows "GPU tasks up to 40
    min", so a longer request could run for no one. Free visitors have 5 minutes a day in all, unauthenticated ones
    2: lower the limit (environment ``TCVE_ZEROGPU_MAX_SECONDS``) to refuse earlier on a Space meant for them.

    ``duration_factor``: ``spaces`` multiplies the requested duration by this on the default ``large`` size (half an
    RTX Pro 6000 Blackwell, configs.json: 1.5; 1.0 on the older H200 slice). tcve's durations are H200-class
    seconds, so the request the platform checks against its limits is ``duration * duration_factor``.
    """

    max_call_seconds: int = 2400
    duration_factor: float = 1.5
    daily_quota_seconds: tuple[tuple[str, int], ...] = DAILY_QUOTA_SECONDS

    @classmethod
    def from_env(cls) -> ZeroGPULimits:
        value = os.environ.get("TCVE_ZEROGPU_MAX_SECONDS", "").strip()
        return cls(max_call_seconds=int(value)) if value else cls()

    def quota_note(self) -> str:
        """One line on the daily quotas, for messages."""
        tiers = ", ".join(f"{name} {seconds // 60} min" for name, seconds in self.daily_quota_seconds)
        return f"ZeroGPU daily quotas per visitor: {tiers}."
