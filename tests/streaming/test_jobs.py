"""The job ordering table and the wire mode: small pure rules the session relies on."""

from __future__ import annotations

import json

import pytest

from streaming.jobs import BLOCKED_BY, JobKind, may_start
from streaming.results import wire_mode
from streaming.session import CaptionSession
from tests.conftest import wav_pcm16
from tests.streaming.engine_double import StrideCountingEngine

ONLINE, FINAL = JobKind.ONLINE, JobKind.FINAL


@pytest.mark.parametrize(
    ("kind", "running", "allowed"),
    [
        (ONLINE, set(), True),
        (ONLINE, {FINAL}, True),  # partials never wait behind a final
        (ONLINE, {ONLINE}, False),  # a chunk needs the previous chunk's state
        (FINAL, set(), True),
        (FINAL, {ONLINE}, False),  # an utterance's partials precede its final
        (FINAL, {FINAL}, False),
    ],
)
def test_which_job_may_start_given_what_runs(kind, running, allowed):
    assert may_start(kind, running) is allowed


def test_offline_finals_of_one_stream_may_run_together_but_never_before_a_chunk():
    # They carry no model state from one to the next (an offline stream has no chunks,
    # but the previous stream on the connection may).
    assert may_start(FINAL, {FINAL}, stateless=True)
    assert not may_start(FINAL, {ONLINE}, stateless=True)
    assert not may_start(ONLINE, {ONLINE}, stateless=True)


def taken_at_once(mode: str) -> int:
    """How many finals of one stream of three utterances can be taken at once."""
    session = CaptionSession(StrideCountingEngine())
    session.receive_text(json.dumps({"mode": mode, "audio_fs": 16000}), 0.0)
    session.receive_audio(wav_pcm16("multi.wav")[0], 0.0)
    session.receive_end(1.0)
    taken = []
    while (job := session.take_job()) is not None:
        if job.kind == "online":
            session.complete(job, session.engine.step([job.request])[0])
        else:
            taken.append(job)
    return len(taken)


def test_an_upload_offers_all_its_utterances_to_the_final_pass_a_live_stream_one():
    assert taken_at_once("offline") == 3
    assert taken_at_once("2pass") == 1


def test_every_kind_has_an_ordering_rule():
    assert set(BLOCKED_BY) == set(JobKind)


def test_job_kinds_work_where_the_runner_uses_plain_names():
    lanes = {"online": "online lane", "final": "final lane"}
    assert lanes[ONLINE] == "online lane" and lanes[FINAL] == "final lane"
    assert ONLINE == "online" and f"{FINAL}" == "final"


@pytest.mark.parametrize(
    ("mode", "kind", "wire"),
    [
        ("online", ONLINE, "online"),
        ("offline", FINAL, "offline"),
        ("2pass", ONLINE, "2pass-online"),
        ("2pass", FINAL, "2pass-offline"),
        ("online", FINAL, "online"),  # an online stream's closing message
    ],
)
def test_wire_mode_of_each_stream_mode_and_pass(mode, kind, wire):
    assert wire_mode(mode, kind) == wire


def test_asking_for_work_changes_nothing():
    session = CaptionSession(StrideCountingEngine())
    session.receive_text(json.dumps({"mode": "2pass", "audio_fs": 16000}), now=0.0)
    session.receive_audio(wav_pcm16("utt01.wav")[0], now=0.0)
    session.receive_text('{"is_speaking": false}', now=1.0)
    session.events()
    for _ in range(3):
        assert session.has_work
        assert session.peek_kind() is ONLINE
    assert session.events() == []  # the queries emitted nothing
    job = session.take_job()  # and took nothing
    assert job is not None and job.kind is ONLINE and job.request.samples.size
