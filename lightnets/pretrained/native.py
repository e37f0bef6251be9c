"""Read a weight file in the format its publisher wrote it, without running anything it contains.

========================  ==================================================================
``.safetensors``          safetensors (timm, the Hub, lightnets' own folders)
``.pth .pt .bin .ckpt``   ``torch.load(weights_only=True)``: tensors and plain containers only;
``.tar``                  a training checkpoint's ``state_dict``/``model`` entry and a ``module.``
                          (nn.DataParallel) or ``_orig_mod.`` (torch.compile) prefix are unwrapped
                          (megvii's ``.pth.tar`` files are such checkpoints)
``.zip``                  an archive holding one ``.pth`` (pytorchcv's GitHub releases), read as above
``.h5 .hdf5``             Keras's legacy HDF5 weight format (``layer_names`` → ``weight_names``),
                          read with h5py; keys ``"layer/weight"``, a ``:0`` suffix dropped
========================  ==================================================================

Every failure is a :class:`WeightsFileError` naming the file, what it seems to be and what was expected.

>>> import tempfile, torch
>>> path = tempfile.mkdtemp() + "/w.pth"
>>> torch.save({"state_dict": {"module.fc.weight": torch.ones(2, 2)}}, path)
>>> read_weights(path)
{'fc.weight': tensor([[1., 1.],
        [1., 1.]])}
"""
from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path
from typing import Union

import torch

__all__ = ["NATIVE_SUFFIXES", "WeightsFileError", "is_native", "read_weights", "zip_member_sha1"]

PathLike = Union[str, Path]
StateDict = dict[str, torch.Tensor]

_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
_HDF5_SUFFIXES = (".h5", ".hdf5")
# Files in a publisher's format, converted (and cached as safetensors) before they are loaded.
NATIVE_SUFFIXES = (*_TORCH_SUFFIXES, ".zip", *_HDF5_SUFFIXES)
_ALL_SUFFIXES = (".safetensors", *NATIVE_SUFFIXES)


class WeightsFileError(ValueError):
    """A weight file that cannot be read as what it claims to be; the message names it."""


def is_native(path_or_url: Union[PathLike, str]) -> bool:
    """True for a file in a publisher's own format (not safetensors): ``.pth``, ``.pth.zip``, ``.h5`` ...

    >>> is_native("x/mobilenet_wd4-2249-1ad5e8fe.pth.zip"), is_native("model.safetensors")
    (True, False)
    """
    return str(path_or_url).split("?")[0].lower().endswith(NATIVE_SUFFIXES)


def _unwrap(checkpoint: object, path: Path) -> StateDict:
    for key in ("state_dict", "model", "model_state"):  # training checkpoints wrap the weights
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise WeightsFileError(
            f"{path} holds no state dict (a mapping of names to tensors): found {type(checkpoint).__name__}"
        )
    # DDP and torch.compile prefix every key; a checkpoint of the bare model must not.
    return {str(key).removeprefix("module.").removeprefix("_orig_mod."): value for key, value in checkpoint.items()}


def _torch_load(source: Union[Path, io.BytesIO], path: Path) -> StateDict:
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message suggests weights_only=False, which would run the file's code: never pass that on.
        reason = str(error).split("\n")[0].removeprefix("Weights only load failed. ")
        raise WeightsFileError(
            f"{path} is not a weights-only PyTorch checkpoint: it holds objects other than tensors and plain "
            f"containers, which lightnets will not unpickle ({reason[:200]}). Save the model's state_dict() "
            f"(or safetensors) instead"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise WeightsFileError(
            f"{path} is not a readable PyTorch checkpoint (truncated or not a .pth file?): {error}"
        ) from None
    return _unwrap(checkpoint, path)


def _zip_member(archive: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    members = [info for info in archive.infolist() if info.filename.endswith(_TORCH_SUFFIXES)]
    if len(members) != 1:
        names = [info.filename for info in archive.infolist()][:5]
        raise WeightsFileError(f"{path} must hold exactly one .pth file (as pytorchcv's releases do), found {names}")
    return members[0]


def _read_zip(path: Path) -> StateDict:
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(_zip_member(archive, path))
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise WeightsFileError(f"{path} is not a readable zip archive (truncated download?): {error}") from None
    return _torch_load(io.BytesIO(data), path)


def zip_member_sha1(path: PathLike) -> str:
    """The sha1 of the one ``.pth`` in a zip archive (what pytorchcv's model store checks)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive, archive.open(_zip_member(archive, path)) as member:
            digest = hashlib.sha1()
            for chunk in iter(lambda: member.read(1 << 20), b""):
                digest.update(chunk)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise WeightsFileError(f"{path} is not a readable zip archive (truncated download?): {error}") from None
    return digest.hexdigest()


def _read_hdf5(path: Path) -> StateDict:
    try:
        import h5py
    except ImportError as error:  # a core dependency; this only happens in a broken environment
        raise ImportError(f"reading Keras .h5 weights ({path}) needs h5py: pip install h5py") from error
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f  # a whole-model .h5 nests the weights
            if "layer_names" not in group.attrs:
                raise WeightsFileError(f"{path} is an HDF5 file but not in Keras's weight format (no layer_names)")
            state_dict: StateDict = {}
            for layer in group.attrs["layer_names"]:
                layer = layer.decode() if isinstance(layer, bytes) else str(layer)
                for weight in group[layer].attrs.get("weight_names", []):
                    weight = weight.decode() if isinstance(weight, bytes) else str(weight)
                    short = weight.rsplit("/", 1)[-1].removesuffix(":0")
                    state_dict[f"{layer}/{short}"] = torch.from_numpy(group[layer][weight][()].copy())
    except WeightsFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise WeightsFileError(
            f"{path} is not a readable Keras HDF5 weight file (truncated download?): {error}"
        ) from None
    return state_dict


def _read_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsFileError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from None


def read_weights(path: PathLike) -> StateDict:
    """The tensors of a weight file, by its suffix (table in the module docstring); nothing is unpickled
    but tensors and plain containers."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path)
    if suffix == ".zip":
        return _read_zip(path)
    if suffix in _HDF5_SUFFIXES:
        return _read_hdf5(path)
    if suffix in _TORCH_SUFFIXES:
        return _torch_load(path, path)
    raise WeightsFileError(f"weight file must end in one of {', '.join(_ALL_SUFFIXES)}, got {path}")
