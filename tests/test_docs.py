"""docs/architecture.md stays true where it copies the code: the scan denylist written out there
is mfparse.scan.policy's, group by group."""

from __future__ import annotations

import os
import re

import pytest

from helpers import ROOT

DOC = os.path.join(ROOT, "docs", "architecture.md")

pytestmark = pytest.mark.skipif(not os.path.exists(DOC), reason="needs the source tree's docs/")


def denylist_section() -> list[tuple[str, set[str]]]:
    """[(why, names)] of the bullets under "**Denylist (severity only).**"."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    start = text.index("**Denylist (severity only).**")
    end = text.index("\n\n", text.index("\n- ", start))
    bullets = re.split(r"\n- ", text[start:end])[1:]
    out = []
    for b in bullets:
        why, _, rest = b.partition(":")
        names = set(re.findall(r"`([^`]+)`", re.split(r"\.\s+A bytes argument", rest)[0]))
        out.append((" ".join(why.split()), names))
    return out


def test_denylist_in_the_docs_is_the_policys():
    from mfparse.scan import policy

    groups = denylist_section()
    *deny, (attrs_why, attrs) = groups
    assert attrs_why.startswith("exec-like attribute names")
    assert attrs == set(policy.DANGEROUS_ATTRS)
    by_why: dict[str, set[str]] = {}
    for name, why in policy.DANGEROUS.items():
        by_why.setdefault(why, set()).add(name)
    assert len(deny) == len(by_why)
    for why, names in deny:
        (full,) = [w for w in by_why if w.startswith(why)]  # the doc may leave the parenthesis out
        assert names == by_why[full], (why, names ^ by_why[full])
