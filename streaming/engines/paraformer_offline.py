"""The SeACo offline model's `inference`, reading its results from the device
once per batch instead of utterance by utterance.

FunASR's `SeacoParaformer.inference` ends in a loop over a batch's utterances.
For each it slices the decoder's output by a length held on the device, takes
the argmax and reads it back, builds a device tensor from that list and reads
it back again, slices the timestamp weights by device lengths, and finds the
timestamp fires on the device: seven waits for the device per utterance,
each behind everything queued there. On a GPU shared with the online lane that
is the final pass's host time growing with the batch (docs/design.md §6).

Here the argmax is one kernel over the batch, and the token ids, lengths and
fire flags come back in one copy each. FunASR's own timestamp and text
functions then run per utterance on host data, so the results are FunASR's,
key for key (tests/streaming/engines/test_paraformer_offline.py). An utterance
whose fires do not match its tokens still has its weights rescaled on the
device, as FunASR does, so the sum is the device's own.

Only greedy decoding is replaced: with beam search, an LM or CTC weights,
features as input or an `output_dir`, FunASR's own inference runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from streaming.engines import funasr_adapter, paraformer_timestamps

# FunASR's timestamp code counts a step as fired at this weight or above.
_FIRE = 1.0 - 1e-4


def install(model: Any) -> bool:
    """Replace the loaded model's inference when it is SeACo's; False otherwise."""
    return funasr_adapter.replace_offline_inference(model, _greedy_or_funasrs)


def _greedy_or_funasrs(net: Any, funasrs: Callable) -> Callable:
    def inference(data_in, data_lengths=None, key=None, tokenizer=None, frontend=None,
                  **kwargs):
        if _funasrs_case(net, tokenizer, kwargs):
            return funasrs(data_in, data_lengths, key=key, tokenizer=tokenizer,
                           frontend=frontend, **kwargs)
        return recognise(net, data_in, key, tokenizer, frontend, **kwargs)

    return inference


def _funasrs_case(net: Any, tokenizer: Any, kwargs: dict) -> bool:
    """What only FunASR's inference handles (its own tests for a search, as it makes them)."""
    uses_ctc = kwargs.get("decoding_ctc_weight", 0.0) > 0.00001 and net.ctc is not None
    uses_lm = kwargs.get("lm_weight", 0.0) > 0.00001 and kwargs.get("lm_file") is not None
    return (tokenizer is None or net.beam_search is not None or uses_ctc or uses_lm
            or kwargs.get("output_dir") is not None or kwargs.get("data_type") == "fbank")


def recognise(net: Any, data_in: Any, key: list, tokenizer: Any, frontend: Any,
              **kwargs: Any) -> tuple:
    """FunASR's greedy inference over one batch: ([{key, text[, timestamp]}], meta)."""
    audio = funasr_adapter.load_audio(data_in, frontend, kwargs.get("fs", 16000))
    speech, speech_lengths = funasr_adapter.extract_fbank(
        audio, data_type=kwargs.get("data_type", "sound"), frontend=frontend)
    meta = {"batch_data_time":
            speech_lengths.sum().item() * frontend.frame_shift * frontend.lfr_n / 1000}
    device = kwargs["device"]
    net.hotword_list = net.generate_hotwords_list(kwargs.get("hotword"), tokenizer=tokenizer,
                                                  frontend=frontend)
    encoder_out, encoder_lengths = net.encode(speech.to(device), speech_lengths.to(device))
    if isinstance(encoder_out, tuple):
        encoder_out = encoder_out[0]
    predicted = net.calc_predictor(encoder_out, encoder_lengths)
    embeds, token_lengths = predicted[0], predicted[1].round().long()
    token_counts = token_lengths.tolist()  # FunASR waits here too (its max < 1 test)
    if max(token_counts) < 1:
        return ([],)
    decoder_out = net._seaco_decode_with_ASF(encoder_out, encoder_lengths, embeds,
                                             token_lengths, hw_list=net.hotword_list)
    alphas = fired = None
    if net.predictor_name == "CifPredictorV3":
        _, _, alphas, peaks = net.calc_predictor_timestamp(encoder_out, encoder_lengths,
                                                           token_lengths)
        # FunASR's own comparison, on the device and in the peaks' dtype; as 1.0 and
        # 0.0 on the host its timestamp code finds the same fires.
        fired = (peaks >= _FIRE).cpu().float()
    ids = decoder_out.argmax(dim=-1).tolist()
    drop = {net.eos, net.sos, net.blank_id}
    tokens = [tokenizer.ids2tokens([t for t in ids[i][:count] if t not in drop])
              for i, count in enumerate(token_counts)]
    if alphas is None:
        return [{"key": k, "text": funasr_adapter.postprocess_text(t)[0]}
                for k, t in zip(key, tokens)], meta
    stamps = _word_timestamps(alphas, fired, encoder_lengths.tolist(), tokens,
                              kwargs.get("begin_time", 0))
    results = []
    for k, t, s in zip(key, tokens, stamps):
        text, s = funasr_adapter.postprocess_text(t, s)
        results.append({"key": k, "text": text, "timestamp": s})
    return results, meta


def _word_timestamps(alphas: Any, fired: Any, frames: list[int], tokens: list[list[str]],
                     offset_ms: float) -> list[list]:
    """FunASR's per-token stamps of each utterance, computed on the host.

    Where an utterance's fires miss its token count, FunASR rescales its weights
    on the device and walks the CIF again. Those rescales are queued here for all
    such utterances and read back in one copy; an utterance whose walk then fires
    as FunASR expects is given FunASR's timestamp code on host data that takes
    its matching path. Any other goes to FunASR's code with its device weights."""
    steps = [n * 3 for n in frames]  # the timestamp head upsamples by 3
    # FunASR's test: as many fires as tokens (a trailing "</s>" left out) plus one
    wanted = [len(t) - (bool(t) and t[-1] == "</s>") + 1 for t in tokens]
    fired_np = fired.numpy()  # host flags, counted without a tensor call per utterance
    missed = [i for i, t in enumerate(tokens)
              if t and int(fired_np[i, : steps[i]].sum()) != wanted[i]]
    on_host: dict[int, tuple[Any, Any]] = {}
    if missed:
        rows = []
        for i in missed:
            row = alphas[i][: steps[i]].clone()
            row /= row.sum() / wanted[i]  # FunASR's rescale, on the same device
            rows.append(row)
        for i, row in zip(missed, torch.cat(rows).cpu().split([steps[i] for i in missed])):
            flags = (paraformer_timestamps.cif_fires(row[None], _FIRE)[0] >= _FIRE).float()
            if int(flags.numpy().sum()) == wanted[i]:
                on_host[i] = (row, flags)
    return [funasr_adapter.word_timestamps(
                *on_host.get(i, (alphas[i][: steps[i]], fired[i][: steps[i]])),
                copy.copy(t), offset_ms)
            for i, t in enumerate(tokens)]
