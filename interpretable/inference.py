"""A faster forward for no-grad, eval-mode batches: Score-CAM's masked inputs, the metrics'
curves, the part of a gradient CAM's forward before its layer, FastCAM's saliency.

How: the model is traced with ``torch.fx`` into a graph that shares the model's weights but
has hook-free copies of its leaf modules (so nothing registered on the model fires, and
nothing it holds is deep-copied). Then:

- on CPU with float32 weights, torch's inference passes
  (``torch.fx.experimental.optimization.optimize_for_inference``): conv+BN folding, dropout
  removal, and oneDNN's blocked memory format with the weights packed once, which avoids a
  re-layout of every activation and weight on every call;
- elsewhere (or if that pass fails), conv+BN folding with the weights stored once in the
  requested memory format.

Results equal the model's up to float rounding (tested), and every user builds it through a
check on one input (:func:`checked_inference_forward`, :func:`split_forward`). Models that
``torch.fx`` cannot trace (data-dependent control flow) run unchanged. The model itself is
never modified.

For the CAMs the graph is cut after a layer (:func:`split_at_layer`): tracing goes through
that layer and any tapped layers, so their convolutions are folded too, and the node each of
them returned is recorded while tracing.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["inference_forward", "checked_inference_forward", "weights_key", "BuiltForWeights"]


def weights_key(model: nn.Module) -> tuple:
    """Changes whenever a module, parameter or buffer of ``model`` is replaced or edited."""
    return (tuple(id(m) for m in model.modules()),
            tuple((id(t), t.data_ptr(), t._version)
                  for t in (*model.parameters(), *model.buffers())))


class BuiltForWeights:
    """One object built for a model's current weights (an optimized forward), kept while
    ``key`` (from :func:`weights_key` and whatever else it depends on) stays the same.

    ``get(key, build, now)`` counts the calls made with one key and calls ``build()`` at the
    first of them if ``now``, else at the second, so a one-off call does not pay for the
    build. ``build`` runs at most once per key: a ``None`` result is remembered as "cannot
    be built" and not retried. A new key drops the old object before building again.
    """

    __slots__ = ("key", "value", "calls")

    def __init__(self) -> None:
        self.key: object = None
        self.value: Any = None  # None: not built yet, False: cannot be built
        self.calls = 0

    def get(self, key: object, build: Callable[[], Any], now: bool = False) -> Any | None:
        """The object for ``key``, or None (not built yet, or cannot be built)."""
        if key != self.key:
            self.key, self.value, self.calls = key, None, 0
        self.calls += 1
        if self.value is None and (now or self.calls >= 2):
            built = build()
            self.value = False if built is None else built
        return self.value or None


def _without_hooks(module: nn.Module) -> nn.Module:
    """A shallow copy sharing parameters and buffers, with no hooks of any kind."""
    clone = copy.copy(module)
    for name, value in vars(module).items():
        if "hook" in name and isinstance(value, dict):
            setattr(clone, name, type(value)())
    return clone


def _trace(model: nn.Module) -> torch.fx.GraphModule | None:
    try:
        with _hooks_silenced(model):  # the traced graph is hook-free by design
            gm = torch.fx.symbolic_trace(model)
    except Exception:  # untraceable model: the caller keeps the plain forward
        return None
    modules = dict(gm.named_modules())
    for i, node in enumerate(gm.graph.nodes):
        if node.op == "call_module":
            name = f"_leaf_{i}"
            gm.add_submodule(name, _without_hooks(modules[node.target]))
            node.target = name
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


class _Conv2d(nn.Module):
    """A plain convolution with fixed (folded) weights."""

    def __init__(self, conv: nn.Conv2d, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.weight, self.bias = weight, bias
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


def _fold(gm: torch.fx.GraphModule, memory_format: torch.memory_format) -> torch.fx.GraphModule:
    """Fold each eval-mode BatchNorm2d into the Conv2d that alone feeds it."""
    modules = dict(gm.named_modules())
    graph = gm.graph
    for node in list(graph.nodes):
        conv = modules.get(node.target) if node.op == "call_module" else None
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros":
            continue
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else None
        users = list(node.users)
        bn = modules.get(users[0].target) if len(users) == 1 and users[0].op == "call_module" \
            else None
        fold = (type(bn) is nn.BatchNorm2d and users[0].args == (node,) and not bn.training
                and bn.running_mean is not None)
        if fold:
            weight, bias = fuse_conv_bn_weights(weight, bias, bn.running_mean, bn.running_var,
                                                bn.eps, bn.weight, bn.bias)
            weight, bias = weight.detach(), bias.detach()
        gm.add_submodule(node.target, _Conv2d(conv, weight.contiguous(memory_format=memory_format),
                                              bias))
        if fold:
            users[0].replace_all_uses_with(node)
            graph.erase_node(users[0])
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def inference_forward(model: nn.Module, device: torch.device,
                      memory_format: torch.memory_format = torch.contiguous_format
                      ) -> tuple[Callable[[Tensor], Tensor], torch.memory_format]:
    """A no-grad forward equal to ``model``'s in eval mode, built for speed (see module doc).

    Returns the forward and the memory format its inputs should have. Call it with the model
    in eval mode and use the forward only under ``torch.no_grad()``.
    """
    with torch.no_grad():
        gm = _trace(model)
        if gm is None:
            return model, memory_format
        params = list(gm.parameters())
        if device.type == "cpu" and torch.backends.mkldnn.is_available() \
                and all(p.dtype == torch.float32 for p in params):
            try:
                from torch.fx.experimental.optimization import optimize_for_inference

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # deprecation notes inside torch
                    return optimize_for_inference(gm), torch.contiguous_format
            except Exception:  # an op the pass does not know: fold only
                pass
        return _fold(gm, memory_format), memory_format


def _close(got, ref) -> bool:
    """Equal up to float rounding (BN folding, another summation order)."""
    return (isinstance(got, Tensor) and isinstance(ref, Tensor) and got.shape == ref.shape
            and bool((got - ref).abs().max() <= 1e-4 * ref.abs().max() + 1e-6))


def checked_inference_forward(model: nn.Module, sample: Tensor,
                              memory_format: torch.memory_format = torch.contiguous_format
                              ) -> tuple[Callable[[Tensor], Tensor], torch.memory_format]:
    """:func:`inference_forward` if it gives the model's output on ``sample[:1]``, else
    ``(model, memory_format)``: any failure to build or run it leaves the plain forward,
    which is always correct. Call in eval mode under ``torch.no_grad()``."""
    try:
        fast, fast_fmt = inference_forward(model, sample.device, memory_format)
    except Exception:
        return model, memory_format
    if fast is model:
        return model, memory_format
    one = sample[:1]
    try:
        ok = _close(fast(one.contiguous(memory_format=fast_fmt)),
                    model(one.contiguous(memory_format=memory_format)))
    except Exception:
        ok = False
    return (fast, fast_fmt) if ok else (model, memory_format)


class _LayerOutputTracer(torch.fx.Tracer):
    """Traces through every module (so the whole graph can be optimized) and records the
    graph node that each of ``layers`` returned, at its last call."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self._layers = layers
        self.outputs: dict[int, torch.fx.Node] = {}

    def call_module(self, m: nn.Module, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        for i, layer in enumerate(self._layers):
            if m is layer:
                if isinstance(out, torch.fx.Proxy):
                    self.outputs[i] = out.node
                else:  # not a single tensor: cannot cut there
                    self.outputs.pop(i, None)
        return out


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


@contextmanager
def _hooks_silenced(model: nn.Module) -> Iterator[None]:
    """Forward hooks of ``model``'s modules do not fire inside (torch.fx would call them with
    proxies while tracing); every hook is back in place on exit, also on error."""
    saved = []
    try:
        for m in model.modules():
            for attr in _HOOK_DICTS:
                hooks = getattr(m, attr, None)
                if hooks:
                    saved.append((m, attr, hooks))
                    setattr(m, attr, type(hooks)())
        yield
    finally:
        for m, attr, hooks in saved:
            setattr(m, attr, hooks)


def split_at_layer(model: nn.Module, layer: nn.Module, taps: list[nn.Module] | tuple = ()
                   ) -> tuple[torch.fx.GraphModule, torch.fx.GraphModule] | None:
    """Cut ``model`` after the last call of ``layer``: ``pre(x) -> (A, *live, *tapped)`` and
    ``post(A, *live) -> logits``, where ``live`` are earlier values still needed after the cut
    and ``tapped`` the outputs (last call) of the modules ``taps``, which must run before the
    cut (or be ``layer`` itself).

    Both share the model's modules. None if the model cannot be traced, never calls
    ``layer`` or a tap, or calls a tap only after the cut.
    """
    taps = list(taps)
    tracer = _LayerOutputTracer([layer, *taps])
    try:
        with _hooks_silenced(model):
            graph = tracer.trace(model)
    except Exception:  # untraceable: the caller keeps the hook-based forward
        return None
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    found = [tracer.outputs.get(i) for i in range(1 + len(taps))]
    # a layer that returns its input unchanged (or was never called) has no node to cut at
    if any(n is None or n.op == "placeholder" for n in found):
        return None
    cut_at = index[found[0]]
    tap_at = [index[n] for n in found[1:]]
    if any(i > cut_at for i in tap_at):
        return None
    pre_nodes, post_nodes = nodes[:cut_at + 1], nodes[cut_at + 1:]
    cut, inside = pre_nodes[-1], set(pre_nodes)
    live = [n for n in pre_nodes[:-1] if any(u not in inside for u in n.users)]

    pre_graph, env = torch.fx.Graph(), {}
    for n in pre_nodes:
        env[n] = pre_graph.node_copy(n, lambda a: env[a])
    pre_graph.output((env[cut], *(env[n] for n in live), *(env[nodes[i]] for i in tap_at)))

    post_graph = torch.fx.Graph()
    env = {cut: post_graph.placeholder("activation")}
    for j, n in enumerate(live):
        env[n] = post_graph.placeholder(f"live_{j}")
    for n in post_nodes:
        env[n] = post_graph.node_copy(n, lambda a: env[a])
    return torch.fx.GraphModule(model, pre_graph), torch.fx.GraphModule(model, post_graph)


def split_forward(model: nn.Module, layer: nn.Module, sample: Tensor,
                  taps: list[nn.Module] | tuple = ()) -> tuple[Callable, Callable] | None:
    """``(pre, post)`` for gradient CAMs: ``pre(x) -> (A, *live, *tapped)`` is the
    inference-optimized forward up to ``layer`` (no grad needed there; ``tapped`` are the
    outputs of ``taps``, see :func:`split_at_layer`), ``post(A, *live)`` the rest on the
    model's own modules.

    Checked once on ``sample`` (one image) against the model, logits and tapped outputs;
    None if the model cannot be split or the check fails, and the caller keeps the
    hook-based forward.
    """
    taps = list(taps)
    parts = split_at_layer(model, layer, taps)
    if parts is None:
        return None
    pre, post = parts
    n_taps = len(taps)
    seen: dict[int, Tensor] = {}

    def keep(i):
        def hook(module, inputs, output):
            seen[i] = output.detach().clone() if isinstance(output, Tensor) else output
        return hook

    with torch.no_grad():
        with _hooks_silenced(model):
            fast, fmt = inference_forward(pre, sample.device)
        handles = [t.register_forward_hook(keep(i)) for i, t in enumerate(taps)]
        try:
            ref = model(sample)
            outs = fast(sample.contiguous(memory_format=fmt))
            got = post(*outs[:len(outs) - n_taps])
        except Exception:
            return None
        finally:
            for h in handles:
                h.remove()

        if not _close(got, ref):
            return None
        if n_taps and not all(_close(outs[len(outs) - n_taps + i], seen.get(i))
                              for i in range(n_taps)):
            return None

    def pre_forward(x: Tensor):
        return fast(x.contiguous(memory_format=fmt))
    return pre_forward, post
