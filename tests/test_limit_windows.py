"""issuance.limits.window_for keeps the last FIXED window per definition and answers from it
while the instant stays inside it: the answers must be those computed afresh, at every instant,
for every frequency, interval, cycle start, week start and time zone (DST changes included)."""

import datetime
import random

from catalogue.choices import Frequency, Weekday, WindowType
from catalogue.models import RewardConstraint
from issuance import limits

ZONES = ["UTC", "Asia/Kolkata", "America/Los_Angeles", "Europe/London", "Australia/Lord_Howe"]


def test_kept_fixed_windows_are_the_windows_computed_afresh():
    rng = random.Random(3)
    definitions = []
    for _ in range(60):
        definitions.append((
            RewardConstraint(
                frequency=rng.choice([Frequency.DAYS, Frequency.WEEKS, Frequency.MONTHS]),
                window_type=WindowType.FIXED, interval=rng.choice([1, 1, 2, 3, 7]),
                cycle_start=rng.choice([None, datetime.date(2024, 2, 29), datetime.date(2026, 1, 31)]),
                week_start_day=rng.choice(list(Weekday.values)),
            ),
            rng.choice(ZONES),
        ))
    origin = datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC)
    instants = sorted(origin + datetime.timedelta(seconds=rng.randint(0, 300 * 86400)) for _ in range(400))
    limits._FIXED_WINDOWS.clear()
    checked = 0
    for constraint, zone in definitions:
        edges = []
        for now in instants:  # time moving forward; then on and next to the windows' edges
            fresh = limits._fixed_window(constraint, now=now, tz_name=zone)
            assert limits.window_for(constraint, now=now, tz_name=zone) == fresh, (constraint.frequency, zone, now)
            assert fresh.start <= now < fresh.end
            edges += [fresh.start, fresh.end]
            checked += 1
        for edge in sorted(edges):
            for now in (edge - datetime.timedelta(microseconds=1), edge, edge + datetime.timedelta(microseconds=1)):
                fresh = limits._fixed_window(constraint, now=now, tz_name=zone)
                assert limits.window_for(constraint, now=now, tz_name=zone) == fresh, (constraint.frequency, zone, now)
                checked += 1
    assert checked > 50_000


def test_a_changed_definition_is_not_answered_from_another_ones_window():
    now = datetime.datetime(2026, 12, 3, 12, tzinfo=datetime.UTC)
    monthly = RewardConstraint(frequency=Frequency.MONTHS, window_type=WindowType.FIXED, interval=1)
    weekly = RewardConstraint(frequency=Frequency.WEEKS, window_type=WindowType.FIXED, interval=1,
                              week_start_day=Weekday.THURSDAY)
    assert limits.window_for(monthly, now=now, tz_name="UTC") == limits.Window(
        datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC), datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC))
    assert limits.window_for(weekly, now=now, tz_name="UTC") == limits.Window(
        datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC), datetime.datetime(2026, 12, 10, tzinfo=datetime.UTC))
    monthly.interval = 2
    assert limits.window_for(monthly, now=now, tz_name="UTC").start == datetime.datetime(2026, 11, 1,
                                                                                         tzinfo=datetime.UTC)
    assert limits.window_for(monthly, now=now, tz_name="Asia/Kolkata").start == datetime.datetime(
        2026, 10, 31, 18, 30, tzinfo=datetime.UTC)
