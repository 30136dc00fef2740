"""Storing a fitted DeepQuantizer without pickle: JSON, ``.npy`` and a ``state_dict``.

The bundle (:mod:`skdqn.io._io`: a directory or one ``.npz``, every member
checksummed) holds

* ``codebooks.npy`` (M, K, R / M) float32 and ``codes.npy`` (n, M)
  uint8/uint16, the codes of the training items;
* ``labels.npy`` (n,) or (n, n_labels), their labels, and ``classes.npy``;
* ``network.npy``: a uint8 array holding the bytes that :func:`torch.save`
  wrote for the network's ``state_dict`` (tensors only), read back with
  ``torch.load(..., weights_only=True, map_location=...)``;
* when a StandardScaler comes before the model (files written by ``skdqn
  fit`` before the default MLP standardized its inputs itself):
  ``scaler_mean.npy``, ``scaler_var.npy`` and ``scaler_scale.npy``;
* a JSON header: ``format`` (``"skdqn.DeepQuantizer"``), ``format_version``,
  ``skdqn_version``, the parameters (``params``, all but ``network``), the
  architecture of the network (``network``: the default MLP's layer sizes and
  whether it standardizes its inputs -- then its ``state_dict`` holds
  ``standardizer.mean`` and ``standardizer.scale`` --, or the class name of a
  custom backbone, for messages only), ``network_param``,
  ``n_components``, ``n_features_in``, ``feature_names_in``, ``input_shape``,
  ``n_iter``, ``history``, ``device``, ``standardize`` and ``loss`` (the
  objective that trained, ``loss="auto"`` resolved).

:func:`read_model` validates every header field (type, allowed values,
agreement with the arrays) and every array, and raises a ``ValueError`` that
names the file and the field. Nothing is ever unpickled: the arrays are read
with ``allow_pickle=False`` and the weights with ``weights_only=True``, so a
file replaced by a pickle is refused without running it. The default MLP is
rebuilt from the header; a custom backbone is given by the caller and its
weights are filled in.
"""

import copy
import io
import os
import uuid
import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch

from ._index_io import _field
from ._io import check_header, format_header, read_bundle, write_bundle
from ..training._network import describe_network, is_network_factory, rebuild_network
from .._pq import code_dtype
from .._validation import check_codes

__all__ = ["save_model", "read_model", "ModelParts", "check_quantization", "network_bytes", "load_weights", "FORMAT", "FORMAT_VERSION"]

FORMAT = "skdqn.DeepQuantizer"
# 2: the default MLP may standardize its inputs (``network.standardize``, the
# ``standardizer.mean`` / ``standardizer.scale`` weights). Version 1 files
# (no standardization inside the network) are still read.
# 3: the ``loss`` parameters and header field, and ``proxy_loss`` in the history
# records. Files of versions 1 and 2 (trained with the pairwise loss) are read.
FORMAT_VERSION = 3
_HISTORY_KEYS = ("epoch", "pair_loss", "proxy_loss", "quantization_loss", "loss", "lam", "seconds")
_LOSSES = ("pairwise", "proxy")
_SCALER_ARRAYS = ("scaler_mean", "scaler_var", "scaler_scale")
_ARRAYS = ("codebooks", "codes", "labels", "classes", "network")


# ------------------------------------------------------------------ weights
def network_bytes(net):
    """The bytes :func:`torch.save` writes for ``net.state_dict()`` (tensors only).

    Parameters
    ----------
    net : torch.nn.Module

    Returns
    -------
    data : bytes

    Examples
    --------
    >>> import torch
    >>> from skdqn.io._model_io import network_bytes, load_weights
    >>> sorted(load_weights(network_bytes(torch.nn.Linear(2, 3)), "cpu", "demo"))
    ['bias', 'weight']
    """
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getvalue()


def load_weights(data, device, where):
    """Read a ``state_dict`` written by :func:`network_bytes`, without unpickling objects.

    Parameters
    ----------
    data : bytes
        What :func:`network_bytes` returned.
    device : str or torch.device
        Where to put the tensors (``map_location``: a model saved on CUDA
        loads on the CPU).
    where : str
        Names the data in messages (e.g. the file).

    Returns
    -------
    state_dict : dict of str to torch.Tensor

    Raises
    ------
    ValueError
        If ``data`` is not such a ``state_dict`` (e.g. a pickle of other
        objects, which ``weights_only=True`` refuses without running it).

    Examples
    --------
    >>> import pickle
    >>> from skdqn.io._model_io import load_weights
    >>> load_weights(pickle.dumps(print), "cpu", "demo")
    Traceback (most recent call last):
    ...
    ValueError: demo does not hold network weights readable without pickle (UnpicklingError: ...
    """
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": refused anyway
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means: not weights
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(
            f"{where} does not hold network weights readable without pickle "
            f"({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{where} does not hold a state_dict (names to tensors).")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{where}: the weights {name!r} hold NaN or infinity.")
    return state


def fill_network(net, state, where):
    """Load ``state`` into ``net``; a ValueError lists the names and shapes that do not fit.

    Parameters
    ----------
    net : torch.nn.Module
    state : dict of str to torch.Tensor
    where : str
        Names the weights in messages.

    Examples
    --------
    >>> import torch
    >>> from skdqn.io._model_io import fill_network
    >>> fill_network(torch.nn.Linear(2, 3), {"weight": torch.zeros(3, 2), "bias": torch.zeros(3)}, "demo")
    """
    _check_fit({name: tuple(value.shape) for name, value in net.state_dict().items()}, state, where)
    net.load_state_dict(state)


def _check_fit(expected, state, where):
    """Raise a ValueError unless ``state`` has exactly the names and shapes ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{name} is {tuple(state[name].shape)} in the file but {shape} in the network"
        for name, shape in expected.items()
        if name in state and tuple(state[name].shape) != shape
    ]
    problems = (
        ([f"missing weights {missing}"] if missing else [])
        + ([f"unexpected weights {unexpected}"] if unexpected else [])
        + shapes
    )
    if problems:
        raise ValueError(
            f"{where}: the saved weights do not fit the network (not the same architecture): "
            + "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else "") + "."
        )


# ------------------------------------------------------------------- saving
def _json_value(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_json_value(v) for v in np.asarray(value).tolist()]
    return value


def _params_for_header(dq):
    params = dq.get_params(deep=False)
    params.pop("network")
    if not (params["random_state"] is None or isinstance(params["random_state"], Integral)):
        params["random_state"] = None  # a RandomState instance is not stored
    return {k: _json_value(v) for k, v in params.items()}


def _plain(array):
    """Labels or classes held as Python objects, as a numpy string or number array."""
    array = np.asarray(array)
    return np.asarray(array.tolist()) if array.dtype.hasobject else array


def _scaler_parts(scaler):
    """The header field and arrays of a fitted StandardScaler (default options only)."""
    from sklearn.preprocessing import StandardScaler

    if type(scaler) is not StandardScaler or not (scaler.with_mean and scaler.with_std):
        raise ValueError(
            f"only a StandardScaler with with_mean=True and with_std=True can be saved "
            f"before a DeepQuantizer; got {scaler!r}."
        )
    seen = np.asarray(scaler.n_samples_seen_)
    if seen.ndim != 0:
        raise ValueError("cannot save a StandardScaler fitted on data with missing values.")
    arrays = {"scaler_mean": scaler.mean_, "scaler_var": scaler.var_, "scaler_scale": scaler.scale_}
    return {"n_samples_seen": int(seen)}, {k: np.asarray(v, np.float64) for k, v in arrays.items()}


def _input_shape(dq):
    shape = getattr(dq, "_input_shape", None)
    if shape is None:  # fitted by an skdqn that did not record it
        if dq.network is not None:
            raise ValueError(
                "cannot save this DeepQuantizer: the shape of its inputs was not recorded "
                "(fitted by an older skdqn); fit it again."
            )
        shape = (dq.n_features_in_,)
    return [int(s) for s in shape]


def save_model(dq, path, *, scaler=None, single_file=False):
    """Write a fitted DeepQuantizer (after an optional StandardScaler) to ``path``.

    Parameters
    ----------
    dq : DeepQuantizer
        Fitted.
    path : str or path-like
        A name ending in ``.npz`` writes one file, any other a directory
        (unless ``single_file``).
    scaler : sklearn.preprocessing.StandardScaler, default=None
        A fitted scaler applied to the inputs before ``dq`` (the command
        line's models).
    single_file : bool, default=False
        Write one ``.npz``-layout file whatever the name.

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import load_digits
    >>> from skdqn import DeepQuantizer
    >>> from skdqn.io._model_io import save_model
    >>> X, y = load_digits(return_X_y=True)
    >>> dq = DeepQuantizer(M=1, K=16, n_components=4, max_epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
    >>> path = save_model(dq, os.path.join(tempfile.mkdtemp(), "model.skdqn"), single_file=True)
    >>> loaded = DeepQuantizer.load(path)
    >>> bool((loaded.encode(X[:5]) == dq.encode(X[:5])).all())
    True
    """
    names = getattr(dq, "feature_names_in_", None)
    header = {
        **format_header(FORMAT, FORMAT_VERSION),
        "params": _params_for_header(dq),
        "network": describe_network(dq.network_),
        "network_param": dq.network is not None,
        "n_components": int(dq.n_components_),
        "n_features_in": int(dq.n_features_in_),
        "feature_names_in": None if names is None else [str(n) for n in names],
        "input_shape": _input_shape(dq),
        "n_iter": int(dq.n_iter_),
        "history": [{k: _json_value(record.get(k, float("nan"))) for k in _HISTORY_KEYS} for record in dq.history_],
        "device": str(dq.device_),
        "standardize": None,
        "loss": dq.loss_,
    }
    arrays = {
        "codebooks": dq.codebooks_,
        "codes": dq.codes_,
        "labels": _plain(dq._fit_labels),
        "classes": _plain(dq.classes_),
        "network": np.frombuffer(network_bytes(dq.network_), dtype=np.uint8),
    }
    if scaler is not None:
        header["standardize"], scaler_arrays = _scaler_parts(scaler)
        arrays.update(scaler_arrays)
    path = Path(os.fspath(path))
    if not single_file or path.suffix == ".npz":
        return write_bundle(path, header, arrays)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; a single-file model cannot replace it.")
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}.npz")
    try:
        write_bundle(tmp, header, arrays)
        os.replace(tmp, path)  # atomic: an interrupted save leaves the old file intact
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ------------------------------------------------------------------ loading
def _int_field(header, path, name, minimum):
    value = _field(header, path, name, (int,), "an integer")
    if value < minimum:
        raise ValueError(f"{path}: header field {name!r} must be >= {minimum}; got {value}.")
    return value


def _int_list(value, path, name, *, allow_empty=False):
    if not isinstance(value, list) or (not value and not allow_empty) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
    ):
        raise ValueError(f"{path}: header field {name!r} must be a list of positive integers; got {value!r}.")
    return value


def _check_network_field(header, path, fields):
    """The ``network`` description: kind, sizes, agreement with the other fields."""
    net = _field(header, path, "network", (dict,), "an object describing the network")
    where = f"{path}: header field 'network'"
    if net.get("kind") not in ("mlp", "custom"):
        raise ValueError(f"{where} must have kind 'mlp' or 'custom'; got {net.get('kind')!r}.")
    keys = {"kind", "n_backbone_features", "n_components"} | (
        {"n_features", "hidden_layer_sizes", "dropout"} if net["kind"] == "mlp" else {"class"}
    )
    if net["kind"] == "mlp" and fields["format_version"] >= 2:
        keys.add("standardize")
    if fields["format_version"] >= 3:
        keys.add("normalize")
    if set(net) != keys:
        raise ValueError(f"{where} must have exactly the keys {sorted(keys)}; got {sorted(net)}.")
    if not isinstance(net.get("normalize", False), bool):
        raise ValueError(f"{where}: normalize must be true or false; got {net['normalize']!r}.")
    for key in ("n_backbone_features", "n_components") + (("n_features",) if net["kind"] == "mlp" else ()):
        value = net[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: {key} must be a positive integer; got {value!r}.")
    if net["n_components"] != fields["n_components"]:
        raise ValueError(f"{where}: n_components={net['n_components']} disagrees with n_components.")
    if net["kind"] == "custom":
        if not isinstance(net["class"], str):
            raise ValueError(f"{where}: class must be a string.")
        if not fields["network_param"]:
            raise ValueError(f"{where} is a custom backbone but 'network_param' is false.")
        return net
    if not isinstance(net.get("standardize", False), bool):
        raise ValueError(f"{where}: standardize must be true or false; got {net['standardize']!r}.")
    sizes = _int_list(net["hidden_layer_sizes"], path, "network.hidden_layer_sizes", allow_empty=True)
    dropout = net["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"{where}: dropout must be a number in [0, 1); got {dropout!r}.")
    if net["n_features"] != fields["n_features_in"] or net["n_backbone_features"] != (sizes or [net["n_features"]])[-1]:
        raise ValueError(f"{where}: the MLP's sizes disagree with n_features_in={fields['n_features_in']}.")
    return net


def _check_history(header, path, n_iter, format_version):
    history = _field(header, path, "history", (list,), "a list of epoch records")
    if len(history) != n_iter:
        raise ValueError(f"{path}: header field 'history' has {len(history)} records for n_iter={n_iter}.")
    if format_version < 3:  # before the proxy loss: every record is of the pairwise loss
        history = [{**r, "proxy_loss": float("nan")} if isinstance(r, dict) else r for r in history]
    for i, record in enumerate(history):
        if not isinstance(record, dict) or set(record) != set(_HISTORY_KEYS) or record["epoch"] != i + 1 or not all(
            isinstance(record[k], (int, float)) and not isinstance(record[k], bool) for k in _HISTORY_KEYS
        ):
            raise ValueError(
                f"{path}: header field 'history', record {i}, must map {list(_HISTORY_KEYS)} to "
                f"numbers, with epoch={i + 1}."
            )
    return history


def _check_fields(header, path, format_version):
    """Every header field but ``params``, checked for type, value and agreement."""
    _field(header, path, "skdqn_version", (str,), "a version string")
    fields = {
        "format_version": format_version,
        "network_param": _field(header, path, "network_param", (bool,), "true or false"),
        "n_components": _int_field(header, path, "n_components", 1),
        "n_features_in": _int_field(header, path, "n_features_in", 1),
        "n_iter": _int_field(header, path, "n_iter", 0),
        "device": _field(header, path, "device", (str,), "a device name"),
        "feature_names_in": _field(header, path, "feature_names_in", (list, type(None)), "null or a list"),
        "standardize": _field(header, path, "standardize", (dict, type(None)), "null or an object"),
    }
    fields["network"] = _check_network_field(header, path, fields)
    fields["history"] = _check_history(header, path, fields["n_iter"], format_version)
    fields["loss"] = "pairwise" if format_version < 3 else _field(header, path, "loss", (str,), "an objective name")
    if fields["loss"] not in _LOSSES:
        raise ValueError(f"{path}: header field 'loss' must be one of {list(_LOSSES)}; got {fields['loss']!r}.")
    if fields["network"].get("normalize", False) != (fields["loss"] == "proxy"):
        raise ValueError(
            f"{path}: header field 'network' has normalize={fields['network'].get('normalize', False)}, "
            f"but a network trained with the {fields['loss']} loss normalizes exactly when that loss is 'proxy'."
        )
    shape = _int_list(_field(header, path, "input_shape", (list,), "a list"), path, "input_shape")
    if shape[0] != fields["n_features_in"] or (not fields["network_param"] and len(shape) != 1):
        raise ValueError(
            f"{path}: header field 'input_shape' {shape} disagrees with n_features_in="
            f"{fields['n_features_in']} (and the default MLP takes 1-D items)."
        )
    fields["input_shape"] = tuple(shape)
    names = fields["feature_names_in"]
    if names is not None and (len(names) != fields["n_features_in"] or not all(isinstance(n, str) for n in names)):
        raise ValueError(f"{path}: header field 'feature_names_in' must be null or a list of n_features_in strings.")
    try:
        torch.device(fields["device"])
    except (RuntimeError, ValueError):
        raise ValueError(f"{path}: header field 'device' is not a torch device: {fields['device']!r}.") from None
    standardize = fields["standardize"]
    if standardize is not None and (
        set(standardize) != {"n_samples_seen"} or not isinstance(standardize["n_samples_seen"], int)
        or isinstance(standardize["n_samples_seen"], bool) or standardize["n_samples_seen"] < 1
    ):
        raise ValueError(
            f"{path}: header field 'standardize' must be null or an object with one key, "
            "n_samples_seen, a positive integer."
        )
    return fields


def _check_standardize(fields, dq, path):
    """Raise a ValueError unless the default MLP standardizes exactly when ``params`` say so."""
    description = fields["network"]
    if fields["network_param"]:  # a custom network (even shaped like the MLP) is never standardized
        if description.get("standardize", False):
            raise ValueError(f"{path}: header field 'network': a custom network has standardize=true.")
        return
    if description.get("standardize", False) != dq.standardize:
        raise ValueError(
            f"{path}: header field 'network' has standardize={description.get('standardize', False)} "
            f"but 'params' has standardize={dq.standardize}."
        )


def _check_members(arrays, fields, path):
    expected = set(_ARRAYS) | (set(_SCALER_ARRAYS) if fields["standardize"] is not None else set())
    missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
    if missing:
        raise ValueError(f"{path} is incomplete: missing {missing}.")
    if extra:
        raise ValueError(f"{path} holds arrays its header does not describe: {extra}.")


def _check_quantization(arrays, fields, dq, path):
    """The codebooks and codes, checked against the parameters and ``n_components``."""
    codebooks, codes = arrays["codebooks"], arrays["codes"]
    M, K, R = dq.M, dq.K, fields["n_components"]
    if R % M or (dq.n_components is not None and dq.n_components != R):
        raise ValueError(f"{path}: header field 'n_components'={R} disagrees with the parameters (M={M}).")
    if codebooks.dtype != np.float32 or codebooks.shape != (M, K, R // M):
        raise ValueError(
            f"{path}: codebooks.npy has shape {codebooks.shape} and dtype {codebooks.dtype}; "
            f"expected ({M}, {K}, {R // M}) float32 (M, K and n_components of the header)."
        )
    if not np.isfinite(codebooks).all():
        raise ValueError(f"{path}: codebooks.npy holds NaN or infinity.")
    if codes.ndim != 2 or codes.shape[1] != M or codes.dtype != code_dtype(K):
        raise ValueError(
            f"{path}: codes.npy has shape {codes.shape} and dtype {codes.dtype}; expected "
            f"(n_samples, {M}) {code_dtype(K)}."
        )
    try:
        codes = check_codes(codes, M, K, copy=False, name="codes.npy")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return codebooks, codes


def _check_labels(arrays, n, path):
    labels, classes = arrays["labels"], arrays["classes"]
    if labels.ndim not in (1, 2) or labels.shape[0] != n:
        raise ValueError(f"{path}: labels.npy has shape {labels.shape}; expected ({n},) or ({n}, n_labels).")
    if classes.ndim != 1:
        raise ValueError(f"{path}: classes.npy must be 1-D; got shape {classes.shape}.")
    if labels.ndim == 2:
        ok = labels.dtype.kind in "biuf" and np.isin(labels, (0, 1)).all()
        ok = ok and np.array_equal(classes, np.arange(labels.shape[1]))
    else:
        ok = classes.dtype.kind == labels.dtype.kind and np.array_equal(np.unique(labels), classes)
    if not ok:
        raise ValueError(f"{path}: classes.npy and labels.npy disagree (classes must be the labels' classes).")
    return labels, classes


def _load_device(name):
    """The saved device when this machine has it, else the CPU."""
    device = torch.device(name)
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        return torch.device("cpu")
    return device if device.type in ("cpu", "cuda") else torch.device("cpu")


def _network(blob, fields, network, path):
    """The network of the model, rebuilt (MLP) or around a copy of ``network``, weights filled."""
    description = fields["network"]
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise ValueError(f"{path}: network.npy must be a 1-D uint8 array (torch.save bytes).")
    if fields["network_param"] and network is None:
        raise ValueError(
            f"{path} holds a DeepQuantizer with a custom network "
            f"({description.get('class', 'a torch.nn.Sequential')}): pass a module of the same "
            "architecture (or the factory that builds one) as network= to load its weights into."
        )
    if network is not None and not fields["network_param"]:
        raise ValueError(
            f"{path} holds a DeepQuantizer with the default MLP backbone, rebuilt from the file; "
            "do not pass a network."
        )
    module = network() if network is not None and is_network_factory(network) else network
    if network is not None and not isinstance(module, torch.nn.Module):
        raise TypeError(
            "network must be a torch.nn.Module or a factory returning one; got "
            f"{type(network).__name__}" + (f" returning {type(module).__name__}." if module is not network else ".")
        )
    device = _load_device(fields["device"])
    where = f"{path}: network.npy"
    state = load_weights(blob.tobytes(), device, where)
    # The sizes of the header are checked against the weights before anything
    # is built from them: a forged header cannot make the loader allocate
    # more than the file holds.
    R, F = description["n_components"], description["n_backbone_features"]
    fcb = {"fcb.weight": (R, F), "fcb.bias": (R,)}
    _check_fit(fcb, {k: v for k, v in state.items() if k in fcb}, where)
    if network is None:
        with torch.device("meta"):  # shapes only, no memory
            skeleton = rebuild_network(description)
        _check_fit({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, state, where)
    backbone = None if module is None else (module if module is not network else copy.deepcopy(network))
    net = rebuild_network(description, backbone)
    fill_network(net, state, where)
    if net.standardizes:
        scale = net.standardizer.scale
        if not (torch.isfinite(net.standardizer.mean).all() and torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"{where}: the input standardization must be finite, with a positive scale.")
    return net.to(device).eval(), device


def _scaler(arrays, fields, path):
    from sklearn.preprocessing import StandardScaler

    d = fields["n_features_in"]
    parts = {}
    for name in _SCALER_ARRAYS:
        array = arrays[name]
        if array.dtype != np.float64 or array.shape != (d,) or not np.isfinite(array).all():
            raise ValueError(f"{path}: {name}.npy must be finite float64 of shape ({d},).")
        parts[name] = np.array(array)
    if (parts["scaler_scale"] <= 0).any() or (parts["scaler_var"] < 0).any():
        raise ValueError(f"{path}: scaler_scale.npy must be positive and scaler_var.npy non-negative.")
    scaler = StandardScaler()
    scaler.mean_, scaler.var_, scaler.scale_ = parts["scaler_mean"], parts["scaler_var"], parts["scaler_scale"]
    scaler.n_features_in_ = d
    scaler.n_samples_seen_ = fields["standardize"]["n_samples_seen"]
    return scaler


@dataclass(frozen=True)
class ModelParts:
    """What a saved model holds, every part validated: the estimator builds itself from it.

    Attributes
    ----------
    params : dict
        The estimator's parameters (``network`` excepted), upgraded from
        older format versions.
    fields : dict
        The checked header fields (``n_features_in``, ``feature_names_in``,
        ``input_shape``, ``loss``, ``n_components``, ``history``, ``n_iter``,
        ``network_param``, ``standardize``, ...).
    arrays : dict of ndarray
        ``codebooks``, ``codes``, ``labels``, ``classes`` (and the scaler's):
        checked against the estimator's parameters by :func:`check_quantization`.
    network : torch.nn.Module
        Holding the saved weights, in eval mode.
    device : torch.device
    scaler : sklearn.preprocessing.StandardScaler or None
        The fitted scaler applied before the model (a model written by ``skdqn fit``).
    """

    params: dict
    fields: dict
    arrays: dict
    network: object
    device: object
    scaler: object


def read_model(path, network=None):
    """Read the parts of a model written by :func:`save_model`, every field and array validated.

    Parameters
    ----------
    path : str or path-like
    network : torch.nn.Module or callable, default=None
        For a model with a custom backbone: a module of the same
        architecture (a deep copy receives the saved weights), or a factory
        (a class or function) building one, called once.

    Returns
    -------
    parts : ModelParts
        The estimator builds itself from them
        (:meth:`skdqn.DeepQuantizer.load`); this module never writes an
        estimator's attributes.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import load_digits
    >>> from skdqn import DeepQuantizer
    >>> from skdqn.io._model_io import save_model, read_model
    >>> X, y = load_digits(return_X_y=True)
    >>> dq = DeepQuantizer(M=1, K=16, n_components=4, max_epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
    >>> read_model(save_model(dq, os.path.join(tempfile.mkdtemp(), "m"))).arrays["codes"].shape
    (1797, 1)
    """
    header, arrays = read_bundle(path)
    version = check_header(header, path, FORMAT, FORMAT_VERSION, what="a DeepQuantizer model")
    fields = _check_fields(header, path, version)
    _check_members(arrays, fields, path)
    params = _field(header, path, "params", (dict,), "an object of parameters")
    if "network" in params:
        raise ValueError(f"{path}: header field 'params' must not hold 'network'.")
    if isinstance(params.get("hidden_layer_sizes"), list):
        params = {**params, "hidden_layer_sizes": tuple(params["hidden_layer_sizes"])}
    if version < 2:  # before the default MLP could standardize (it did not) and n_threads
        params = {"standardize": False, "n_threads": None, **params}
    if version < 3:  # before the objective was a parameter: the paper's pairwise loss
        params = {"loss": "pairwise", **params}
    if params.get("loss", "auto") not in ("auto", fields["loss"]):
        raise ValueError(
            f"{path}: header field 'loss' {fields['loss']!r} disagrees with the parameter loss={params['loss']!r}."
        )
    fields["history"] = [{k: record[k] for k in _HISTORY_KEYS} for record in fields["history"]]
    net, device = _network(arrays["network"], fields, network, path)
    scaler = _scaler(arrays, fields, path) if fields["standardize"] is not None else None
    return ModelParts(params, fields, arrays, net, device, scaler)


def check_quantization(parts, dq, path):
    """``(codebooks, codes, labels, classes)`` of ``parts``, checked against ``dq`` (built from its parameters).

    Parameters
    ----------
    parts : ModelParts
    dq : DeepQuantizer
        Unfitted, with the saved parameters: ``M``, ``K``, ``n_components``
        and ``standardize`` must agree with the arrays.
    path : str or path-like
        Named in the errors.

    Returns
    -------
    codebooks : ndarray of shape (M, K, ds), float32
    codes : ndarray of shape (n, M)
    labels : ndarray of shape (n,) or (n, n_labels)
    classes : ndarray of shape (n_classes,)
    """
    _check_standardize(parts.fields, dq, path)
    codebooks, codes = _check_quantization(parts.arrays, parts.fields, dq, path)
    labels, classes = _check_labels(parts.arrays, codes.shape[0], path)
    return codebooks, codes, labels, classes
