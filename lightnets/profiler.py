"""Multiply-add profiler: totals, per-layer-type and per-module breakdowns of a model.

Units: one multiply-add = one MAC = one fvcore "flop". Two totals are reported:

* **conv+FC** — convolutions and fully connected layers only, bias adds excluded. This is what the
  papers count (MobileNet v1's "Mult-Adds", ShuffleNet's "FLOPs" = conv + FC mult-adds).
* **all ops** — everything fvcore has a formula for: conv + FC, plus BatchNorm (2 per element with
  affine weights, 1 without; it folds into the conv at deployment), adaptive average pooling
  (1 per input element) and norm / upsample layers. This is fvcore's ``FlopCountAnalysis.total()``.

Activations and shape ops (ReLU, cat, flatten, dropout, ...) are 0 in both. fvcore has no formula
for max / average pooling, elementwise add or hardtanh (ReLU6): they count 0 as well, and are
returned in ``Profile.skipped_ops`` instead of being logged as warnings.
``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add of convolutions and
matrix products only (bias adds, BN, pooling, activations = 0), so its total is exactly 2× conv+FC;
tests/test_profiler.py checks that, and the closed-form formulas, on every family; tests/expect/registered_models.json
records every registered model's count.

>>> import lightnets
>>> result = lightnets.profile(lightnets.create_model("mobilenet_v1_100"), (3, 224, 224))
>>> round(result.total_macs / 1e6), result.params
(569, 4231976)
>>> [row["type"] for row in result.by_type]
['pointwise 1x1', 'depthwise 3x3', 'conv 3x3', 'fully connected', 'other']

Its command line is ``python -m lightnets.flops`` (:mod:`lightnets.cli.flops`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, Sequence

import torch
from torch import nn

from .tables import FORMATS, Column, check_format  # noqa: F401 (FORMATS: lightnets.profiler.FORMATS, as before)
from .tables import render_rows as render_table

Ops = Literal["conv+fc", "all"]

# fvcore operator names (its handle table) that are convolutions or fully connected layers.
CONV_FC_OPS = frozenset({"conv", "linear", "addmm", "matmul", "bmm", "einsum"})
OTHER = "other"


def layer_type(module: nn.Module) -> str:
    """The cost class of a layer: ``conv 3x3``, ``depthwise 3x3``, ``pointwise 1x1``, ``grouped 1x1``,
    ``grouped conv 3x3``, ``fully connected`` or ``other`` (BN, pooling, containers, ...).

    >>> layer_type(nn.Conv2d(32, 32, 3, groups=32)), layer_type(nn.Conv2d(240, 60, 1, groups=3))
    ('depthwise 3x3', 'grouped 1x1')
    """
    if isinstance(module, nn.Linear):
        return "fully connected"
    if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return OTHER
    kernel = "x".join(str(k) for k in module.kernel_size)
    is_1x1 = all(k == 1 for k in module.kernel_size)
    if module.groups == 1:
        return "pointwise 1x1" if is_1x1 else f"conv {kernel}"
    if module.groups == module.in_channels:
        return f"depthwise {kernel}"
    return "grouped 1x1" if is_1x1 else f"grouped conv {kernel}"


@dataclass(frozen=True)
class Profile:
    """Cost of one forward pass on a single image.

    ``by_type`` rows have the keys ``type, macs, params, macs_pct, params_pct``; ``by_module`` rows
    (every module, parents before children) have ``module, depth, type, macs, params, macs_pct,
    params_pct``. Their MACs count the operators chosen by ``ops`` and their shares are of ``macs``.
    """

    input_size: tuple[int, ...]
    ops: Ops
    total_macs: int  # conv + FC: the papers' count
    total_macs_all: int  # every operator fvcore has a formula for
    params: int
    by_type: list[dict[str, Any]]
    by_module: list[dict[str, Any]]
    skipped_ops: dict[str, int]  # operator -> calls that fvcore has no formula for (counted as 0)

    @property
    def macs(self) -> int:
        """The total the breakdowns are shares of (conv+FC or all ops, as chosen by ``ops``)."""
        return self.total_macs if self.ops == "conv+fc" else self.total_macs_all

    def summary(self) -> str:
        return (f"{_size(self.input_size)}: {self.total_macs / 1e6:,.2f} MMACs conv+FC, "
                f"{self.total_macs_all / 1e6:,.2f} MMACs all ops, {self.params:,} params")

    def render(self, by_type: bool = True, depth: Optional[int] = None, fmt: str = "table") -> str:
        """The by-type table, or the module tree down to ``depth`` (modules with neither MACs nor
        params left out), as table / md / csv / json."""
        macs_header = "MMACs conv+FC" if self.ops == "conv+fc" else "MMACs all ops"
        if by_type:
            columns = [(key, macs_header if key == "macs" else header) for key, header in TYPE_COLUMNS]
            total = {"type": "total", "macs": self.macs, "params": self.params, "macs_pct": 100.0, "params_pct": 100.0}
            return render_rows(self.by_type, columns, fmt, footer=total)
        columns = [(key, macs_header if key == "macs" else header) for key, header in MODULE_COLUMNS]
        # Activations, dropout, identities (and pooling under conv+FC) cost nothing here: leave them out.
        rows = [row for row in self.by_module
                if (depth is None or row["depth"] <= depth) and (row["macs"] or row["params"] or not row["depth"])]
        return render_rows(rows, columns, fmt)


def profile(model: nn.Module, input_size: Optional[Sequence[int]] = None, ops: Ops = "conv+fc") -> Profile:
    """Profile ``model`` on one image of ``input_size`` = (C, H, W) (default: its ``pretrained_cfg``'s).

    ``ops="conv+fc"`` (the papers' convention) or ``"all"`` (fvcore's) chooses what the breakdowns
    count; both totals are always reported. One fvcore trace, in eval mode.

    >>> from lightnets import create_model
    >>> result = profile(create_model("shufflenet_g3"))
    >>> round(result.total_macs / 1e6), sorted(result.skipped_ops)
    (137, ['aten::add', 'aten::avg_pool2d', 'aten::max_pool2d'])
    """
    _check_ops(ops)
    if input_size is None:
        input_size = getattr(model, "pretrained_cfg", {}).get("input_size")
        if input_size is None:
            raise ValueError("input_size is required for a model without pretrained_cfg['input_size']")
    input_size = _check_input_size(input_size)
    analysis = _fvcore_analysis(model, input_size)
    counted = CONV_FC_OPS if ops == "conv+fc" else None
    macs_by_module = {
        name: sum(n for op, n in by_op.items() if counted is None or op in counted)
        for name, by_op in analysis.by_module_and_operator().items()
    }
    by_op = analysis.by_operator()
    total_macs = int(sum(n for op, n in by_op.items() if op in CONV_FC_OPS))
    total_macs_all = int(sum(by_op.values()))
    params = sum(p.numel() for p in model.parameters())
    total = total_macs if ops == "conv+fc" else total_macs_all

    def shares(macs: int, n_params: int) -> dict[str, Any]:
        return {"macs": int(macs), "params": n_params,
                "macs_pct": round(100 * macs / total, 4) if total else 0.0,
                "params_pct": round(100 * n_params / params, 4) if params else 0.0}

    by_module, type_macs, type_params = [], {}, {}
    for name, module in model.named_modules():
        kind = layer_type(module)
        n_params = sum(p.numel() for p in module.parameters())
        macs = macs_by_module.get(name, 0)
        if kind != OTHER:
            type_macs[kind] = type_macs.get(kind, 0) + macs
            type_params[kind] = type_params.get(kind, 0) + n_params
        label = kind if kind != OTHER else type(module).__name__
        by_module.append({"module": name, "depth": name.count(".") + 1 if name else 0, "type": label,
                          **shares(macs, n_params)})
    # "other" is the remainder, so the rows always sum to the totals (functional ops included).
    type_macs[OTHER] = total - sum(type_macs.values())
    type_params[OTHER] = params - sum(type_params.values())
    order = sorted(type_macs, key=lambda kind: (kind == OTHER, -type_macs[kind], -type_params[kind]))
    by_type = [{"type": kind, **shares(type_macs[kind], type_params[kind])} for kind in order]
    return Profile(input_size, ops, total_macs, total_macs_all, params, by_type, by_module,
                   dict(sorted(analysis.unsupported_ops().items())))


def count_macs(model: nn.Module, input_size: Sequence[int], ops: Ops = "conv+fc") -> int:
    """Multiply-adds of one forward pass on a single image of ``input_size`` = (C, H, W).

    A model on the meta device (built under ``torch.device("meta")``: no weight allocated) is counted from its
    layers' shapes, conv + FC only, without running any arithmetic; the count is the one fvcore gives the same
    model on the CPU.

    >>> from lightnets import create_model
    >>> round(count_macs(create_model("mobilenet_v1_100"), (3, 224, 224)) / 1e6)
    569
    >>> with torch.device("meta"):
    ...     vgg = create_model("vgg16")
    >>> round(count_macs(vgg, (3, 224, 224)) / 1e6)
    15470
    """
    _check_ops(ops)
    input_size = _check_input_size(input_size)
    param = next(model.parameters(), None)
    if param is not None and param.is_meta:
        if ops != "conv+fc":
            raise ValueError(f"{type(model).__name__} is on the meta device, where only ops='conv+fc' can be counted "
                             "(fvcore's trace, which counts the other ops, needs real tensors): build it on the CPU")
        return _meta_conv_fc_macs(model, input_size)
    by_op = _fvcore_analysis(model, input_size).by_operator()
    return int(sum(n for op, n in by_op.items() if ops == "all" or op in CONV_FC_OPS))


def _meta_conv_fc_macs(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Conv + FC multiply-adds of a model on the meta device, where no weight is allocated and no arithmetic runs
    (fvcore's jit trace cannot run there): torch's ``FlopCounterMode`` counts 2 FLOPs per multiply-add of
    convolutions and matrix products, bias adds excluded, which is fvcore's conv+FC count (tests/test_profiler.py
    checks both agree on every family)."""
    from torch.utils.flop_counter import FlopCounterMode

    # BatchNorm keeps shapes and has no conv + FC MACs, and on the meta device it runs a slow Python
    # decomposition (4× the rest of the pass): skip its arithmetic while counting.
    norms = [layer for layer in model.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)]
    own_forward = {layer: layer.__dict__.get("forward") for layer in norms}
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        for layer in norms:
            layer.forward = _unchanged
        with counter, torch.no_grad():
            model.eval()(torch.zeros(1, *input_size, device="meta"))
    finally:
        for layer, forward in own_forward.items():
            if forward is None:
                del layer.forward
            else:
                layer.forward = forward
        model.train(was_training)
    return counter.get_total_flops() // 2


def _unchanged(x: torch.Tensor) -> torch.Tensor:
    return x


def _check_ops(ops: str) -> None:
    if ops not in ("conv+fc", "all"):
        raise ValueError(f"ops must be 'conv+fc' or 'all', got {ops!r}")


def _check_input_size(input_size: Sequence[int]) -> tuple[int, ...]:
    size = tuple(input_size)
    if not size or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
        raise ValueError(f"input_size must be (C, H, W) of positive integers, got {input_size!r}")
    return size


def _fvcore_analysis(model: nn.Module, input_size: tuple[int, ...]):
    # fvcore's import warns that torch.jit.script is deprecated, and its jit trace raises
    # Deprecation/Tracer warnings on recent torch: none of that is the user's business.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        param = next(model.parameters(), None)
        device = param.device if param is not None else None
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.get_default_dtype()
        if param is not None and hasattr(model, "check_batch_memory") and len(input_size) == 3:
            # Before the input is allocated: at 10⁵ px the image alone would not fit.
            model.check_batch_memory((1, *input_size), dtype.itemsize, param.device.type)
        inputs = torch.zeros(1, *input_size, device=device, dtype=dtype)
        # forward() skips this check while tracing: without it, fvcore would count an input the model refuses.
        if hasattr(model, "check_input"):
            model.check_input(inputs)
        was_training = model.training
        model.eval()
        try:
            analysis = FlopCountAnalysis(model, inputs)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            # A permutation of channels, like the view/transpose it replaces that fvcore already ignores:
            # zero MACs by definition, not an operator fvcore is missing a formula for.
            analysis.set_op_handle("aten::channel_shuffle", None)
            analysis.total()  # trace now, while warnings are silenced and the model is in eval mode
        except Exception as err:
            raise RuntimeError(
                f"fvcore could not trace {type(model).__name__} on input {_size(input_size)}: {err}"
            ) from err
        finally:
            model.train(was_training)
    return analysis


# ---------------------------------------------------------------------------------------------
# Rendering: one column spec per table, four formats
# ---------------------------------------------------------------------------------------------

# (key, header) — numbers are right-aligned and shown in human units in table / md.
TYPE_COLUMNS = (("type", "layer type"), ("macs", "MMACs"), ("macs_pct", "% MACs"),
                ("params", "params"), ("params_pct", "% params"))
MODULE_COLUMNS = (("module", "module"), ("type", "type"), ("macs", "MMACs"), ("macs_pct", "% MACs"),
                  ("params", "params"), ("params_pct", "% params"))
SUMMARY_COLUMNS = (("model", "model"), ("input_size", "input"), ("params", "params"),
                   ("macs", "MMACs conv+FC"), ("macs_all", "MMACs all ops"))


def _size(size: Sequence[int]) -> str:
    return "x".join(str(s) for s in size)


def _shown(key: str) -> Callable[[Any], str]:
    """How a value of ``key`` reads in a table: MACs in millions, params with separators, shares in %."""
    if key in ("macs", "macs_all"):
        return lambda value: f"{value / 1e6:,.2f}"
    if key == "params":
        return lambda value: f"{value:,}"
    if key.endswith("_pct"):
        return lambda value: f"{value:.2f}"
    if key == "input_size":
        return _size
    return str


def _tree_label(row: dict[str, Any]) -> str:
    """A module of the tree as a table shows it: indented by its depth, the last part of its name."""
    return "  " * row["depth"] + (row["module"].rsplit(".", 1)[-1] if row["module"] else "(model)")


def render_rows(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]], fmt: str = "table",
                footer: Optional[dict[str, Any]] = None) -> str:
    """Rows as an aligned terminal table, Markdown, CSV or JSON (raw numbers: MACs, not MMACs), drawn by
    :func:`lightnets.tables.render_rows`.

    The ``footer`` (a total row) is shown in table and md only, so csv / json parse back to ``rows``.
    """
    check_format(fmt)
    if fmt == "csv":
        rows = [{key: _size(v) if key == "input_size" else v for key, v in row.items()} for row in rows]
    elif fmt in ("table", "md"):
        rows = [{**row, "module": _tree_label(row)} if "module" in row and "depth" in row else row for row in rows]
    spec = [Column(key, header, _shown(key), left=key in ("type", "module", "model")) for key, header in columns]
    return render_table(rows, spec, fmt, total=footer)
