"""The worker's pace for admission: wall-clock jobs/s between busy batches at least half full, smoothed."""

from __future__ import annotations

import pytest
import redis

from config.settings import load_settings
from pipeline.capacity import CapacityMeter
from tests.support import free_port


@pytest.fixture
def meter() -> CapacityMeter:
    # Nothing listens on this port: reporting fails quietly, the figures are what is under test.
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.05, socket_timeout=0.05)
    return CapacityMeter(client, load_settings(max_batch_size=32))


def test_small_batches_and_batches_after_a_quiet_spell_say_nothing(meter: CapacityMeter) -> None:
    meter.observe("text", 32, now=100.0)  # the first batch: no interval to measure yet
    meter.observe("text", 1, now=100.02)  # a lone job: 50 jobs/s, though full batches run far faster
    meter.observe("text", 15, now=100.1)
    meter.observe("text", 32, now=130.0)  # after 30 s idle: says when work arrived, not the pace
    assert "text" not in meter.rates


def test_busy_batches_give_the_wall_clock_pace_smoothed(meter: CapacityMeter) -> None:
    meter.observe("text", 32, now=10.0)
    meter.observe("text", 32, now=10.1)
    assert meter.rates["text"] == pytest.approx(320)
    meter.observe("text", 32, now=10.3)  # 160 jobs/s: the average moves part of the way
    assert 160 < meter.rates["text"] < 320
    meter.observe("audio", 16, now=11.3)
    assert meter.rates["audio"] == pytest.approx(16)
