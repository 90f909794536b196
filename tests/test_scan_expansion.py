"""Expansion bombs (issue 13): shared references that make a few objects a tree of billions.

A pickle whose level k holds level k-1 twice through memo references loads fine (the unpickler
builds a DAG) but never finishes json.dumps, repr, printing or any recursive walk of the result.
`mfparse scan` counts the tree expansion in C, once per shared node, and reports it past the
stated bound (EXPANSION_NODES and EXPANSION_RATIO x the graph's references); real files that share tensors,
storages and state dicts stay safe. Hostile pickles are built as bytes and never loaded.
"""

from __future__ import annotations

import collections
import pickle
import warnings

import pytest
import torch

from mfparse import _native
from mfparse.scan.pickles import EXPANSION_NODES, EXPANSION_RATIO
from models import Tied
from pickle_asm import P, shared_bomb, tensor, torch_zip
from scan_helpers import assert_unsafe, has, scan

WHY = "expansion bomb"


def test_nested_lists_sharing_the_previous_one_are_a_finding():
    data = shared_bomb(40).stop().data  # ~12 bytes a level: 2**41 - 1 nodes as a tree
    r = scan(data)
    f = assert_unsafe(r, severity="suspicious", kind="resource", why=WHY)
    assert len(r.findings) == 1 and f.pickle == 0
    assert "a value of 81 references to 2,199,023,255,551 nodes" in f.why
    # the offset names the first (innermost) list past the bound: level 24, 2**25 - 1 nodes
    p = _native.PickleParse(len(data))
    p.load(data)
    assert f.offset == p.expansion(p.load(data)[0], EXPANSION_NODES)["at"]
    assert data[f.offset:f.offset + 1] == b"l"


@pytest.mark.parametrize("kind", ["list", "tuple", "dict"])
def test_every_container_kind(kind):
    assert_unsafe(scan(shared_bomb(32, kind=kind).stop().data), severity="suspicious", kind="resource", why=WHY)


def test_saturated_count_is_reported_as_a_lower_bound():
    f = assert_unsafe(scan(shared_bomb(80).stop().data), severity="suspicious", why=WHY)
    assert "to more than 18,446,744,073,709,551,614 nodes" in f.why


def test_bomb_through_object_state():
    # each argparse.Namespace's BUILD state holds the previous object twice
    p = P(2).empty_list().long_binput(0)
    for i in range(1, 41):
        p.glob("argparse", "Namespace").empty_tuple().reduce()
        p.mark().unicode("a").long_binget(i - 1).unicode("b").long_binget(i - 1).dict().build().long_binput(i)
    r = scan(p.stop().data)
    assert_unsafe(r, severity="suspicious", kind="resource", why=WHY)
    assert has(r, glob="argparse.Namespace", kind="import")


def test_bomb_in_a_torch_checkpoint_and_in_a_later_pickle():
    bomb = shared_bomb(40, leaf=lambda p: tensor(p, "0", 4, 0, (2,), (1,))).stop().data
    r = scan(torch_zip(bomb, extra={"data/0": b"\0" * 16}))
    f = assert_unsafe(r, severity="suspicious", kind="resource", why=WHY)
    assert f.member == "archive/data.pkl" and len(r.findings) == 1, str(r)
    f = assert_unsafe(scan(pickle.dumps([1, 2]) + shared_bomb(30).stop().data), "suspicious", kind="resource", why=WHY)
    assert f.pickle == 1


def test_the_bound():
    # 2**24 - 1 nodes: within the bound; 2**25 - 1: past it
    assert scan(shared_bomb(23).stop().data).verdict == "safe"
    assert_unsafe(scan(shared_bomb(24).stop().data), severity="suspicious", why=WHY)


def test_benign_sharing_past_the_node_bound_is_not_a_bomb():
    # 300,000 references to one 40-field record: 24 million nodes as a tree, 81x the references
    record = {f"field{i}": i for i in range(40)}
    data = pickle.dumps([record] * 300_000, protocol=4)
    p = _native.PickleParse(len(data))
    ex = p.expansion(p.load(data)[0])
    assert ex["tree"] > EXPANSION_NODES and ex["tree"] < EXPANSION_RATIO * ex["refs"]
    r = scan(data)
    assert r.verdict == "safe", str(r)


def test_real_checkpoints_that_share_stay_safe(tmp_path):
    torch.manual_seed(0)
    m = Tied()
    opt = torch.optim.Adam(m.parameters())
    m.head(m.emb(torch.tensor([1, 2]))).sum().backward()
    opt.step()
    sd = m.state_dict()
    w = torch.arange(6.0)
    files = {
        "tied_state_dict.pt": sd,                                     # two names, one storage
        "tied_params.pt": m.state_dict(keep_vars=True),               # the same Parameter twice
        "model_and_ema.pt": {"model": sd, "ema": sd},                 # one dict reached twice
        "with_optimizer.pt": {"model": sd, "optimizer": opt.state_dict(), "epoch": 1},
        "same_tensor_1000x.pt": {"ws": [w] * 1000, "views": [w[i:] for i in range(6)]},
        "shared_config.pt": {"layers": [collections.OrderedDict(cfg=dict(width=4, act="relu"), w=w)] * 200},
    }
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
        r = scan(tmp_path / name)
        assert r.verdict == "safe", str(r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert scan(tmp_path / "legacy.pt").verdict == "safe"
