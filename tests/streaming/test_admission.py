"""Admission control's capacity model and decisions, with made-up measurements."""

from __future__ import annotations

import pytest

from streaming.admission import (
    AdmissionController,
    AdmissionPolicy,
    CapacityModel,
    UtilizationMeter,
)

CHUNK_S = 0.6


def measured(alpha: float, beta: float, sizes=(1, 2, 4, 8, 16)) -> CapacityModel:
    """A model fed batches costing exactly alpha + beta*b per second of audio."""
    model = CapacityModel()
    for b in sizes:
        model.record(b, (alpha + beta * b) * CHUNK_S, CHUNK_S)
    return model


def test_fit_recovers_fixed_and_per_stream_cost():
    alpha, beta = measured(0.1, 0.05).coefficients()
    assert alpha == pytest.approx(0.1) and beta == pytest.approx(0.05)


def test_capacity_counts_streams_that_fit_the_target():
    model = measured(0.1, 0.05)
    # load(N) = 0.1 + 0.05 N <= 0.8  ->  N <= 14
    assert model.capacity(max_batch_size=32, target=0.8) == 14


def test_capacity_beyond_the_batch_cap_needs_several_batches():
    model = measured(0.2, 0.01)
    # B = 8: load(N) = N/8 * (0.2 + 0.08) <= 0.8  ->  N <= 22
    assert model.capacity(max_batch_size=8, target=0.8) == 22


def test_one_batch_size_only_assumes_no_batching_benefit():
    model = CapacityModel()
    model.record(1, 0.25 * CHUNK_S, CHUNK_S)  # RTF 0.25 per stream at batch 1
    assert model.coefficients() == (0.0, pytest.approx(0.25))
    assert model.capacity(32, 0.8) == 3


def test_old_measurements_are_forgotten():
    model = measured(0.1, 0.2)
    for _ in range(400):  # the machine got faster (or a GPU took over)
        for b in (1, 8):
            model.record(b, (0.05 + 0.01 * b) * CHUNK_S, CHUNK_S)
    alpha, beta = model.coefficients()
    assert alpha == pytest.approx(0.05, abs=0.01) and beta == pytest.approx(0.01, abs=0.005)


def test_controller_refuses_the_stream_over_capacity():
    controller = AdmissionController(AdmissionPolicy(target_utilization=0.8), max_batch_size=32)
    controller.model = measured(0.1, 0.05)
    assert controller.refusal(live_streams=13, now=0.0) is None
    message = controller.refusal(live_streams=14, now=0.0)
    assert message is not None and "14 live streams" in message


def test_operator_cap_applies_before_any_measurement():
    controller = AdmissionController(AdmissionPolicy(max_streams=2), max_batch_size=32)
    assert controller.refusal(live_streams=1, now=0.0) is None
    assert controller.refusal(live_streams=2, now=0.0) is not None


def test_unknown_capacity_admits():
    controller = AdmissionController(AdmissionPolicy(), max_batch_size=32)
    assert controller.capacity() is None
    assert controller.refusal(live_streams=500, now=0.0) is None


def test_a_saturated_engine_refuses_even_if_the_model_disagrees():
    controller = AdmissionController(AdmissionPolicy(), max_batch_size=32)
    for second in range(10):
        controller.meter.record(float(second), second + 1.0)
    assert controller.refusal(live_streams=1, now=10.0) is not None


def test_the_first_stream_is_always_admitted():
    controller = AdmissionController(AdmissionPolicy(max_streams=0), max_batch_size=32)
    controller.model.record(1, 2.0, CHUNK_S)  # slower than real time even alone
    controller.meter.record(0.0, 10.0)
    assert controller.refusal(live_streams=0, now=10.0) is None


def test_utilization_counts_only_the_recent_window():
    meter = UtilizationMeter(window_s=10.0)
    meter.record(0.0, 5.0)
    meter.record(12.0, 14.0)
    assert meter.utilization(now=15.0) == pytest.approx(0.2)
    assert meter.utilization(now=30.0) == 0.0
