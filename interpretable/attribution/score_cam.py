"""Score-CAM [SC] (METHODS.md section 3), batched across images and channels.

For every image b and channel k: M_bk = the activation A_bk bilinearly upsampled to the
input size, then min-max normalized (a channel whose A_bk is constant gets M_bk = 0, as in
pytorch-grad-cam); s_bk = y_c(x_b * M_bk), the target logit of the masked input;
alpha_b = softmax over k of s_b; map = ReLU(sum_k alpha_bk A_bk).

How the forwards run (the cost is one forward per channel, everything else is small):

- the masked inputs of all (image, channel) pairs are built chunk by chunk, straight from the
  low-resolution activations, and go through the model in chunks of ``batch_size`` that mix
  images, so chunks stay full whatever the number of channels;
- every constant channel of every image has the same masked input, x * 0 = 0, so all of
  them share a single forward (one more row in a chunk);
- channels of one image whose low-resolution maps are equal after min-max normalization
  (e.g. two channels active at the same single location, common in trained networks) have the
  same mask up to float rounding, since upsampling and normalization commute with
  ``a -> alpha a + beta`` (alpha > 0): they share one forward too;
- the masked inputs go through an inference-optimized forward of the model (``optimize``,
  see :mod:`interpretable.inference`: conv+BN folded, on CPU oneDNN's packed weights and
  blocked memory format, elsewhere the weights in the chosen ``memory_format``), built once
  and kept while the model's modules, parameters and buffers stay the same.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checks import Target, check_input, check_target, eval_mode
from ..inference import BuiltForWeights, checked_inference_forward, weights_key
from .cam import BaseCAM

__all__ = ["ScoreCAM"]

_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


class ScoreCAM(BaseCAM):
    """Score-CAM (METHODS.md section 3): softmax over channels of masked-input target logits.

    Args:
        model, layer: as :class:`BaseCAM`.
        batch_size: masked images per forward pass.
        align_corners: for upsampling the masks; ``False`` is this package's convention
            (METHODS.md section 3), ``True`` reproduces pytorch-grad-cam's
            ``UpsamplingBilinear2d``. The final map is always upsampled with ``False``.
        memory_format: "channels_last" or "contiguous" for the masked inputs when they do
            not go through oneDNN's own format; "auto" picks channels-last on CPU (faster
            there, see benchmarks/attribution.py) and contiguous elsewhere.
        optimize: run the masked inputs through an inference-optimized forward (results
            equal to float rounding; it holds a folded copy of the convolution weights until
            the weights change). Building it costs a trace, about a few dozen masked
            forwards: ``"auto"`` builds it on this object's second call with unchanged
            weights, or at once for a call with at least ``AUTO_JOBS`` masked inputs;
            ``True`` at the first call; ``False`` never.
    """

    uses_gradients = False
    #: with ``optimize="auto"``, a single call with this many masked inputs builds the
    #: optimized forward at once (its cost is then a few percent of the call)
    AUTO_JOBS = 4096

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, *,
                 batch_size: int = 128, align_corners: bool = False,
                 memory_format: str = "auto", optimize: bool | str = "auto"):
        super().__init__(model, layer, optimize=optimize)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if memory_format != "auto" and memory_format not in _FORMATS:
            raise ValueError(
                "memory_format must be 'auto', 'channels_last' or 'contiguous', "
                f"got {memory_format!r}"
            )
        self.batch_size = batch_size
        self.align_corners = bool(align_corners)
        self.memory_format = memory_format
        self._fast = BuiltForWeights()  # (optimized forward, its input format)

    def input_format(self, device: torch.device) -> torch.memory_format:
        """The memory format of the masked inputs on ``device`` (see ``memory_format``)."""
        if self.memory_format == "auto":
            return torch.channels_last if device.type == "cpu" else torch.contiguous_format
        return _FORMATS[self.memory_format]

    def _masked_forward(self, sample: Tensor, jobs: int):
        """The forward for ``jobs`` masked inputs like ``sample`` and their memory format
        (in eval mode, no grad)."""
        device = sample.device
        fmt = self.input_format(device)
        if not self.optimize:
            return self.model, fmt
        key = (weights_key(self.model), device, fmt)
        built = self._fast.get(key, lambda: checked_inference_forward(self.model, sample, fmt),
                               now=self.optimize is True or jobs >= self.AUTO_JOBS)
        return (self.model, fmt) if built is None else built

    def masks(self, A: Tensor, size: tuple[int, int]) -> Tensor:
        """All masks M (B, K, H, W) at once (for inspection; the call builds them by chunks)."""
        B, K = A.shape[:2]
        return self._masks(A.flatten(0, 1), size).view(B, K, *size)

    def _masks(self, a: Tensor, size: tuple[int, int]) -> Tensor:
        """Masks (N, H, W) from N low-resolution channels a (N, h, w); constant ones are 0."""
        up = torch.nn.functional.interpolate(a[:, None], size=size, mode="bilinear",
                                             align_corners=self.align_corners)[:, 0]
        flat = up.flatten(1)
        lo = flat.amin(dim=1)
        span = flat.amax(dim=1) - lo
        const = a.flatten(1).amax(dim=1) == a.flatten(1).amin(dim=1)
        scale = torch.where(const | (span <= 0), 0, 1 / torch.where(span > 0, span, 1))
        return (up - lo[:, None, None]) * scale[:, None, None]

    @staticmethod
    def _plan(A: Tensor) -> tuple[Tensor, Tensor, tuple | None]:
        """(constant channels (B, K) bool, distinct non-constant channels as flat b*K + k,
        (duplicates, representatives) or None): what needs a masked forward."""
        flat = A.flatten(2)
        const = flat.amax(dim=2) == flat.amin(dim=2)  # (B, K)
        pairs = (~const).flatten().nonzero()[:, 0]  # non-constant channels, flat b*K + k
        pairs, share = _distinct_maps(flat.flatten(0, 1), pairs, A.shape[1])
        return const, pairs, share

    def masked_inputs(self, x: Tensor, target: Target = None) -> tuple[Tensor, dict[str, int]]:
        """The masked inputs one call on ``x`` runs (N, C, H, W): one per distinct
        non-constant channel, plus one all-zero input shared by the constant channels; and
        ``{"channels", "constant", "duplicates"}`` counts (for cost accounting)."""
        x = check_input(x)
        tgt = check_target(target, x.shape[0])
        with self, eval_mode(self.model), torch.no_grad():
            A, _, _ = self._forward(x, tgt)
        const, pairs, share = self._plan(A)
        K = A.shape[1]
        masks = self._masks(A.flatten(0, 1)[pairs], tuple(x.shape[-2:]))
        inputs = x[torch.div(pairs, K, rounding_mode="floor")] * masks[:, None].to(x.dtype)
        if const.any():
            inputs = torch.cat([inputs, torch.zeros_like(x[:1])])
        return inputs, {"channels": const.numel(), "constant": int(const.sum()),
                        "duplicates": 0 if share is None else int(share[0].numel())}

    def scores(self, x: Tensor, A: Tensor, t: Tensor) -> Tensor:
        """s (B, K): target logit of each masked input x_b * M_bk, in eval mode, no grad."""
        B, K = A.shape[:2]
        size = tuple(x.shape[-2:])
        const, pairs, share = self._plan(A)
        n_const = int(const.sum())
        jobs = pairs.numel() + (1 if n_const else 0)  # + the one shared all-zero input
        with torch.no_grad():
            forward, fmt = self._masked_forward(x[:1], jobs)
        scores = torch.empty(B * K, dtype=A.dtype, device=A.device)
        zero_logits = None
        a_flat = A.flatten(0, 1)
        with torch.no_grad():
            for start in range(0, jobs, self.batch_size):
                idx = pairs[start:start + self.batch_size]
                b = torch.div(idx, K, rounding_mode="floor")
                inp = x[b] * self._masks(a_flat[idx], size)[:, None].to(x.dtype)
                extra = start + self.batch_size > pairs.numel() and n_const > 0
                if extra:  # the shared input of the constant channels rides along
                    inp = torch.cat([inp, x.new_zeros(1, *x.shape[1:])])
                out = forward(inp.contiguous(memory_format=fmt))
                if extra:
                    zero_logits, out = out[-1], out[:-1]
                scores[idx] = out.gather(1, t[b][:, None])[:, 0].to(scores.dtype)
        if share is not None:  # duplicates take their representative's score
            scores[share[0]] = scores[share[1]]
        scores = scores.view(B, K)
        if zero_logits is not None:
            scores = torch.where(const, zero_logits[t].to(scores.dtype)[:, None], scores)
        return scores

    def _cam(self, x: Tensor, A: Tensor, G: Tensor | None, t: Tensor) -> Tensor:
        alpha = torch.softmax(self.scores(x, A, t), dim=1)
        return torch.einsum("bk,bkhw->bhw", alpha, A).clamp_(min=0)


def _distinct_maps(maps: Tensor, pairs: Tensor, K: int) -> tuple[Tensor, tuple | None]:
    """Split non-constant channels ``pairs`` (flat b*K + k into ``maps`` (B*K, h*w)) into
    those that need a forward and ``(duplicates, representatives)``: channels of the same
    image whose normalized low-resolution maps are bitwise equal to an earlier one's."""
    if pairs.numel() < 2:
        return pairs, None
    a = maps[pairs].float()
    lo = a.amin(dim=1, keepdim=True)
    canon = (a - lo) / (a.amax(dim=1, keepdim=True) - lo)  # non-constant: no 0 / 0
    image = torch.div(pairs, K, rounding_mode="floor").to(canon.dtype)[:, None]
    _, inverse = torch.unique(torch.cat([image, canon], dim=1), dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), pairs.numel(), device=pairs.device,
                       dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(pairs.numel(), device=pairs.device), "amin")
    if first.numel() == pairs.numel():
        return pairs, None
    rep = first[inverse]  # (P,) position of each channel's representative in pairs
    dup = rep != torch.arange(pairs.numel(), device=pairs.device)
    return pairs[~dup], (pairs[dup], pairs[rep[dup]])
