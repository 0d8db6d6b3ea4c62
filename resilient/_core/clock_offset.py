# What the replies of another clock (a store's) show of its offset from this process's clock.
#
# Rules:
# - A reply carries the other clock's reading, taken at some instant between the request's
#   sending (this clock's `sent`, read just before) and the reply's arrival (`received`, read
#   just after). At that instant the offset (the other clock minus this one) was therefore
#   within [reading - received, reading - sent], and one reply says no more: the reading may
#   come anywhere in the round trip (after a connection handshake or a script load, before a
#   slow way back, or wherever an unequal split of the latency puts it).
# - The kept interval is the intersection of what every reply allowed, so it narrows towards
#   the fastest way there and the fastest way back seen, whichever replies they came with.
# - Two clocks run at slightly different rates (oscillators, NTP's corrections), so the offset
#   moves: the kept interval widens by DRIFT times the local seconds since the earliest instant
#   its last reading may have been taken. An old narrow interval cannot pin the offset.
# - A reply whose interval does not meet the kept one (the other clock was set, a failover
#   reached a server with another clock, the rates differed by more than DRIFT) starts the
#   kept interval again from that reply alone. Either way the kept interval lies within the
#   newest reply's, so the estimate is never worse than that one reply allows.
# - The estimate is the kept interval's midpoint: of every point in it, the one whose worst
#   error (half the width) is least. It is off by half the difference between the fastest way
#   there and the fastest way back (plus the drift allowed): nothing on a symmetric link.
#   Either end could be off by the whole width, and the end a reply's arrival gives is late by
#   a way back at least. Only while every reply so far had a slow start (a process's first,
#   with its handshake) is the midpoint off by more than half an ordinary round trip; the next
#   ordinary reply narrows it.
# - Replies come one after another (the caller has one request in flight at a time).
from __future__ import annotations

import math
from typing import Final

__all__ = ["DRIFT", "ClockOffset"]

# Seconds two clocks may drift apart per second: several times what two common quartz
# oscillators left uncorrected do, and far more than two NTP-disciplined clocks. Faster drift
# costs no more than the newest reply's bound (above); a larger allowance would keep a narrow
# interval useful for less time.
DRIFT: Final = 100e-6


class ClockOffset:
    """The offset of another clock from this one, as far as the replies so far bound it.

    Attributes:
        low: The least the offset may be, as of ``since``.
        high: The most the offset may be, as of ``since``.
        since: This clock's time from which the bounds hold (widening by DRIFT after it).
    """

    __slots__ = ("high", "low", "since")

    def __init__(self) -> None:
        self.low = -math.inf
        self.high = math.inf
        self.since = 0.0

    def heard(self, reading: float, sent: float, received: float) -> float:
        """Take in a reply that read *reading* on the other clock; return the offset to use.

        *sent* and *received* are this clock's times just before the request was sent and
        just after the reply arrived.
        """
        low, high = reading - received, reading - sent
        slack = DRIFT * abs(received - self.since)
        kept_low, kept_high = self.low - slack, self.high + slack
        if kept_low <= high and low <= kept_high:
            low, high = max(low, kept_low), min(high, kept_high)
        self.low, self.high, self.since = low, high, sent
        return (low + high) / 2
