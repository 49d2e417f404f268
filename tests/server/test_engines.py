"""Engine loading: one table, one device picker, options carried by the model config."""

from __future__ import annotations

import pytest

from server.cli import _parser, config_from_args
from server.config import ModelConfig, ParaformerOptions, WhisperOptions
from server.devices import pick_device
from server.engine_thread import EngineThread, online_lane_threads
from server.engines import LOADERS, build_engine, load_paraformer, load_paraformer_final


def test_every_engine_the_cli_offers_has_a_loader():
    args = _parser().parse_args(["serve", "--engine", "whisper"])
    assert args.engine in LOADERS and set(LOADERS) == {"paraformer", "whisper"}


def test_unknown_engine_is_refused_by_name():
    with pytest.raises(ValueError, match="no-such-engine"):
        build_engine(ModelConfig(engine="no-such-engine"))


def test_whisper_options_come_from_the_command_line():
    args = _parser().parse_args([
        "serve", "--engine", "whisper", "--whisper-stride", "2", "--whisper-window", "20",
        "--whisper-beam-size", "3", "--language", "de",
    ])
    models = config_from_args(args).models
    assert models.whisper == WhisperOptions(stride_s=2.0, max_window_s=20.0, beam_size=3,
                                            language="de")


def test_paraformer_options_come_from_the_command_line():
    args = _parser().parse_args(["serve", "--online-model", "/m/on", "--punc-model", "none",
                                 "--quantize", "int8"])
    options = config_from_args(args).models.paraformer
    assert (options.online_model, options.punc_model, options.quantize) == ("/m/on", None, "int8")


@pytest.mark.parametrize("backend", ["torch", "ctranslate2"])
def test_device_picker_returns_an_explicit_choice_and_resolves_auto(backend):
    assert pick_device("cpu", backend=backend) == "cpu"
    assert pick_device("auto", backend=backend) in ("cuda", "mps", "cpu")


def test_ctranslate2_is_never_given_mps():
    pytest.importorskip("ctranslate2")
    assert pick_device("auto", backend="ctranslate2") in ("cuda", "cpu")


@pytest.mark.parametrize("loader", [load_paraformer, load_paraformer_final])
def test_loading_keeps_the_torch_threads_its_lane_set(test_models_dir, loader):
    """The thread that loads a model then runs its lane (server/engine_thread.py):
    FunASR's AutoModel sets torch's thread count as it builds, and `--threads`
    (or the final lane's half of the cores) must survive it."""
    import torch

    options = ParaformerOptions(str(test_models_dir / "paraformer-streaming"),
                                str(test_models_dir / "paraformer-offline"),
                                str(test_models_dir / "ct-punc"))
    wanted = 1 if torch.get_num_threads() > 1 else 2  # anything but the default
    lane = EngineThread(wanted)
    try:
        lane.call(loader, options, "cpu")
        assert lane.call(torch.get_num_threads) == wanted
    finally:
        lane.close()


def test_with_front_end_workers_on_the_cpu_the_online_lane_takes_the_cores_they_leave(
        monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert online_lane_threads(None, workers=2, device="cpu", cores=2) == 1
    assert online_lane_threads(None, workers=2, device="cpu", cores=8) == 6
    assert online_lane_threads(None, workers=4, device="cpu", cores=2) == 1
    # one process on the CPU: all cores, as a count the runner can lend from
    assert online_lane_threads(None, workers=1, device="cpu", cores=2) == 2
    # a GPU, or the user's own choice: unchanged
    assert online_lane_threads(None, workers=2, device="cuda", cores=16) is None
    assert online_lane_threads(2, workers=2, device="cpu", cores=2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert online_lane_threads(None, workers=1, device="cpu", cores=2) is None
