"""The symbolic pickle interpreter (csrc/mf_pickle.c): every opcode of protocols 0-5 rebuilds
plain data exactly as CPython would, and imports/calls become nodes and events, never actions.
Pickles are produced with pickle.dumps (writing is safe) or by hand; none is ever loaded."""

from __future__ import annotations

import collections
import pickle
import struct

import pytest

from mfparse import _native
from mfparse.errors import CorruptFileError, TruncatedFileError, UnsupportedFormatError


def to_py(pv, depth=0):
    """Plain-data reconstruction of a PV; globals and calls as tagged tuples."""
    assert depth < 100
    k = pv.kind
    if k in ("none", "bool", "int", "bigint", "float", "str", "bytes", "bytearray"):
        return pv.value
    if k == "tuple":
        return tuple(to_py(i, depth + 1) for i in pv.items)
    if k == "list":
        return [to_py(i, depth + 1) for i in pv.items]
    if k == "dict":
        return {to_py(a, depth + 1): to_py(b, depth + 1) for a, b in pv.items}
    if k == "set":
        return {to_py(i, depth + 1) for i in pv.items}
    if k == "frozenset":
        return frozenset(to_py(i, depth + 1) for i in pv.items)
    if k == "global":
        return ("GLOBAL", pv.qualname)
    if k == "call":
        fn = pv.fn
        if fn.kind == "global" and fn.qualname in ("builtins.set", "__builtin__.set"):
            return set(to_py(pv.args, depth + 1)[0])
        if fn.kind == "global" and fn.qualname in ("builtins.frozenset", "__builtin__.frozenset"):
            return frozenset(to_py(pv.args, depth + 1)[0]) if pv.args.items else frozenset()
        if fn.kind == "global" and fn.qualname in ("builtins.bytearray", "__builtin__.bytearray"):
            args = to_py(pv.args, depth + 1)
            return bytearray(args[0].encode("latin-1") if isinstance(args[0], str) else args[0]) if args else bytearray()
        if fn.kind == "global" and fn.qualname in ("builtins.bytes", "__builtin__.bytes"):
            return bytes(*to_py(pv.args, depth + 1))
        if fn.kind == "global" and fn.qualname == "_codecs.encode":
            s, enc = to_py(pv.args, depth + 1)
            return s.encode(enc)
        return ("CALL", to_py(fn, depth + 1), to_py(pv.args, depth + 1))
    if k == "persid":
        return ("PERSID", to_py(pv.pid, depth + 1))
    raise AssertionError(k)


def run(data: bytes):
    p = _native.PickleParse(len(data))
    root, used = p.load(data)
    assert used == len(data)
    return p, root


PLAIN = [
    None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31 - 1, 2**31, 2**63 - 1, -2**63,
    2**64, -2**70, 10**40, 0.0, -1.5, 1e300, float("inf"), "", "abc", "ünïcode ✓", "a\nb\\c", "\ud83d\ude00",
    b"", b"\x00\xff" * 40, bytearray(b"xyz"), (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1, [2, [3]]],
    {}, {"a": 1, 2: "b", (1, 2): [3]}, {1, 2, 3}, frozenset({"x"}), "x" * 300, b"y" * 70000,
    list(range(2000)), {str(i): i for i in range(1500)},
]


@pytest.mark.parametrize("protocol", range(0, 6))
@pytest.mark.parametrize("i", range(len(PLAIN)))
def test_plain_data_every_protocol(protocol, i):
    obj = PLAIN[i]
    data = pickle.dumps(obj, protocol=protocol)
    p, root = run(data)
    got = to_py(root)
    if isinstance(obj, float) and obj != obj:
        assert got != got
    else:
        assert got == obj and type(got) is type(obj), (protocol, obj, got)


def test_shared_and_recursive_references():
    shared = [1, 2]
    obj = {"a": shared, "b": shared}
    for proto in range(6):
        p, root = run(pickle.dumps(obj, protocol=proto))
        (ka, va), (kb, vb) = root.items
        assert va.ident == vb.ident  # one node, reached twice through the memo
    rec = []
    rec.append(rec)
    p, root = run(pickle.dumps(rec, protocol=2))
    assert root.items[0].ident == root.ident


def test_globals_and_calls_are_nodes_and_events():
    data = pickle.dumps(collections.OrderedDict(a=1), protocol=2)
    p, root = run(data)
    assert root.kind == "call" and root.fn.qualname == "collections.OrderedDict"
    kinds = [e[0] for e in p.events()]
    assert kinds[:2] == ["global", "call"]
    assert p.events()[0][3].global_parts == ("collections", "OrderedDict")
    assert p.protocol == 2


def _frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


HAND = {
    # protocol 0 text opcodes
    "INT bool": (b"I01\n.", True),
    "INT": (b"I-42\n.", -42),
    "LONG": (b"L123456789012345678901234567890L\n.", 123456789012345678901234567890),
    "FLOAT": (b"F2.5\n.", 2.5),
    "STRING escapes": (b"S'a\\x41\\n\\'\\101'\n.", "aA\n'A"),
    "UNICODE raw escape": (b"Vcaf\\u00e9 \\U0001f600\n.", "café \U0001f600"),
    "DICT/LIST/TUPLE": (b"(S'k'\n(I1\nI2\ntS'l'\n(I3\nld.", {"k": (1, 2), "l": [3]}),
    "PUT/GET": (b"(lp0\nI7\nag0\n.", [7]),
    "DUP POP POP_MARK": (b"I1\n2(I9\n1.", 1),
    "BINSTRING": (b"T\x03\x00\x00\x00abc.", "abc"),
    "SHORT_BINSTRING non-ascii": (b"U\x02\xff\xfe.", b"\xff\xfe"),
    "BINBYTES8": (b"\x8e\x02\x00\x00\x00\x00\x00\x00\x00hi.", b"hi"),
    "BINUNICODE8": (b"\x8d\x02\x00\x00\x00\x00\x00\x00\x00hi.", "hi"),
    "BYTEARRAY8": (b"\x96\x02\x00\x00\x00\x00\x00\x00\x00hi.", bytearray(b"hi")),
    "EMPTY_SET ADDITEMS": (b"\x8f(K\x01K\x02\x90.", {1, 2}),
    "FROZENSET": (b"(K\x01\x91.", frozenset({1})),
    "MEMOIZE": (b"\x80\x04K\x05\x94\x8c\x01a\x94h\x00h\x01\x86.", (5, "a")),
    "FRAME": (b"\x80\x04" + _frame(b"K\x07."), 7),
    "POP pops a mark": (b"(0K\x03.", 3),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_built_opcodes(name):
    data, expected = HAND[name]
    p, root = run(data)
    got = to_py(root)
    assert got == expected and type(got) is type(expected)


def test_inst_obj_newobj_ex_build_persid_ext():
    data = (b"(I1\nios\nsystem\n"             # INST os.system(1)
            b"(cbuiltins\nlist\nI2\no"        # OBJ list(2)
            b"cbuiltins\ndict\n)}\x92"        # NEWOBJ_EX dict(*(), **{})
            b"}(S'k'\nI3\nub"                # BUILD with a dict state
            b"Pkey\n"                        # PERSID 'key'
            b"\x82\x05"                      # EXT1 5
            b"\x87t.")                       # pack everything into one tuple
    data = b"(" + data[:-3] + b"t."
    p, root = run(data)
    inst, obj, newobj_ex, persid, ext = root.items
    assert inst.kind == "call" and inst.fn.qualname == "os.system" and inst.op == ord("i")
    assert obj.kind == "call" and obj.fn.qualname == "builtins.list"
    assert newobj_ex.op == 0x92 and newobj_ex.state.kind == "dict"
    assert persid.kind == "persid" and persid.pid.value == "key"
    assert ext.kind == "ext" and ext.value == 5
    kinds = [e[0] for e in p.events()]
    assert kinds.count("global") == 3 and kinds.count("call") == 3
    assert "build" in kinds and "persid" in kinds and "ext" in kinds


def test_stack_global_from_memo_and_computed():
    # module and name come from the memo: still a literal global
    data = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93."
    p, root = run(data)
    assert root.kind == "global" and root.qualname == "os.system" and not root.computed
    # the module is the result of a call: a computed global, flagged
    data = b"\x80\x04cbuiltins\nstr\n)R\x8c\x06system\x93."
    p, root = run(data)
    assert root.kind == "global" and root.computed and root.qualname is None
    assert root.module.kind == "call"


def test_stacked_pickles():
    data = pickle.dumps(1, protocol=2) + pickle.dumps("two", protocol=2)
    p = _native.PickleParse(len(data))
    first, used = p.load(data)
    second, used2 = p.load(data, 0, used)
    assert (first.value, second.value) == (1, "two")
    assert used + used2 == len(data)
    assert p.pickles == 2


@pytest.mark.parametrize("data,exc,msg", [
    (b"", TruncatedFileError, "pickle data ends before STOP (byte 0)"),
    (b"\x80\x02K", TruncatedFileError, "pickle BININT1 truncated"),
    (b"0.", CorruptFileError, "pickle stack underflow (byte 0)"),
    (b"h\x05.", CorruptFileError, "pickle memo value not found at index 5 (byte 0)"),
    (b"\x80\x09.", UnsupportedFormatError, "unsupported pickle protocol 9"),
    (b"Z.", CorruptFileError, "invalid pickle opcode 'Z' (byte 0)"),
    (b"X\x02\x00\x00\x00\xff\xfe.", CorruptFileError, "pickle string is not valid UTF-8"),
    (b"S'abc\n.", CorruptFileError, "must be quoted"),
    (b"(K\x01K\x02K\x03d.", CorruptFileError, "odd number of items"),
    (b"\x8b\xff\xff\xff\xff.", CorruptFileError, "negative byte count"),
    (b"\x95\xff\x00\x00\x00\x00\x00\x00\x00K\x01.", TruncatedFileError, "FRAME of 255 bytes runs past"),
    (b"K\x01}b.", CorruptFileError, "BUILD on an immutable value"),
])
def test_errors_name_what_and_where(data, exc, msg):
    p = _native.PickleParse(len(data))
    with pytest.raises(exc) as e:
        p.load(data)
    assert msg in str(e.value)
    assert type(e.value) is exc  # pytest.raises also takes subclasses: the exact class is the check
    assert e.value.offset is not None and str(e.value).endswith(f"(byte {e.value.offset})")


def test_events_survive_an_error():
    data = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R\xff"
    p = _native.PickleParse(len(data))
    root, used = p.load(data, raise_errors=False)
    assert root is None and isinstance(p.error, CorruptFileError)
    kinds = [(e[0], e[3].qualname if e[0] == "global" else None) for e in p.events()]
    assert ("global", "os.system") in kinds and ("call", None) in kinds


def test_frame_anomaly_is_an_event():
    # a FRAME whose end falls inside an opcode
    body = b"K\x01K\x02\x86."
    data = b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00" + body
    p, root = run(data)
    assert "frame" in [e[0] for e in p.events()]


def test_large_memo_keys_use_bounded_memory():
    # LONG_BINPUT with a huge key must not allocate an array that large
    data = b"K\x01r\xff\xff\xff\x7fj\xff\xff\xff\x7f."
    p, root = run(data)
    assert root.value == 1


# ---- tree expansion (expansion bombs) ------------------------------------------------------

def test_expansion_counts_what_a_tree_walk_visits():
    shared = [1, 2]
    for proto in range(6):
        p, root = run(pickle.dumps({"a": shared, "b": shared}, protocol=proto))
        assert p.stats["shared_refs"] == 1, proto
        # dict, two keys, the list (itself and two ints) reached twice; shown once, then referred to
        assert p.expansion(root) == {"tree": 9, "refs": 7, "cyclic": False, "at": None, "at_tree": 0}, proto
    for value in PLAIN:
        p, root = run(pickle.dumps(value, protocol=4))
        ex = p.expansion(root)
        assert p.stats["shared_refs"] == 0 and ex["tree"] == ex["refs"] and not ex["cyclic"], value


def test_expansion_of_a_bomb_is_counted_without_walking_it():
    from pickle_asm import shared_bomb

    data = shared_bomb(40).stop().data
    assert len(data) < 700
    p, root = run(data)
    ex = p.expansion(root, 1 << 24)
    assert ex["tree"] == (1 << 41) - 1 and ex["refs"] == 81 and not ex["cyclic"]
    # the first list (post-order) past the limit: level 24 holds 2**25 - 1 nodes
    assert ex["at_tree"] == (1 << 25) - 1
    assert data[ex["at"]:ex["at"] + 1] == b"l"  # the LIST opcode that builds it
    p, root = run(shared_bomb(70, kind="tuple").stop().data)
    assert p.expansion(root)["tree"] == (1 << 64) - 1  # saturates
    p, root = run(b"K\x00" + b"2\x86" * 40 + b".")  # DUP instead of the memo
    assert p.expansion(root)["tree"] == (1 << 41) - 1


def test_expansion_of_cycles_counts_the_back_reference_once():
    rec = []
    rec.append(rec)
    p, root = run(pickle.dumps(rec, protocol=2))
    assert p.expansion(root) == {"tree": 2, "refs": 2, "cyclic": True, "at": None, "at_tree": 0}
    d = {"x": 1}
    d["self"] = d
    p, root = run(pickle.dumps(d, protocol=0))
    assert p.expansion(root)["tree"] == 5 and p.expansion(root)["cyclic"]


def _walk_count(pv) -> int:
    """Brute-force tree walk of a PV graph (acyclic), with the children mf_pkl_expansion_of uses."""
    k = pv.kind
    kids = []
    if k in ("tuple", "list", "set", "frozenset"):
        kids = list(pv.items)
    elif k == "dict":
        kids = [x for kv in pv.items for x in kv]
    elif k == "call":
        kids = [pv.fn, pv.args, pv.kwargs]
    elif k == "persid":
        kids = [pv.pid]
    kids += [pv.state, pv.extra]
    return 1 + sum(_walk_count(c) for c in kids if c is not None)


def test_expansion_matches_a_brute_force_walk_on_random_dags():
    import random

    rng = random.Random(13)
    shared = 0
    for trial in range(200):
        pool = [1, "s", None, 2.5]
        for _ in range(rng.randrange(1, 12)):
            picks = [pool[rng.randrange(max(0, len(pool) - 3), len(pool))] for _ in range(rng.randrange(0, 4))]
            pool.append(rng.choice([list, tuple, lambda x: {f"k{i}": v for i, v in enumerate(x)},
                                    lambda x: collections.OrderedDict(enumerate(x))])(picks))
        p, root = run(pickle.dumps(pool[-1], protocol=trial % 6))
        ex = p.expansion(root)
        assert ex["tree"] == _walk_count(root) and not ex["cyclic"], trial
        assert (p.stats["shared_refs"] == 0) <= (ex["tree"] == ex["refs"]), trial
        shared += ex["tree"] > ex["refs"]
    assert shared > 50  # a third of them share (72 with this seed)