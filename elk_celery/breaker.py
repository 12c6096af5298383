"""The circuit breaker shared by every node of a namespace.

Its state lives in Redis (``<prefix>:{ns}:breaker``) and changes only inside
the scripts that record outcomes (fail.lua, complete.lua) and admit work
(claim.lua), on Redis's clock:

* closed -> open: ``circuit_breaker_consecutive_failures`` failures in a
  row, or ``circuit_breaker_total_failures`` distinct partitions failed
  within ``circuit_breaker_failure_window``;
* open -> half_open: the first claim after ``circuit_breaker_open_timeout``;
* half_open: at most ``circuit_breaker_half_open_max_requests`` probes run;
  a probe success closes the breaker, a probe failure opens it again.

While open, claims are refused with code ``breaker`` and the task is sent
again later; refusals do not use up retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from .store.namespace import NamespaceStore


@dataclass(frozen=True)
class BreakerState:
    state: str  # 'closed' | 'open' | 'half_open'
    consecutive_failures: int
    failures_in_window: int
    trips: int
    probes: int
    opened_at_ms: int | None
    reopens_in: float | None  # seconds until an open breaker admits probes
    reason: str
    refused: int  # claims refused while open, all time

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class CircuitBreaker:
    """Read and reset the namespace's shared breaker."""

    def __init__(self, store: NamespaceStore) -> None:
        self.store = store
        self.settings = store.settings

    def state(self) -> BreakerState:
        now, b, in_window, refused = self.store.breaker_record()
        state = b.get("state", "closed")
        opened = int(b["opened_at"]) if b.get("opened_at") else None
        reopens = None
        if state == "open" and opened is not None:
            reopens = max(0.0, (opened + self.settings.ms("circuit_breaker_open_timeout") - now) / 1000)
        return BreakerState(
            state=state, consecutive_failures=int(b.get("consecutive", 0)),
            failures_in_window=int(in_window), trips=int(b.get("trips", 0)),
            probes=int(b.get("probes", 0)), opened_at_ms=opened, reopens_in=reopens,
            reason=b.get("reason", ""), refused=refused)

    def reset(self) -> None:
        """Close the breaker and forget recent failures (operator action)."""
        self.store.reset_breaker("reset by operator")
