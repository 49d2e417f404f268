"""The short soak (bench/soak.py) is part of the test command: 20 speakers come
and go at random for 60 s against a real `captiond serve` process, dropping
their sockets mid-utterance, closing, reconnecting, uploading files. Every
utterance they started reaches its room exactly once and where it was spoken,
the transcript store holds exactly what the rooms received, and the server
ends where it began in descriptors and threads."""

from __future__ import annotations

from bench.soak import main


def test_short_soak_loses_no_utterance_and_leaks_no_descriptors(test_models_dir, tmp_path):
    report = main(["--streams", "20", "--seconds", "60", "--model-dir", str(test_models_dir),
                   "--results", str(tmp_path / "soak.json")])
    # it did what a soak should: many streams, ended every way, with uploads among them
    assert report["utterances"] >= 100
    assert {"end", "drop", "close"} <= set(report["streams_by_ending"])
    assert report["streams_by_kind"].get("upload")
    assert report["connects"] > 20
    # nothing lost, nothing twice, nothing invented or out of place
    assert report["lost"] == 0, report["problems"]
    assert report["duplicated"] == report["extra"] == report["misplaced"] == 0, report["problems"]
    assert report["direct_mismatches"] == 0, report["problems"]
    assert report["client_errors"] == {}
    # the transcript store holds exactly what the rooms received (written before sent)
    store = report["store"]
    assert store["finals_stored"] >= report["utterances"] - report["lost"]
    assert store["received_not_stored"] == store["stored_differently"] == 0, store
    assert store["stored_twice"] == store["stored_not_received"] == 0, store
    log = report["server_log"]
    assert log["errors"] == log["tracebacks"] == 0, log["first_problems"]
    server = report["server"]
    assert server["fds_idle_after"] <= server["fds_idle_before"] + 3
    assert server["threads_idle_after"] <= server["threads_idle_before"]
