"""Model folders as transformers writes them: safetensors shards, the index, the files beside
the weights, all written atomically (a temporary folder renamed into place).

The rules are those of `PreTrainedModel.save_pretrained` (transformers 5.x; 4.x wrote the same
layout) and huggingface_hub's `split_torch_state_dict_into_shards`:

* tensors are taken in state-dict order and packed greedily: a tensor that would take the
  current shard over `max_shard_size` closes it and opens the next; a tensor larger than
  `max_shard_size` gets a shard of its own (appended where it is met, the current shard
  staying open); sizes are the tensors' bytes;
* one shard is `model.safetensors` with no index; n shards are
  `model-00001-of-0000n.safetensors` ... plus `model.safetensors.index.json`:
  `{"metadata": {"total_size": ...}, "weight_map": {name: file}}`, written with
  `json.dumps(indent=2, sort_keys=True)` and a final newline; total_size is the sum of the
  written tensors' bytes. transformers also writes `total_parameters`, the model's parameter
  count, which a state dict cannot tell from its buffers: it is copied from the source's index
  when that has one, else left out (no loader reads it);
* every shard's `__metadata__` is `{"format": "pt"}` (what transformers' loader requires);
* default max_shard_size "50GB" (transformers >= 5.0; 4.x used "5GB": pass it to match).

Tied weights: safetensors cannot alias, so transformers keeps one name of tensors that are the
same bytes (same storage, offset, dtype, shape and strides) and drops the others, choosing by
the model class's `_tied_weights_keys`. mfparse never imports the class; it keeps the name a
loader ties the others to, by name: `shared.weight`-like names first, then input embeddings
(`embed`, `wte`, `word_embeddings`, ...), then other names, output heads (`lm_head`,
`proj_out`, `output_projection`, `*.decoder.weight`, ...) last; ties by sorted name. This is
what transformers keeps for GPT-2 (`transformer.wte.weight`), T5 (`shared.weight`), BERT, and
transformers 5 ties the dropped names back on load either way. Tensors that share a storage
without being the same bytes (views, slices) are each written with their own bytes, as
transformers clones them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile

from mfparse import units
from mfparse.writers.base import WriteError

__all__ = ["DEFAULT_MAX_SHARD_SIZE", "parse_size", "plan_shards", "shard_names", "index_bytes", "drop_tied",
           "atomic_folder", "weights_stem"]

#: transformers >= 5 save_pretrained default (4.x: "5GB")
DEFAULT_MAX_SHARD_SIZE = "50GB"


def parse_size(size) -> int:
    """Bytes of a size: an int, or digits and a unit ("5GB", "500MB", "2GiB"; KB/MB/GB/TB are
    powers of 10 as in transformers and huggingface_hub, KiB/MiB/GiB/TiB powers of 2)."""
    return units.parse_size(size, WriteError, "max shard size", "5GB, 500MB, 2GiB")


def plan_shards(items: list, max_size: int) -> list:
    """Items grouped into shards by huggingface_hub's greedy rule (see the module docstring)."""
    shards: list = []
    current: list = []
    current_size = 0
    for it in items:
        size = it.nbytes
        if size > max_size:
            shards.append([it])
            continue
        if current_size + size > max_size:
            shards.append(current)
            current, current_size = [], 0
        current.append(it)
        current_size += size
    if current:
        shards.append(current)
    return shards or [[]]


def shard_names(stem: str, ext: str, n: int) -> list:
    """`model.safetensors` for one shard, `model-00001-of-0000n.safetensors` ... for n."""
    if n == 1:
        return [f"{stem}{ext}"]
    return [f"{stem}-{i:05d}-of-{n:05d}{ext}" for i in range(1, n + 1)]


def index_bytes(weight_map: dict, total_size: int, extra: dict | None = None) -> bytes:
    """The index file as transformers writes it."""
    index = {"metadata": {**(extra or {}), "total_size": total_size}, "weight_map": weight_map}
    return (json.dumps(index, indent=2, sort_keys=True) + "\n").encode("utf-8")


def weights_stem(source_files) -> str:
    """The output weights name for a source: diffusers components keep
    `diffusion_pytorch_model`, PEFT adapters `adapter_model`, everything else is `model`."""
    for f in source_files or ():
        base = os.path.basename(f or "")
        if base.startswith("diffusion_pytorch_model"):
            return "diffusion_pytorch_model"
        if base.startswith("adapter_model"):
            return "adapter_model"
    return "model"


_HEADS = re.compile(r"(^|\.)(lm_head|generator_lm_head|proj_out|output_projection|embed_out|vocab_projector|"
                    r"lm_loss|pred_layer|head|output|cls|mlm_score)(\.|$)|(^|\.)decoder\.weight$")
_EMBEDS = re.compile(r"embed|wte|word_embeddings|tok_embeddings|tokens_embed|token_embedding")


def _keep_rank(name: str) -> tuple:
    if name == "shared.weight" or name.endswith(".shared.weight"):
        rank = 0
    elif _HEADS.search(name):
        rank = 3
    elif _EMBEDS.search(name):
        rank = 1
    else:
        rank = 2
    return rank, name


def drop_tied(items: list) -> tuple:
    """(items to write, [(dropped name, kept name)]): of the items that are the same bytes
    (equal `alias`), one is kept (see the module docstring)."""
    groups: dict = {}
    for it in items:
        if it.alias is not None:
            groups.setdefault(it.alias, []).append(it.name)
    drop: dict = {}
    for names in groups.values():
        if len(names) > 1:
            keep = min(names, key=_keep_rank)
            for n in names:
                if n != keep:
                    drop[n] = keep
    if not drop:
        return items, []
    return [it for it in items if it.name not in drop], sorted(drop.items())


@contextlib.contextmanager
def atomic_folder(dst: str, overwrite: bool = False):
    """Yield a temporary folder beside dst; when the block succeeds it becomes dst (an existing
    dst is replaced only with overwrite, and only after the new folder is complete), on any
    failure it is removed and dst is untouched."""
    dst = os.path.abspath(os.fspath(dst))
    parent = os.path.dirname(dst)
    name = os.path.basename(dst)
    if os.path.lexists(dst) and not os.path.isdir(dst):
        raise WriteError(f"{dst} exists and is not a folder")
    if os.path.isdir(dst) and os.listdir(dst) and not overwrite:
        raise WriteError(f"{dst} exists and is not empty (pass overwrite=True / --force to replace it)")
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if os.path.isdir(dst):
            old = tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.rename(dst, old)
            try:
                os.rename(tmp, dst)
            except BaseException:
                os.rename(old, dst)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    from mfparse.writers.base import _umask as um

    return um()


def check_folder_space(dst: str, need: int) -> None:
    """ENOSPC before anything is written when dst's file system lacks room."""
    from mfparse.writers.base import FREE_MARGIN

    parent = os.path.dirname(os.path.abspath(dst)) or "."
    free = shutil.disk_usage(parent).free
    if need + FREE_MARGIN > free:
        raise OSError(errno.ENOSPC, f"not enough free space in {parent}: the output needs about {need:,} bytes "
                                    f"and {free:,} bytes are free")


def items_bytes(items: list) -> int:
    return sum(it.nbytes for it in items)

