"""The online pass's CIF integrate-and-fire for a batch (docs/design.md §6).

FunASR's `CifPredictorV2.forward_chunk` walks each stream's frames one by one:
it adds each frame's weight to a running integrate, and when that reaches the
threshold it fires a token whose embedding is the weighted sum of the frames
since the last fire. Walked as a batch on the device, that is some 25 operator
calls per frame, and on a GPU each is host time (bench/RESULTS.md, tenth session).

Here the walk is split in two:
- the integrate is a scalar per stream: its recurrence runs on the host over
  float32 arrays (`walk`), which round every addition and subtraction exactly as
  the device does, so the fires and weights are FunASR's;
- the embeddings are sums of weighted frames, and each token's sum must add its
  frames in FunASR's order to give its values: `embed` lays out every token's
  terms and adds them in step with one another, as many steps as the longest
  token has frames (a few, where FunASR's walk takes one step per frame). A
  frame of weight 0 (silence) is left out: adding its zero changes no value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streaming.engines.paraformer_pool import to_device


@dataclass
class Walk:
    """The host side of CIF over (B, L) steps: per step, `add` weighs the frame into
    the current token (at a fire, the part that completes it), `rest` the part that
    starts the next token, `fired` marks fires; `integrate` (B,) is carried on."""

    add: np.ndarray
    rest: np.ndarray
    fired: np.ndarray
    integrate: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return self.fired.sum(axis=1)


def walk(threshold: float, alphas: np.ndarray, valid: np.ndarray) -> Walk:
    """The integrate's recurrence, vectorised over rows: FunASR's float32 operations
    in its order. alphas (B, L) float32, valid (B, L) bool (invalid steps are skipped)."""
    th = np.float32(threshold)
    batch, length = alphas.shape
    integrate = np.zeros(batch, np.float32)
    add = np.empty((batch, length), np.float32)
    rest = np.empty((batch, length), np.float32)
    fired = np.empty((batch, length), bool)
    for t in range(length):
        alpha, ok = alphas[:, t], valid[:, t]
        fire = ok & ~(alpha + integrate < th)
        summed = integrate + alpha
        rest[:, t] = summed - th
        add[:, t] = np.where(fire, th - integrate, alpha)
        fired[:, t] = fire
        integrate = np.where(fire, rest[:, t], np.where(ok, summed, integrate))
    return Walk(add, rest, fired, integrate)


def walk_offline(threshold: float, alphas: np.ndarray) -> tuple[Walk, np.ndarray]:
    """The recurrence of FunASR's offline CIF (`bicif_paraformer.cif_predictor.cif`),
    whose fires complete a token with `1 - integrate` and carry `alpha - that`,
    vectorised over rows; also its fires output, the integrate after each step's
    weight. alphas (B, T) float32; every step counts (FunASR masks weights instead)."""
    th, one = np.float32(threshold), np.float32(1.0)
    batch, length = alphas.shape
    integrate = np.zeros(batch, np.float32)
    add = np.empty((batch, length), np.float32)
    rest = np.empty((batch, length), np.float32)
    fired = np.empty((batch, length), bool)
    sums = np.empty((batch, length), np.float32)
    for t in range(length):
        alpha = alphas[:, t]
        completion = one - integrate
        integrate = integrate + alpha
        sums[:, t] = integrate
        fire = integrate >= th
        integrate = np.where(fire, integrate - one, integrate)
        add[:, t] = np.where(fire, completion, alpha)
        rest[:, t] = alpha - add[:, t]
        fired[:, t] = fire
    return Walk(add, rest, fired, integrate), sums


def cif_tokens(hidden: Tensor, alphas: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """FunASR's offline `cif(hidden, alphas, threshold)`: (B, N, D) float32 token
    embeddings, N the largest rounded weight sum, zero padded, and the (B, T) fires.

    Its values, with a walk on the host and a few additions per token on the device
    instead of a dozen kernel launches per frame. (Where a row fires more tokens than
    its rounded sum allows, FunASR fails; here N grows to hold them.)"""
    batch, length, _ = hidden.shape
    device = hidden.device
    labels = int(torch.round(alphas.sum(-1)).int().max()) if batch else 0  # FunASR's N
    weights = alphas.detach().to("cpu", torch.float32).numpy()
    w, sums = walk_offline(threshold, weights)
    counts = w.counts
    t = terms(w, np.ones((batch, length), bool))
    width = max(labels, int(counts.max(initial=0)))
    on = terms_on(device, t)  # every copy before the first kernel
    fired, fires = to_device(device, _fired(t, counts), sums)
    return _fired_tokens(embed(hidden.float(), on), fired, width), fires


@dataclass
class Terms:
    """Every token's weighted frames, laid out for `embed`: token n's sum adds, in
    order, weight * hidden[frame] of its terms, the first added to zero unless it is
    `fresh` (a fire's rest, which starts the sum), as in FunASR's walk. Tokens are
    ranked by their number of terms, most first, so the tokens that have an s-th
    term are the first `active[s]` ranks; `frame` and `weight` (flat, frames as
    indices into the (B * L) frames) hold the s = 0 terms of every rank, then the
    s = 1 terms, and so on. Rank n is token `token[n]` of row `row[n]`."""

    frame: np.ndarray
    weight: np.ndarray
    active: np.ndarray
    fresh: np.ndarray
    row: np.ndarray
    token: np.ndarray
    tokens: int  # per row, the carried part (token counts[b]) included


def terms(w: Walk, valid: np.ndarray) -> Terms:
    """Each step of a row adds its frame to the token being integrated; a fire also
    starts the next token with the frame's rest."""
    batch, length = valid.shape
    # Two slots per step: the frame's part of the current token, then, at a fire,
    # its rest as the first term of the next token.
    weight = np.stack((w.add, w.rest), axis=2).reshape(batch, 2 * length)
    # A frame of weight 0 adds a zero, which changes no sum (only, at most, a zero's
    # sign): silent frames are skipped, so a token has as many terms as frames it spans.
    present = np.stack((valid, w.fired), axis=2).reshape(batch, 2 * length) & (weight != 0)
    before = np.cumsum(w.fired, axis=1) - w.fired  # fires before each step
    token_of = np.stack((before, before + 1), axis=2).reshape(batch, 2 * length)
    rows, slots = np.nonzero(present)  # row-major: each row's slots in step order
    tokens = token_of[rows, slots]
    starts = np.ones(len(rows), bool)
    starts[1:] = (rows[1:] != rows[:-1]) | (tokens[1:] != tokens[:-1])
    which = np.cumsum(starts) - 1  # each term's token, numbered in order
    order = np.arange(len(rows))
    position = order - np.maximum.accumulate(np.where(starts, order, 0))
    sizes = np.bincount(which, minlength=int(starts.sum()))
    rank = np.empty_like(sizes)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(sizes))
    laid = np.lexsort((rank[which], position))  # by term position, then by token rank
    first = np.flatnonzero(starts)[np.argsort(rank)]  # each rank's first term
    # Token counts[b] (the carried part) exists in every row, with terms or without.
    carried = before[:, -1] + w.fired[:, -1] if length else np.zeros(batch, np.int64)
    return Terms(
        frame=(rows * length + slots // 2)[laid], weight=weight[rows, slots][laid],
        active=np.bincount(position), fresh=(slots[first] % 2 == 1), row=rows[first],
        token=tokens[first], tokens=int(max(tokens.max(initial=0), carried.max(initial=0))) + 1)


@dataclass
class DeviceTerms:
    """`Terms` on the device (`active` and `tokens` stay host numbers)."""

    frame: Tensor
    weight: Tensor
    fresh: Tensor
    row: Tensor
    token: Tensor
    active: list[int]
    tokens: int


def terms_on(device: torch.device, t: Terms) -> DeviceTerms:
    frame, weight, fresh, row, token = to_device(
        device, t.frame, t.weight, t.fresh, t.row, t.token)
    return DeviceTerms(frame, weight, fresh, row, token, t.active.tolist(), t.tokens)


def embed(hidden: Tensor, t: DeviceTerms) -> Tensor:
    """(B, K, D) token sums on hidden's device, in FunASR's order of additions; each
    term's product is made once, and step s adds to the `active[s]` tokens that have
    an s-th term (a slice: they are ranked first)."""
    batch, length, dim = hidden.shape
    out = torch.zeros(batch, t.tokens, dim, dtype=hidden.dtype, device=hidden.device)
    if not t.active:
        return out
    frames = hidden.reshape(batch * length, dim)
    start = t.active[0]
    product = frames[t.frame[:start]] * t.weight[:start, None]
    acc = torch.where(t.fresh[:, None], product, product + 0.0)  # FunASR: zeros + the product
    for active in t.active[1:]:
        end = start + active
        acc[:active] += frames[t.frame[start:end]] * t.weight[start:end, None]
        start = end
    out[t.row, t.token] = acc
    return out


def _fired(t: Terms, counts: np.ndarray) -> np.ndarray:
    """(B, tokens) which of a row's token sums it fired (the carried part did not)."""
    return np.arange(t.tokens)[None, :] < counts[:, None]


def _fired_tokens(sums: Tensor, fired: Tensor, width: int) -> Tensor:
    """The fired token sums, zeros elsewhere, cut or zero-padded to `width` tokens."""
    tokens = torch.where(fired[..., None], sums, 0.0)[:, :width]
    if tokens.shape[1] < width:
        tokens = torch.nn.functional.pad(tokens, (0, 0, 0, width - tokens.shape[1]))
    return tokens


def cif_fire(
    threshold: float, hidden: Tensor, alphas: np.ndarray, valid: np.ndarray,
) -> tuple[Tensor, np.ndarray, Tensor, Tensor]:
    """Integrate and fire over time for a batch: FunASR's scalar walk, its values.

    hidden (B, L, D) float32 on the device, alphas (B, L) float32 and valid (B, L)
    bool on the host. Returns the fired tokens' embeddings compacted to the left
    (B, L, D, zero padded), the token counts (B,) on the host, and the integrate
    (B,) and hidden (B, D) carried to the next chunk.
    """
    w = walk(threshold, alphas, valid)
    counts = w.counts
    t = terms(w, valid)
    batch, length, _ = hidden.shape
    device = hidden.device
    on = terms_on(device, t)  # every copy before the first kernel
    carry, integrate, fired = to_device(
        device, np.stack((np.arange(batch), counts)), w.integrate, _fired(t, counts))
    sums = embed(hidden, on)
    carried = sums[carry[0], carry[1]]
    carried = torch.where((integrate > 0.0)[:, None], carried / integrate[:, None], carried)
    return _fired_tokens(sums, fired, length), counts, integrate, carried
