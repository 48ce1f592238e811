"""Checkpoints: safetensors weights + JSON config + tokenizer + a sha256 manifest.

A checkpoint folder is complete only when ``manifest.json`` exists and every listed file
matches its hash; the manifest is written last, each file through a temporary name and
``os.replace``, so a crash never leaves a half-written checkpoint that looks complete.
Pickles are never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import ModelConfig
from .factory import create_model
from .trimodal import TrimodalModel

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the reason."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(model: TrimodalModel, out_dir: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # incomplete until the new manifest lands
    state = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{WEIGHTS}.")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": "pt"})
        os.replace(tmp, out / WEIGHTS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _atomic_write_bytes(out / CONFIG, json.dumps({"model": model.cfg.to_dict(), "metadata": metadata or {}},
                                                 indent=2, sort_keys=True).encode())
    tok_dir = out / TOKENIZER
    model.text.tokenizer.save_pretrained(str(tok_dir))
    files = [WEIGHTS, CONFIG] + sorted(str(p.relative_to(out)) for p in tok_dir.rglob("*") if p.is_file())
    manifest = {"files": {name: sha256_file(out / name) for name in files}}
    _atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return out


def _pickle_files(d: Path) -> list[str]:
    """Files under ``d`` that are pickles by name (never opened, let alone unpickled)."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.suffix in PICKLE_SUFFIXES and p.is_file())


def _looks_like_pickle(path: Path) -> bool:
    """A pickle stream (protocol 2+) or a torch.save zip, judged from the first bytes only."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:1] == b"\x80" or head == b"PK\x03\x04"


def _manifest_files(d: Path) -> dict[str, str]:
    """The manifest's {relative path: sha256}, checked for shape and for paths that stay inside ``d``."""
    try:
        files = json.loads((d / MANIFEST).read_text())["files"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{d / MANIFEST}: unreadable manifest ({type(e).__name__}: {e})") from e
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise CheckpointError(f"{d / MANIFEST}: 'files' must map file names to sha256 hex digests")
    for name in files:
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise CheckpointError(f"{d / MANIFEST}: file {name!r} points outside the checkpoint folder")
    unlisted = [name for name in (WEIGHTS, CONFIG) if name not in files]
    if unlisted:
        raise CheckpointError(f"{d / MANIFEST}: does not list {', '.join(unlisted)}, so they cannot be verified")
    return files


def verify_checkpoint(ckpt_dir: str | Path) -> dict[str, str]:
    """Check the folder is a complete, untampered checkpoint; return its manifest.

    Refused with ``CheckpointError``: a pickle file (or a folder holding one anywhere, even next
    to safetensors weights), a missing or malformed manifest, a manifest that leaves the weights
    or config unverified, a listed file that is missing or whose sha256 differs, and weights
    that are really a pickle or torch.save archive under the safetensors name."""
    d = Path(ckpt_dir)
    if d.is_file() and d.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(f"{d}: refusing a pickle checkpoint (it could run arbitrary code); "
                              f"convert it to safetensors")
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a checkpoint folder")
    pickles = _pickle_files(d)
    if pickles:
        raise CheckpointError(f"{d}: refusing a pickle checkpoint: it holds {pickles[:5]} (pickles could run "
                              f"arbitrary code and are never loaded); convert to safetensors or remove them")
    if not (d / MANIFEST).is_file():
        raise CheckpointError(f"{d}: no {MANIFEST}; the checkpoint is incomplete (interrupted save?)")
    manifest = _manifest_files(d)
    for name, digest in manifest.items():
        path = d / name
        if not path.is_file():
            raise CheckpointError(f"{d}: {name} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise CheckpointError(f"{d}: sha256 mismatch for {name} (manifest {digest[:12]}..., file {actual[:12]}...)")
    if _looks_like_pickle(d / WEIGHTS):
        raise CheckpointError(f"{d / WEIGHTS}: refusing a pickle checkpoint: the file is a pickle / torch.save "
                              f"archive, not safetensors")
    return manifest


def load_checkpoint(ckpt_dir: str | Path, map_location: str | torch.device = "cpu") -> TrimodalModel:
    d = Path(ckpt_dir)
    verify_checkpoint(d)
    try:
        raw = json.loads((d / CONFIG).read_text())
        cfg = ModelConfig.from_dict(raw["model"])
    except (KeyError, ValueError, TypeError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{d / CONFIG}: invalid model config ({e})") from e
    if (d / TOKENIZER).is_dir():
        cfg.text.tokenizer_path = str(d / TOKENIZER)
    model = create_model(cfg, load_pretrained=False)
    try:
        state = load_file(str(d / WEIGHTS), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{d / WEIGHTS}: unreadable safetensors ({e})") from e
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected keys {extra[:5]}{' ...' if len(extra) > 5 else ''}")
        if wrong:
            parts.append("wrong shapes " + ", ".join(
                f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in wrong[:5]))
        raise CheckpointError(f"{d / WEIGHTS} does not match its config: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.to(map_location)


def add_to_manifest(ckpt_dir: str | Path, name: str) -> None:
    """List ``name`` (a file in the checkpoint folder) in its manifest with its sha256, so loading
    verifies it like the weights."""
    d = Path(ckpt_dir)
    path = d / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["files"][name] = sha256_file(d / name)
    _atomic_write_bytes(path, json.dumps(manifest, indent=2, sort_keys=True).encode())
