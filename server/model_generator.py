"""A model generator: FunASR model directories with random weights (docs/design.md §5).

Used by `captiond make-test-models`, the test suite and the benchmarks; it is
no engine and no test, which is why it lives beside the loaders in `server/`.

No model hub is reachable here, so the Paraformer path is exercised with models
built from FunASR's own registered classes and saved in FunASR's model-dir
format (config.yaml, model.pt, tokens.json, am.mvn, configuration.json). They
load through the real `funasr.AutoModel(model=<dir>)` code path; the text they
produce is meaningless but every mechanism (chunked encoder caches, CIF firing,
FSMN decoder caches, SeACo hotword biasing, CT-Transformer) is the real one.

`size="large"` reproduces the architecture of the real checkpoints
(paraformer-zh-streaming: 50 SANM blocks, d=512, 16 decoder blocks, vocab 8404),
so benchmarks measure the real model's cost. `size="tiny"` keeps the same
classes with small dimensions so the test suite stays fast on a 2-core CPU.
`size="deep"` has the large model's layers at the tiny model's width: its
arithmetic costs almost nothing, so a step measures what the large model's
layer count costs the host (bench/RESULTS.md: on a GPU the step waits on it).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from streaming.engines import funasr_adapter

ONLINE_DIR = "paraformer-streaming"
OFFLINE_DIR = "paraformer-offline"
PUNC_DIR = "ct-punc"

# Per-frame firing weight the CIF predictors are biased to: encoder frames are
# 60 ms, so 0.3 ≈ 5 tokens/s, about the rate of Mandarin speech. Random weights
# would otherwise fire on nothing or on everything.
TARGET_ALPHA = 0.3

_CJK = (
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过"
    "发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前"
    "开但因只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重"
    "并物手应战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信表化老给世位次度门任常"
    "先海通教儿原东声提立及比员解水名真论处走义各入几口认条平系气题活尔更别打女变四神总何电数安少报"
    "才结反受目太量再感建务做接必场件计管期市直德资命山金指克许统区保至队形社便空决治展马科司五基眼"
)
_ENGLISH = (
    "the and to of a in is it you that he@@ llo wor@@ ld ab@@ out ing@@ ed s@@ "
    "t@@ th@@ er re@@ ation meet@@ ing cap@@ tion speech live room"
).split()
_PUNC_LIST = ["<unk>", "_", "，", "。", "？", "、"]

# The real paraformer-zh-streaming / paraformer-zh / ct-punc dimensions, and
# the tiny ones. Only sizes differ; classes and every other setting are shared.
_SIZES: dict[str, dict[str, int]] = {
    "large": dict(
        d=512, heads=4, ffn=2048, enc_blocks=50, dec_blocks=16, vocab=8404,
        seaco_ffn=1024, seaco_blocks=4, punc_d=516, punc_heads=12, punc_blocks=10,
        punc_vocab=8404,
    ),
    "tiny": dict(
        d=64, heads=4, ffn=128, enc_blocks=3, dec_blocks=2, vocab=0,
        seaco_ffn=64, seaco_blocks=1, punc_d=48, punc_heads=4, punc_blocks=2,
        punc_vocab=0,
    ),
}
_SIZES["deep"] = dict(_SIZES["tiny"], enc_blocks=50, dec_blocks=16, seaco_blocks=4,
                      punc_blocks=10)

_FRONTEND_CONF = {
    "fs": 16000,
    "window": "hamming",
    "n_mels": 80,
    "frame_length": 25,
    "frame_shift": 10,
    "lfr_m": 7,
    "lfr_n": 6,
    # Dither adds random noise to every fbank: generated models must be deterministic.
    "dither": 0.0,
}


def make_vocab(size: int) -> list[str]:
    """A plausible Paraformer vocabulary: specials, CJK characters, English BPE, <unk> last."""
    head = ["<blank>", "<s>", "</s>"]
    body = list(dict.fromkeys(_CJK)) + _ENGLISH
    if size == 0:
        return head + body + ["<unk>"]
    code = 0x4E00
    seen = set(body)
    while len(head) + len(body) + 1 < size:
        ch = chr(code)
        code += 1
        if ch not in seen:
            body.append(ch)
    return head + body[: size - len(head) - 1] + ["<unk>"]


def _encoder_conf(s: dict[str, int], *, streaming: bool) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "output_size": s["d"],
        "attention_heads": s["heads"],
        "linear_units": s["ffn"],
        "num_blocks": s["enc_blocks"],
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.1,
        "input_layer": "pe_online" if streaming else "pe",
        "pos_enc_class": "SinusoidalPositionEncoder",
        "normalize_before": True,
        "kernel_size": 11,
        "sanm_shfit": 0,
        "selfattention_layer_type": "sanm",
    }
    if streaming:
        conf.update(
            chunk_size=[12, 15],
            stride=[8, 10],
            pad_left=[0, 0],
            encoder_att_look_back_factor=[4, 4],
            decoder_att_look_back_factor=[1, 1],
        )
    return conf


def _decoder_conf(s: dict[str, int], *, sanm_shfit: int) -> dict[str, Any]:
    return {
        "attention_heads": s["heads"],
        "linear_units": s["ffn"],
        "num_blocks": s["dec_blocks"],
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "self_attention_dropout_rate": 0.1,
        "src_attention_dropout_rate": 0.1,
        "att_layer_num": s["dec_blocks"],
        "kernel_size": 11,
        "sanm_shfit": sanm_shfit,
    }


def _asr_model_conf() -> dict[str, Any]:
    return {
        "ctc_weight": 0.0,
        "lsm_weight": 0.1,
        "length_normalized_loss": True,
        "predictor_weight": 1.0,
        "predictor_bias": 1,
        "sampling_ratio": 0.75,
    }


def online_config(size: str) -> dict[str, Any]:
    """config.yaml of paraformer-zh-streaming (ParaformerStreaming) at this size."""
    s = _SIZES[size]
    return {
        "model": "ParaformerStreaming",
        "model_conf": _asr_model_conf(),
        "encoder": "SANMEncoderChunkOpt",
        "encoder_conf": _encoder_conf(s, streaming=True),
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": _decoder_conf(s, sanm_shfit=5),
        "predictor": "CifPredictorV2",
        "predictor_conf": {
            "idim": s["d"], "threshold": 1.0, "l_order": 1, "r_order": 1,
            "tail_threshold": 0.45,
        },
        "frontend": "WavFrontendOnline",
        "frontend_conf": dict(_FRONTEND_CONF),
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
    }


def offline_config(size: str, vocab: Sequence[str]) -> dict[str, Any]:
    """config.yaml of paraformer-zh (SeacoParaformer, native hotwords) at this size."""
    s = _SIZES[size]
    model_conf = _asr_model_conf()
    model_conf.update(
        inner_dim=s["d"],
        bias_encoder_type="lstm",
        bias_encoder_bid=False,
        seaco_lsm_weight=0.1,
        seaco_length_normalized_loss=True,
        train_decoder=True,
        # SeACo's "no bias" class; the real vocab puts it at 8377, tiny models need one < vocab.
        NO_BIAS=min(8377, len(vocab) - 2),
        seaco_weight=1.0,
    )
    seaco_decoder_conf = _decoder_conf(s, sanm_shfit=0)
    seaco_decoder_conf.update(
        linear_units=s["seaco_ffn"], num_blocks=s["seaco_blocks"],
        att_layer_num=s["seaco_blocks"], kernel_size=21,
        use_output_layer=False, wo_input_layer=True,
    )
    return {
        "model": "SeacoParaformer",
        "model_conf": model_conf,
        "encoder": "SANMEncoder",
        "encoder_conf": _encoder_conf(s, streaming=False),
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": _decoder_conf(s, sanm_shfit=0),
        "seaco_decoder": "ParaformerSANMDecoder",
        "seaco_decoder_conf": seaco_decoder_conf,
        "predictor": "CifPredictorV3",
        "predictor_conf": {
            "idim": s["d"], "threshold": 1.0, "l_order": 1, "r_order": 1,
            "tail_threshold": 0.45, "smooth_factor2": 0.25, "noise_threshold2": 0.01,
            "upsample_times": 3, "use_cif1_cnn": False, "upsample_type": "cnn_blstm",
        },
        "frontend": "WavFrontend",
        "frontend_conf": dict(_FRONTEND_CONF),
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
    }


def punc_config(size: str) -> dict[str, Any]:
    """config.yaml of ct-punc (CTTransformer) at this size."""
    s = _SIZES[size]
    d = s["punc_d"]
    return {
        "model": "CTTransformer",
        "model_conf": {
            "ignore_id": 0, "embed_unit": d, "att_unit": d, "dropout_rate": 0.1,
            "punc_list": list(_PUNC_LIST), "punc_weight": [1.0] * len(_PUNC_LIST),
            "sentence_end_id": 3,
        },
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "input_size": d, "output_size": d, "attention_heads": s["punc_heads"],
            "linear_units": s["ffn"], "num_blocks": s["punc_blocks"], "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1, "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
            "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm",
            "padding_idx": 0,
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>"},
    }


def build_model(config: dict[str, Any], vocab_size: int) -> torch.nn.Module:
    """Instantiate the registered FunASR class the way AutoModel.build_model does."""
    kwargs = copy.deepcopy(config)
    kwargs["vocab_size"] = vocab_size
    if "frontend_conf" in config:
        fc = config["frontend_conf"]
        kwargs["input_size"] = fc["n_mels"] * fc["lfr_m"]
    model_conf = {**kwargs.get("model_conf", {}), **kwargs}
    return funasr_adapter.build_registered(config["model"], **model_conf)


def count_parameters(config: dict[str, Any], vocab_size: int) -> int:
    """Parameter count from the config alone: built on the meta device, no memory, no init."""
    with torch.device("meta"):
        model = build_model(config, vocab_size)
    return sum(p.numel() for p in model.parameters())


def _bias_predictor(model: torch.nn.Module, seed: int) -> None:
    """Make CIF fire a few times per second (see TARGET_ALPHA) with random weights."""
    gen = torch.Generator().manual_seed(seed + 1)
    bias = math.log(TARGET_ALPHA / (1 - TARGET_ALPHA))
    for module in funasr_adapter.cif_output_layers(model):
        with torch.no_grad():
            # Small weights keep alphas near the target while still varying with the audio.
            w = torch.randn(module.weight.shape, generator=gen) * 0.02
            module.weight.copy_(w / math.sqrt(module.weight.shape[1]) * 10)
            module.bias.fill_(bias)


def _bias_punctuation(model: torch.nn.Module) -> None:
    """Make CT-Transformer mostly predict "no punctuation", sometimes ，/。/？, never <unk>.

    Random weights would scatter the <unk> class (index 0) everywhere.
    """
    # Logit offsets per _PUNC_LIST entry: <unk>, _, ，, 。, ？, 、
    bias = torch.tensor([-20.0, 2.0, 0.0, 0.5, -0.5, -1.5])
    head = funasr_adapter.punctuation_head(model)
    with torch.no_grad():
        head.weight.mul_(2.5)
        head.bias.copy_(bias)


def _write_cmvn(path: Path, dim: int, seed: int) -> None:
    """am.mvn in Kaldi nnet text format (AddShift = -mean, Rescale = 1/std) like real models."""
    rng = np.random.default_rng(seed)
    # Log-mel fbank of 16-bit-scaled audio sits around 8–14 with std ≈ 2–4.
    shift = -(rng.uniform(8.0, 14.0, dim))
    scale = 1.0 / rng.uniform(2.0, 4.0, dim)
    fmt = " ".join(f"{v:.6f}" for v in shift)
    fmt2 = " ".join(f"{v:.6f}" for v in scale)
    path.write_text(
        "<Nnet>\n"
        f"<Splice> {dim} {dim}\n[ 0 ]\n"
        f"<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {fmt} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {fmt2} ]\n"
        "</Nnet>\n",
        encoding="utf-8",
    )


def write_model_dir(
    out: Path, config: dict[str, Any], vocab: list[str], seed: int, *, asr: bool
) -> int:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_model(config, len(vocab))
    if asr:
        _bias_predictor(model, seed)
    else:
        _bias_punctuation(model)
    torch.save(model.state_dict(), out / "model.pt")
    (out / "config.yaml").write_text(
        yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    (out / "tokens.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    metas: dict[str, Any] = {
        "init_param": "model.pt",
        "config": "config.yaml",
        "tokenizer_conf": {"token_list": "tokens.json"},
    }
    if "frontend_conf" in config:
        fc = config["frontend_conf"]
        _write_cmvn(out / "am.mvn", fc["n_mels"] * fc["lfr_m"], seed)
        metas["frontend_conf"] = {"cmvn_file": "am.mvn"}
    # configuration.json is what real ModelScope model dirs carry; FunASR resolves
    # file paths from its file_path_metas.
    configuration = {
        "framework": "pytorch",
        "task": "punctuation" if not asr else "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "model_name_in_hub": {"ms": "", "hf": ""},
        "file_path_metas": metas,
        "captiond_generated": True,
    }
    (out / "configuration.json").write_text(json.dumps(configuration, indent=2), encoding="utf-8")
    return sum(p.numel() for p in model.parameters())


def make_test_models(
    out_dir: str | Path, size: str = "tiny", seed: int = 0, *, verbose: bool = False
) -> dict[str, Path]:
    """Write online / offline / punctuation model dirs under out_dir; return their paths.

    Keys: "online", "offline", "punc". Same seed → byte-identical weights.
    """
    if size not in _SIZES:
        raise ValueError(f"size must be one of {sorted(_SIZES)}, not {size!r}")
    out = Path(out_dir)
    s = _SIZES[size]
    vocab = make_vocab(s["vocab"])
    punc_vocab = make_vocab(s["punc_vocab"])
    dirs = {"online": out / ONLINE_DIR, "offline": out / OFFLINE_DIR, "punc": out / PUNC_DIR}
    jobs = [
        ("online", online_config(size), vocab, True),
        ("offline", offline_config(size, vocab), vocab, True),
        ("punc", punc_config(size), punc_vocab, False),
    ]
    for i, (role, config, voc, asr) in enumerate(jobs):
        n = write_model_dir(dirs[role], config, voc, seed + i, asr=asr)
        if verbose:
            print(f"{role:8s} {config['model']:20s} {n / 1e6:8.1f} M params  -> {dirs[role]}")
    return dirs
