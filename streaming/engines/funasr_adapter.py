"""Every FunASR attribute captiond touches, in one module (docs/design.md §5).

FunASR's Python API is not a stable interface: its AutoModel keeps the
frontend and tokenizer in a `kwargs` dict, CT-Transformer's word splitter lives
in a model's `utils`, and the registry of model classes is a module global.
The engines, the punctuation model, the model loader and the model generator
reach those only through the functions here, so a FunASR upgrade is checked
(and, if need be, fixed) in one place.

`check_funasr()` runs once when a model is loaded and fails with a message
naming the FunASR version the equivalence tests passed on. The batched online
runner (`paraformer_batch.py`, `paraformer_layers.py`) runs FunASR's own
layers, so it calls their sub-modules directly; every attribute it reads is
listed in `_ONLINE_STRUCTURE` and checked here when the online model loads.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

# The version the token-equivalence tests (FunASR's own ParaformerStreaming.inference
# as the reference) passed on; pyproject.toml pins the same range.
TESTED_VERSION = "1.4.16"
SUPPORTED_RANGE = ">=1.4.16,<1.5"

# (module, attribute) pairs captiond imports from FunASR.
_REQUIRED = (
    ("funasr", "AutoModel"),
    ("funasr.register", "tables"),
    ("funasr.utils.postprocess_utils", "sentence_postprocess"),
    ("funasr.models.ct_transformer.utils", "split_words"),
    ("funasr.download.name_maps_from_hub", "name_maps_ms"),
    ("funasr.download.name_maps_from_hub", "name_maps_hf"),
    ("funasr.utils.load_utils", "extract_fbank"),
    ("funasr.models.bicif_paraformer.cif_predictor", "cif_wo_hidden"),
    ("funasr.models.bicif_paraformer.cif_predictor", "cif"),
    ("funasr.utils.timestamp_tools", "cif_wo_hidden"),
    ("funasr.utils.timestamp_tools", "ts_prediction_lfr6_standard"),
    ("funasr.utils.load_utils", "load_audio_text_image_video"),
)
# What the batched online runner reads from ParaformerStreaming's modules
# (paraformer_batch.py, paraformer_layers.py): paths from the network, and from
# its first encoder layer, attention decoder layer and FSMN block.
_ONLINE_STRUCTURE = (
    "encoder.encoders0", "encoder.encoders", "encoder.normalize_before", "encoder.after_norm",
    "encoder.embed", "encoder.output_size", "normalize", "eos", "sos", "blank_id",
    "decoder.decoders", "decoder.decoders2", "decoder.decoders3", "decoder.att_layer_num",
    "decoder.num_blocks", "decoder.normalize_before", "decoder.after_norm",
    "decoder.output_layer", "predictor.threshold", "predictor.tail_threshold",
    "predictor.cif_conv1d", "predictor.pad", "predictor.cif_output", "predictor.smooth_factor",
    "predictor.noise_threshold",
)
_ENCODER_LAYER = ("norm1", "norm2", "feed_forward", "in_size", "size", "normalize_before",
                  "self_attn.forward_qkv", "self_attn.forward_fsmn",
                  "self_attn.forward_attention", "self_attn.d_k", "self_attn.h")
_DECODER_LAYER = ("norm1", "norm2", "norm3", "feed_forward", "normalize_before", "dropout",
                  "self_attn.fsmn_block", "self_attn.pad_fn", "self_attn.dropout",
                  "self_attn.kernel_size", "src_attn.forward_qkv",
                  "src_attn.forward_attention", "src_attn.d_k", "src_attn.h", "forward_chunk")
_MISSING = object()


def _path(obj: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        obj = getattr(obj, name, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj


def _check_online_structure(net: Any) -> None:
    for path in _ONLINE_STRUCTURE:
        if _path(net, path) is _MISSING:
            raise _mismatch(f"ParaformerStreaming.{path}")
    for layers, needed, where in ((net.encoder.encoders0, _ENCODER_LAYER, "encoder layer"),
                                  (net.decoder.decoders, _DECODER_LAYER, "decoder layer")):
        for path in needed:
            if len(layers) and _path(layers[0], path) is _MISSING:
                raise _mismatch(f"the streaming {where}'s {path}")


# What a loaded AutoModel must carry, per role.
_MODEL_KWARGS = {"online": ("frontend", "tokenizer"), "offline": (),
                 "punctuation": ("tokenizer",)}


class FunASRMismatch(Exception):
    """The installed FunASR lacks something captiond relies on (raised at load;
    not a RuntimeError, so the loader never mistakes it for a failed download)."""


def _mismatch(what: str) -> FunASRMismatch:
    return FunASRMismatch(
        f"FunASR {installed_version()} does not provide {what}; captiond is tested with "
        f"FunASR {TESTED_VERSION} (supported: funasr{SUPPORTED_RANGE}). "
        f"Install it with `pip install 'funasr{SUPPORTED_RANGE}'`."
    )


def installed_version() -> str:
    try:
        return importlib.import_module("funasr").__version__
    except (ImportError, AttributeError):
        return "(not installed)"


@functools.cache
def check_funasr() -> None:
    """Fail early, naming the expected version, if an import captiond needs is gone."""
    for module, attribute in _REQUIRED:
        try:
            found = getattr(importlib.import_module(module), attribute, None)
        except ImportError:
            found = None
        if found is None:
            raise _mismatch(f"{module}.{attribute}")


def check_model(model: Any, role: str) -> None:
    """A loaded AutoModel has what the engine reads from it for this role."""
    if getattr(model, "model", None) is None or not callable(getattr(model, "generate", None)):
        raise _mismatch("AutoModel.model / AutoModel.generate")
    kwargs = getattr(model, "kwargs", None)
    if not isinstance(kwargs, dict):
        raise _mismatch("AutoModel.kwargs")
    for key in _MODEL_KWARGS.get(role, ()):
        if kwargs.get(key) is None:
            raise _mismatch(f"AutoModel.kwargs[{key!r}] for the {role} model")
    if role == "punctuation":
        # punctuation_batch.py runs CTTransformer.inference's steps itself
        for name in ("punc_list", "punc_forward", "sentence_end_id"):
            if getattr(model.model, name, None) is None:
                raise _mismatch(f"CTTransformer.{name}")
    if role == "online":
        _check_online_structure(model.model)


# ---- loading -----------------------------------------------------------------------

_STDOUT_LOCK = threading.Lock()


@contextlib.contextmanager
def captured_stdout() -> Iterator[io.StringIO]:
    """FunASR prints banners and download errors while it loads; keep them for the log.

    Only model loading uses this (startup, before any lane runs), and the lock
    keeps two loads from swapping each other's stdout. Inference needs no
    capture: loaded with `disable_pbar`, FunASR's generate prints nothing.
    """
    out = io.StringIO()
    with _STDOUT_LOCK, contextlib.redirect_stdout(out):
        yield out


def auto_model(**kwargs: Any) -> Any:
    """`funasr.AutoModel(**kwargs)`, after the version check."""
    check_funasr()
    from funasr import AutoModel

    return AutoModel(**kwargs)


def model_path(model: Any, default: str) -> str:
    """Where AutoModel found (or downloaded) the model's files."""
    return str(model.kwargs.get("model_path", default))


def hub_name_map(hub: str) -> dict[str, str]:
    """FunASR's alias → hub id table (`paraformer-zh-streaming` → `iic/...`)."""
    from funasr.download.name_maps_from_hub import name_maps_hf, name_maps_ms

    return name_maps_hf if hub in ("hf", "huggingface") else name_maps_ms


# ---- a loaded model's parts ----------------------------------------------------------


def network(model: Any) -> Any:
    """The torch `nn.Module` inside an AutoModel."""
    return model.model


def frontend(model: Any) -> Any:
    return model.kwargs["frontend"]


def replace_frontend(model: Any, make: Callable[[Any, str], Any]) -> None:
    """Give this loaded AutoModel the frontend `make(its frontend, its device)`;
    FunASR passes `kwargs["frontend"]` to the model's inference."""
    _set_kwarg(model, "frontend", make(model.kwargs["frontend"], str(model.kwargs["device"])))


def _set_kwarg(model: Any, key: str, value: Any) -> None:
    """Set one of the AutoModel's settings so that it lasts: in `kwargs`, and in
    the snapshot each `generate` restores them from (`_base_kwargs_map`, FunASR ≥ 1.3)."""
    model.kwargs[key] = value
    snapshot = getattr(model, "_base_kwargs_map", None) or {}
    if "kwargs" in snapshot:
        snapshot["kwargs"][key] = value


def tokenizer(model: Any) -> Any:
    return model.kwargs["tokenizer"]


def extract_fbank(*args: Any, **kwargs: Any) -> Any:
    """FunASR's `extract_fbank` (the per-stream reference frontend)."""
    from funasr.utils.load_utils import extract_fbank as funasr_extract_fbank

    return funasr_extract_fbank(*args, **kwargs)


def ids_to_tokens(tok: Any, ids: Sequence[int]) -> tuple[str, ...]:
    return tuple(tok.ids2tokens(ids)) if len(ids) else ()


def render_tokens(tokens: Sequence[str]) -> str:
    """FunASR's own token → text rule (joins CJK, glues BPE pieces, spaces words)."""
    return postprocess_text(list(tokens))[0] if tokens else ""


def generate(model: Any, inputs: Any, **cfg: Any) -> list[dict]:
    """`AutoModel.generate`. Models are loaded with `disable_pbar=True`
    (server/model_loading.py), so it writes nothing to stdout and needs no
    process-wide redirect in the lane threads."""
    _keep_torch_threads(model)
    return model.generate(input=inputs, **cfg)


def _keep_torch_threads(model: Any) -> None:
    """Each `generate` sets torch's thread count on the calling thread to the
    model's `ncpu`, restored from the snapshot taken when it was built: make
    that the count the calling lane set, so the final pass keeps its share."""
    import torch

    _set_kwarg(model, "ncpu", torch.get_num_threads())


def recognise_batch(model: Any, audio: Sequence[np.ndarray], hotword: str | None) -> list[dict]:
    """The offline model over a batch; one result dict per input, `{}` for none."""
    cfg: dict[str, Any] = {"batch_size": len(audio)}
    if hotword is not None:
        cfg["hotword"] = hotword  # SeACo: one space-separated string
    out = generate(model, [np.asarray(a, dtype=np.float32) for a in audio], **cfg)
    # FunASR returns no result at all for a batch in which nothing fired a token.
    return out if len(out) == len(audio) else [{} for _ in audio]


# ---- the SeACo offline model's inference (paraformer_offline.py) --------------------

# What paraformer_offline's inference reads from a SeacoParaformer network.
_SEACO_INFERENCE = ("encode", "calc_predictor", "calc_predictor_timestamp",
                    "_seaco_decode_with_ASF", "generate_hotwords_list", "predictor_name",
                    "beam_search", "ctc", "sos", "eos", "blank_id")


def replace_offline_inference(model: Any, make: Callable[[Any, Callable], Callable]) -> bool:
    """Give a loaded SeACo model the inference `make(network, FunASR's inference)`
    (AutoModel calls the network's `inference` attribute). False, and nothing
    changed, for any other model class."""
    net = network(model)
    method = getattr(type(net), "inference", None)
    if getattr(method, "__qualname__", "") != "SeacoParaformer.inference":
        return False
    for name in _SEACO_INFERENCE:
        if _path(net, name) is _MISSING:
            raise _mismatch(f"SeacoParaformer.{name}")
    net.inference = make(net, method.__get__(net))
    return True


def load_audio(data_in: Any, frontend: Any, audio_fs: int) -> Any:
    """FunASR's input loader, as its inference calls it (arrays pass through)."""
    from funasr.utils.load_utils import load_audio_text_image_video

    return load_audio_text_image_video(data_in, fs=frontend.fs, audio_fs=audio_fs)


def word_timestamps(alphas: Any, peaks: Any, tokens: list[str], offset_ms: float) -> list:
    """FunASR's per-token [start, end] ms from one utterance's upsampled weights."""
    from funasr.utils.timestamp_tools import ts_prediction_lfr6_standard

    return ts_prediction_lfr6_standard(alphas, peaks, tokens, vad_offset=offset_ms)[1]


def postprocess_text(tokens: list[str], stamps: list | None = None) -> tuple:
    """FunASR's tokens → (text, timestamps) rule, as its inference applies it."""
    from funasr.utils.postprocess_utils import sentence_postprocess

    if stamps is None:
        return sentence_postprocess(tokens)[0], None
    text, stamps, _ = sentence_postprocess(tokens, stamps)
    return text, stamps


# ---- punctuation (CT-Transformer) ----------------------------------------------------


def split_words(model: Any, text: str) -> list[str]:
    """CT-Transformer's word split (CJK characters, English words)."""
    from funasr.models.ct_transformer.utils import split_words as funasr_split

    return funasr_split(text, jieba_usr_dict=getattr(model.model, "jieba_usr_dict", None))


def punctuation_ids(model: Any, text: str) -> list[int]:
    """One punctuation class per word of `text` ([] when the model gives none)."""
    result = generate(model, text)[0]
    punc_array = result.get("punc_array")
    return [int(p) for p in punc_array] if punc_array is not None else []


def punctuation_marks(model: Any) -> list[str]:
    return list(model.model.punc_list)


# ---- the offline model's timestamp head ----------------------------------------------


def cif_wo_hidden(alphas: Any, threshold: float) -> Any:
    """FunASR's CIF fires over per-step weights, as its timestamp head computes them."""
    from funasr.models.bicif_paraformer.cif_predictor import cif_wo_hidden as funasr_cif

    return funasr_cif(alphas, threshold)


def cif_with_hidden(hidden: Any, alphas: Any, threshold: float) -> Any:
    """FunASR's CIF over encoder frames: (acoustic embeddings, fires)."""
    from funasr.models.bicif_paraformer.cif_predictor import cif as funasr_cif

    return funasr_cif(hidden, alphas, threshold)


# The token predictors whose `calc_predictor` `paraformer_timestamps.predict_tokens`
# reproduces: CifPredictorV3 under these models' `calc_predictor` (four of five outputs).
_PREDICTOR_WITHOUT_TIMESTAMPS = ("CifPredictorV3",)
_CALC_PREDICTOR_FOUR_OUTPUTS = ("SeacoParaformer.calc_predictor",
                                "BiCifParaformer.calc_predictor")


def batch_invariant_timestamps(model: Any, batched: bool = True) -> None:
    """Make the offline model's timestamp head give each utterance of a batch
    what it gives that utterance alone.

    SeACo's timestamp head (CifPredictorV3, `cnn_blstm` upsampling) feeds a
    batch's padding through its conv and BLSTM (FunASR masks the weights, not
    their input), which moved the last token's stamp of a shorter utterance by
    a frame in a batched final. The head is replaced on this one loaded
    instance (FunASR offers no option): batched with packed sequences where
    `paraformer_timestamps` reproduces it (and `batched`), else one utterance
    at a time. Models without the head (no timestamps) are left as they are.
    With the head, FunASR's own timestamp CIF moves to the host too
    (`timestamps_cif_on_host`), and where the batched head runs, the token
    predictor (`calc_predictor`) no longer runs the head's BLSTM for an output
    FunASR drops (`paraformer_timestamps.predict_tokens`).
    """
    from streaming.engines import paraformer_timestamps

    net = network(model)
    method = getattr(type(net), "calc_predictor_timestamp", None)
    if method is None:
        return
    timestamps_cif_on_host()
    funasrs = method.__get__(net)
    predictor = net.predictor
    if batched and paraformer_timestamps.supports(predictor):
        calc = getattr(type(net), "calc_predictor", None)
        if (type(predictor).__name__ in _PREDICTOR_WITHOUT_TIMESTAMPS
                and getattr(calc, "__qualname__", "") in _CALC_PREDICTOR_FOUR_OUTPUTS):
            def tokens_only(encoder_out, encoder_out_lens):
                return paraformer_timestamps.predict_tokens(predictor, encoder_out,
                                                            encoder_out_lens)

            net.calc_predictor = tokens_only

        def together(encoder_out, encoder_out_lens, token_num):
            return paraformer_timestamps.batched_upsample_timestamps(
                predictor, encoder_out, encoder_out_lens, token_num)

        net.calc_predictor_timestamp = together
        return

    def per_utterance(encoder_out, encoder_out_lens, token_num):
        if encoder_out.shape[0] == 1:
            return funasrs(encoder_out, encoder_out_lens, token_num)
        parts = [
            funasrs(encoder_out[i : i + 1, :n], encoder_out_lens[i : i + 1], token_num[i : i + 1])
            for i, n in enumerate(encoder_out_lens.tolist())
        ]
        return tuple(_pad_cat([p[k] for p in parts]) for k in range(len(parts[0])))

    net.calc_predictor_timestamp = per_utterance


def timestamps_cif_on_host() -> None:
    """FunASR's timestamp code (`ts_prediction_lfr6_standard`) reruns CIF over an
    utterance's weights when their fires do not match its token count, one
    utterance at a time. Give its module `paraformer_timestamps.cif_fires`, the
    same values from a loop on the host instead of kernel launches (process-wide:
    the function is a module global of FunASR's; idempotent)."""
    from funasr.utils import timestamp_tools

    from streaming.engines import paraformer_timestamps

    timestamp_tools.cif_wo_hidden = paraformer_timestamps.cif_fires


def _pad_cat(rows: list[Any]) -> Any:
    """Concatenate (1, L_i, ...) tensors on dim 0, zero-padding dim 1 to the longest."""
    longest = max(r.shape[1] for r in rows)
    out = rows[0].new_zeros((len(rows), longest, *rows[0].shape[2:]))
    for i, r in enumerate(rows):
        out[i, : r.shape[1]] = r[0]
    return out


# ---- building models from a config (the model generator) -----------------------------


def build_registered(class_name: str, **conf: Any) -> Any:
    """Instantiate a registered FunASR model class the way AutoModel.build_model does."""
    check_funasr()
    import funasr  # noqa: F401  (registers the model classes)
    from funasr.register import tables

    return tables.model_classes.get(class_name)(**conf)


def cif_output_layers(net: Any) -> Iterator[Any]:
    """The CIF predictor's firing-weight layers of a Paraformer network."""
    import torch

    for name, module in net.predictor.named_modules():
        if name.endswith("cif_output") and isinstance(module, torch.nn.Linear):
            yield module


def punctuation_head(net: Any) -> Any:
    """CT-Transformer's output layer (one logit per punctuation class)."""
    return net.decoder

