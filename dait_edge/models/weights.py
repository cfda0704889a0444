"""Where model weights come from: local files, and the hubs with a fast offline check.

Every failure here is the user's to fix (a path, a flag, the network), so it surfaces as a
one-line UserError that names the way out.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch

from dait_edge.errors import UserError

_logger = logging.getLogger(__name__)

_CONTAINER_KEYS = ("state_dict", "model")  # where training scripts nest the weights
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / torch.compile
_WRAPPER_PREFIX = "model."  # a ClassifierWithFeatures saved whole
_PROBE_TIMEOUT_S = 3.0
_DOWNLOAD_SOCKET_TIMEOUT_S = 20.0


def weights_setting(role: str) -> str:
    """The setting that passes a local weights file for `role` ("student" or "teacher")."""
    return f"{role}_weights"


# --- local files ----------------------------------------------------------------------------


def load_state_dict_file(path: str | os.PathLike, *, role: str = "student") -> dict[str, torch.Tensor]:
    """Read a .safetensors or .pt/.pth/.bin file into a flat state dict with clean key names.

    Accepts a plain state dict, one nested under 'state_dict' or 'model', and keys prefixed by
    DDP ('module.'), torch.compile ('_orig_mod.') or a saved ClassifierWithFeatures ('model.').
    """
    path = Path(path)
    setting = weights_setting(role)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist: check its path.", setting=setting)
    fix = "pass a .safetensors file or a .pt/.pth/.bin file holding a state_dict."
    if path.suffix == ".safetensors":
        import safetensors.torch

        try:
            obj = safetensors.torch.load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001 - any reader failure means the same thing to the user
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise UserError(f"cannot read weights file {path} ({reason}): {fix}", setting=setting) from None
    else:
        from dait_edge.utils.safe_load import load_data_only

        # a checkpoint is data, never code to run: a pickle that needs code is refused
        obj = load_data_only(path, what="weights file", fix=fix, setting=setting)
    state_dict = _unwrap(obj)
    if not state_dict:
        raise UserError(
            f"weights file {path} holds no state_dict (no tensors found): pass a model checkpoint.",
            setting=setting,
        )
    return state_dict


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _CONTAINER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key])
    if not isinstance(obj, Mapping) or not obj:
        return {}
    state_dict = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    for prefix in (*_WRAPPER_PREFIXES, _WRAPPER_PREFIX):
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def check_fits(
    state_dict: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Size],
    *,
    head_keys: Iterable[str],
    path: str | os.PathLike,
    name: str,
    role: str,
) -> None:
    """Raise UserError unless `state_dict` has exactly the backbone tensors `expected` lists.

    Classifier keys are left out on both sides: a head of another class count is dropped later.
    """
    head = set(head_keys)
    missing = [k for k in expected if k not in state_dict and k not in head]
    unexpected = [k for k in state_dict if k not in expected and k not in head]
    resized = [
        k
        for k in expected
        if k in state_dict and k not in head and tuple(state_dict[k].shape) != tuple(expected[k])
    ]
    if not (missing or unexpected or resized):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", resized)):
        if keys:
            parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:2])})")
    raise UserError(
        f"weights file {path} does not fit {name}: {'; '.join(parts)}. Pass a checkpoint of {name}, or name"
        " the model the file was saved from.",
        setting=weights_setting(role),
    )


def load_weights_into(
    model: torch.nn.Module, path: str | os.PathLike, *, name: str, role: str, head_keys: Iterable[str]
) -> None:
    """Load a local weights file into `model` in place, after checking that it fits.

    A classifier saved for another number of classes is dropped, so the model keeps its fresh
    head; a classifier of the right size (e.g. a stage-1 teacher reloaded) is kept.
    """
    state_dict = load_state_dict_file(path, role=role)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    head = [k for k in head_keys if k in state_dict or k in expected]
    check_fits(state_dict, expected, head_keys=head, path=path, name=name, role=role)
    if any(k not in state_dict or k not in expected or state_dict[k].shape != expected[k] for k in head):
        for k in head:
            state_dict.pop(k, None)
        _logger.info("%s: dropped the classifier in %s (class count differs)", name, path)
    result = model.load_state_dict(state_dict, strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) <= set(head), result  # check_fits ran


# --- hubs -----------------------------------------------------------------------------------


def offline_error(name: str, role: str) -> UserError:
    return UserError(
        f"cannot fetch ImageNet weights for {name} (offline?): pass a local weights file, or train from"
        " scratch without pretrained weights.",
        setting=(weights_setting(role), "pretrained"),
    )


@functools.lru_cache(maxsize=16)
def _host_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_reachable(url: str) -> bool:
    """A quick TCP probe of `url`'s host, so an offline machine fails in seconds, not minutes.

    huggingface_hub retries a failed lookup ten times (~45 s); urllib can wait minutes on a
    dropped connection. Behind a proxy a direct probe says nothing, so assume reachable.
    """
    if urllib.request.getproxies():
        return True
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return True
    return _host_reachable(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


def hf_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@contextlib.contextmanager
def hub_access(online: bool) -> Iterator[None]:
    """Bound every socket wait; when offline, make huggingface_hub use its cache only, at once."""
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_SOCKET_TIMEOUT_S)
    hf_constants, previous_offline = None, None
    if not online:
        with contextlib.suppress(ImportError):
            from huggingface_hub import constants as hf_constants

            previous_offline = hf_constants.HF_HUB_OFFLINE
            hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous_timeout)
        if hf_constants is not None:
            hf_constants.HF_HUB_OFFLINE = previous_offline


_NETWORK_MODULES = ("huggingface_hub", "httpx", "httpcore", "requests", "urllib3", "urllib")


def is_download_error(err: BaseException) -> bool:
    """True for the errors a missing network or an absent hub file raises (OSError covers
    URLError, ConnectionError, timeouts and huggingface_hub's LocalEntryNotFoundError)."""
    if isinstance(err, OSError):
        return True
    package = (type(err).__module__ or "").split(".")[0].rstrip("0123456789")  # httpx2 is httpx
    return package in _NETWORK_MODULES


def weights_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata a .safetensors file carries (dait-edge writes role, model, method, epoch); {} for other
    formats or a file without any."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as err:  # a damaged header: the same one-line error as reading the weights
        raise UserError(
            f"cannot read weights file {path} ({err}); pass an intact .safetensors file."
        ) from err
