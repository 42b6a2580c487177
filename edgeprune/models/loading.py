"""Resolve what a user names as MODEL into an ``nn.Module`` the layer graph can trace.

Accepted:
- a zoo name (``lenet5``), optionally with ``weights=`` a state_dict file (``weights_only=True``);
- a ``torch.export`` program (``.pt2``): its aten graph is rebuilt into ordinary ``nn`` modules
  (Conv2d, Linear, BatchNorm, ...) under their original qualified names, so every part of
  edgeprune (graph, pruning, exporters) treats it like any other model;
- an edgeprune output directory (from ``prune``/``cluster``): ``model.pt2`` if present, else
  ``shrunk.pt2``, else the zoo model named in ``summary.json`` with ``model.pt``;
- a pickled full module (``.pt``/``.pth``) only with ``trust_pickle=True``: unpickling runs code.
"""
from __future__ import annotations

import logging
import operator
import pickle
import zipfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn as nn

from ..errors import EdgepruneError
from . import ZOO, build


class ModelLoadError(EdgepruneError, ValueError):
    pass


def load_state_dict_file(path: Path) -> Dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelLoadError(f"{path}: not a plain state_dict (it needs code execution to load: "
                             f"{str(e).splitlines()[0][:120]})") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ModelLoadError(f"{path}: corrupt or unreadable weights file ({str(e).splitlines()[0]})") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path}: expected a state_dict (name -> tensor)")
    return obj


def _apply_weights(model: nn.Module, sd: Dict[str, torch.Tensor], source: Path) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = [line.strip() for line in str(e).splitlines() if line.strip()][1:2]
        raise ModelLoadError(f"{source}: weights do not fit the model: "
                             f"{first[0] if first else str(e)[:200]}") from e


def load_model(spec: str, weights: Optional[str] = None, trust_pickle: bool = False,
               **zoo_kwargs) -> nn.Module:
    """MODEL string -> nn.Module with an ``input_shape`` attribute. Raises ModelLoadError."""
    spec = str(spec)
    if spec in ZOO:
        model = build(spec, **zoo_kwargs)
        if weights:
            _apply_weights(model, load_state_dict_file(Path(weights)), Path(weights))
        return model
    path = Path(spec)
    if path.is_dir():
        return _load_output_dir(path, weights)
    if not path.exists():
        raise ModelLoadError(f"unknown model '{spec}': not a zoo model ({', '.join(sorted(ZOO))}) "
                             f"and no such file")
    if path.suffix == ".pt2":
        model = load_pt2(path)
        if weights:
            _apply_weights(model, load_state_dict_file(Path(weights)), Path(weights))
        return model
    if path.suffix in (".pt", ".pth"):
        return _load_pickled_module(path, trust_pickle)
    raise ModelLoadError(f"{path}: unsupported model file type '{path.suffix}' "
                         f"(use a zoo name, a .pt2 program or an edgeprune output directory)")


def _load_output_dir(path: Path, weights: Optional[str]) -> nn.Module:
    """An edgeprune model directory (see edgeprune.artifacts.ModelDir)."""
    from ..artifacts import ArtifactError, ModelDir
    md = ModelDir(path)
    program = md.program()
    if program is not None:
        model = load_pt2(program)
        if weights:
            _apply_weights(model, load_state_dict_file(Path(weights)), Path(weights))
        return model
    if not (path / ModelDir.SUMMARY).is_file():
        raise ModelLoadError(f"{path}: directory has no model.pt2, shrunk.pt2 or summary.json")
    try:
        meta = md.summary()
    except ArtifactError as e:
        raise ModelLoadError(str(e)) from e
    name = meta.get("model")
    if name not in ZOO:
        raise ModelLoadError(f"{path / ModelDir.SUMMARY}: 'model' is {name!r}, not a zoo model")
    model = build(name, **meta.get("model_kwargs", {}))
    wfile = Path(weights) if weights else md.state_dict_file()
    _apply_weights(model, load_state_dict_file(wfile), wfile)
    return model


def _load_pickled_module(path: Path, trust_pickle: bool) -> nn.Module:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        obj = None
        if not trust_pickle:
            raise ModelLoadError(f"{path}: contains a pickled module; loading it executes code. "
                                 f"Pass --trust-pickle if you trust this file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ModelLoadError(f"{path}: corrupt or unreadable model file ({str(e).splitlines()[0]})") from e
    if isinstance(obj, dict):
        raise ModelLoadError(f"{path}: is a state_dict; name its architecture: "
                             f"MODEL=<zoo name> --weights {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)  # user asked to trust it
    except Exception as e:  # noqa: BLE001 - arbitrary unpickling failures
        raise ModelLoadError(f"{path}: cannot unpickle ({str(e).splitlines()[0]})") from e
    if not isinstance(obj, nn.Module):
        raise ModelLoadError(f"{path}: unpickled a {type(obj).__name__}, not an nn.Module")
    if not hasattr(obj, "input_shape"):
        raise ModelLoadError(f"{path}: the module has no input_shape attribute; set "
                             f"model.input_shape = (C, H, W) before saving")
    return obj


# --------------------------------------------------------------------------------------------
# torch.export (.pt2) -> nn.Module

def load_pt2(path: Path) -> nn.Module:
    path = Path(path)
    # torch logs a full traceback at WARNING before raising on a bad archive; the user gets one
    # line from us instead.
    export_log = logging.getLogger("torch.export")
    level = export_log.level
    export_log.setLevel(logging.ERROR)
    try:
        ep = torch.export.load(str(path))
    except Exception as e:  # noqa: BLE001 - corrupt zip, wrong version, ...
        raise ModelLoadError(f"{path}: cannot load torch.export program "
                             f"({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from e
    finally:
        export_log.setLevel(level)
    return exported_to_module(ep, source=str(path))


def _aten(name: str):
    return getattr(torch.ops.aten, name, None)


def exported_to_module(ep, source: str = "program") -> fx.GraphModule:
    """Rebuild an ExportedProgram's aten graph as an fx.GraphModule of ordinary nn modules."""
    sig = ep.graph_signature
    state = dict(ep.state_dict)
    consts = dict(getattr(ep, "constants", {}) or {})
    tensor_of: Dict[str, torch.Tensor] = {}
    for ph, name in sig.inputs_to_parameters.items():
        tensor_of[ph] = state[name]
    for ph, name in sig.inputs_to_buffers.items():
        tensor_of[ph] = state[name] if name in state else consts[name]
    qual_of = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    user_inputs = list(sig.user_inputs)
    if len(user_inputs) != 1:
        raise ModelLoadError(f"{source}: programs with {len(user_inputs)} inputs are not supported")

    graph = fx.Graph()
    modules: Dict[str, nn.Module] = {}
    env: Dict[str, fx.Node] = {}
    input_shape: Tuple[int, ...] = ()

    def owner(ph: fx.Node) -> str:
        return qual_of[ph.name].rsplit(".", 1)[0]

    def fresh(name: str) -> str:
        name = name or "layer"
        base, i = name, 1
        while name in modules:
            name = f"{base}_{i}"
            i += 1
        return name

    def module_name(node: fx.Node, fallback: str) -> str:
        stack = node.meta.get("nn_module_stack")
        if stack:
            path = list(stack.values())[-1][0]
            if path and path not in modules:
                return path
        return fresh(fallback)

    def add_module(node: fx.Node, name: str, mod: nn.Module, arg: fx.Node) -> None:
        modules[name] = mod
        env[node.name] = graph.call_module(name, (env[arg.name],))

    A = torch.ops.aten
    for node in ep.graph_module.graph.nodes:
        if node.op == "placeholder":
            if node.name in tensor_of:
                continue
            val = node.meta.get("val")
            input_shape = tuple(int(d) for d in val.shape[1:]) if val is not None else ()
            env[node.name] = graph.placeholder("x")
            continue
        if node.op == "output":
            outs = node.args[0]
            if len(outs) != 1:
                raise ModelLoadError(f"{source}: programs with {len(outs)} outputs are not supported")
            graph.output(env[outs[0].name])
            continue
        t = node.target
        a = node.args
        if t is A.conv2d.default:
            w = tensor_of[a[1].name]
            b = tensor_of[a[2].name] if len(a) > 2 and a[2] is not None else None
            stride = a[3] if len(a) > 3 else [1, 1]
            padding = a[4] if len(a) > 4 else [0, 0]
            dilation = a[5] if len(a) > 5 else [1, 1]
            groups = a[6] if len(a) > 6 else 1
            if isinstance(padding, str):
                raise ModelLoadError(f"{source}: node '{node.name}': string padding is not supported")
            conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=tuple(stride),
                             padding=tuple(padding), dilation=tuple(dilation), groups=groups,
                             bias=b is not None)
            with torch.no_grad():
                conv.weight.copy_(w)
                if b is not None:
                    conv.bias.copy_(b)
            add_module(node, fresh(owner(a[1])), conv, a[0])
        elif t is A.linear.default:
            w = tensor_of[a[1].name]
            b = tensor_of[a[2].name] if len(a) > 2 and a[2] is not None else None
            lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            with torch.no_grad():
                lin.weight.copy_(w)
                if b is not None:
                    lin.bias.copy_(b)
            add_module(node, fresh(owner(a[1])), lin, a[0])
        elif t in (A.batch_norm.default, _aten_overload("_native_batch_norm_legit_no_training")):
            w, b, mean, var = (tensor_of[x.name] if x is not None else None for x in a[1:5])
            eps = a[7] if t is A.batch_norm.default else a[6]
            momentum = a[6] if t is A.batch_norm.default else a[5]
            rank = len(node.meta["val"].shape) if not isinstance(node.meta.get("val"), (tuple, list)) \
                else len(node.meta["val"][0].shape)
            cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
            bn = cls(mean.shape[0], eps=eps, momentum=momentum, affine=w is not None)
            with torch.no_grad():
                if w is not None:
                    bn.weight.copy_(w)
                    bn.bias.copy_(b)
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
            name = fresh(owner(a[3]))
            modules[name] = bn
            env[node.name] = graph.call_module(name, (env[a[0].name],))
        elif t is operator.getitem:
            src = a[0]
            if a[1] != 0 or src.name not in env:
                raise ModelLoadError(f"{source}: node '{node.name}': unsupported tuple access")
            env[node.name] = env[src.name]
        elif t in (A.relu.default, A.relu_.default):
            add_module(node, module_name(node, "relu"), nn.ReLU(), a[0])
        elif t in (A.hardtanh.default, A.hardtanh_.default):
            lo, hi = (a[1] if len(a) > 1 else -1.0), (a[2] if len(a) > 2 else 1.0)
            if (lo, hi) != (0.0, 6.0):
                raise ModelLoadError(f"{source}: node '{node.name}': hardtanh({lo}, {hi}) is not supported")
            add_module(node, module_name(node, "relu6"), nn.ReLU6(), a[0])
        elif t is A.sigmoid.default:
            add_module(node, module_name(node, "sigmoid"), nn.Sigmoid(), a[0])
        elif t is A.tanh.default:
            add_module(node, module_name(node, "tanh"), nn.Tanh(), a[0])
        elif t is A.max_pool2d.default:
            k = a[1]
            s = a[2] if len(a) > 2 and a[2] else k
            p = a[3] if len(a) > 3 else 0
            add_module(node, module_name(node, "maxpool"),
                       nn.MaxPool2d(tuple(k), tuple(s), tuple(p) if isinstance(p, (list, tuple)) else p), a[0])
        elif t is A.avg_pool2d.default:
            k = a[1]
            s = a[2] if len(a) > 2 and a[2] else k
            p = a[3] if len(a) > 3 else 0
            add_module(node, module_name(node, "avgpool"),
                       nn.AvgPool2d(tuple(k), tuple(s), tuple(p) if isinstance(p, (list, tuple)) else p), a[0])
        elif t is A.adaptive_avg_pool2d.default:
            if tuple(a[1]) != (1, 1):
                raise ModelLoadError(f"{source}: node '{node.name}': adaptive_avg_pool2d to {a[1]} "
                                     f"is not supported (only 1x1)")
            add_module(node, module_name(node, "gap"), nn.AdaptiveAvgPool2d(1), a[0])
        elif t is A.mean.dim and sorted(d % 4 for d in a[1]) == [2, 3] and (len(a) > 2 and a[2]):
            add_module(node, module_name(node, "gap"), nn.AdaptiveAvgPool2d(1), a[0])
        elif t in (A.flatten.using_ints, A.view.default, A.reshape.default, A._unsafe_view.default):
            out = node.meta["val"].shape
            if len(out) != 2 or (t is A.flatten.using_ints and a[1] != 1):
                raise ModelLoadError(f"{source}: node '{node.name}': reshape to {tuple(out)} is not "
                                     f"supported (only flattening to (N, features))")
            add_module(node, module_name(node, "flatten"), nn.Flatten(), a[0])
        elif t in (A.dropout.default, A.clone.default, A.alias.default, A.detach.default):
            add_module(node, module_name(node, "dropout"), nn.Dropout(a[1] if t is A.dropout.default else 0.0), a[0])
        elif t in (A.pad.default, A.constant_pad_nd.default):
            pad = list(a[1])
            value = (a[3] if len(a) > 3 else None) if t is A.pad.default else (a[2] if len(a) > 2 else 0)
            mode = a[2] if t is A.pad.default and len(a) > 2 else "constant"
            if mode != "constant" or (value not in (None, 0, 0.0)) or len(pad) != 4:
                raise ModelLoadError(f"{source}: node '{node.name}': only 2-D zero padding is supported")
            add_module(node, module_name(node, "pad"), nn.ZeroPad2d(tuple(pad)), a[0])
        elif t in (A.softmax.int, A._softmax.default):
            add_module(node, module_name(node, "softmax"), nn.Softmax(dim=a[1]), a[0])
        elif t in (A.add.Tensor,):
            if len(a) != 2 or not all(isinstance(x, fx.Node) for x in a) or node.kwargs.get("alpha", 1) != 1:
                raise ModelLoadError(f"{source}: node '{node.name}': only tensor + tensor add is supported")
            env[node.name] = graph.call_function(operator.add, (env[a[0].name], env[a[1].name]))
        elif t is A.cat.default:
            dim = a[1] if len(a) > 1 else 0
            env[node.name] = graph.call_function(torch.cat, ([env[x.name] for x in a[0]],), {"dim": dim})
        else:
            raise ModelLoadError(f"{source}: node '{node.name}': unsupported op {t}")
    gm = fx.GraphModule(modules, graph, class_name="ExportedModel")
    gm.input_shape = input_shape
    # GraphModule.__deepcopy__ rebuilds the module and keeps only attributes registered here.
    gm.meta["_user_preserved_attributes"] = {"input_shape": input_shape}
    return gm


def _aten_overload(name: str):
    op = _aten(name)
    return getattr(op, "default", None) if op is not None else None
