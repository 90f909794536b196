"""`mfparse scan` on chat templates: GGUF metadata (written by gguf's GGUFWriter), Hugging Face
tokenizer_config.json / chat_template.json / chat_template.jinja, zipped folders. Templates are
parsed with Jinja's parser and judged on the AST; nothing renders them (issue 16, class 1).

Benign templates are real ones (tests/fixtures/chat_templates/SOURCES.md); hostile ones are the
template-injection payloads of CVE-2024-34359 and its variants."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest

from scan_helpers import assert_unsafe, has, scan

from mfparse.scan import templates

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "chat_templates")


def _benign():
    out = {}
    for f in sorted(os.listdir(FIX)):
        if f.endswith(".jinja"):
            with open(os.path.join(FIX, f), encoding="utf-8") as fh:
                out[f[:-6]] = fh.read()
    with open(os.path.join(FIX, "more_templates.json"), encoding="utf-8") as fh:
        out.update(json.load(fh))
    return out


BENIGN = _benign()
LLAMA2 = "hf-internal-testing/llama-tokenizer (Llama 2)"

# (payload, a phrase of the dangerous finding)
HOSTILE = [
    # CVE-2024-34359 (llama-cpp-python's unsandboxed Jinja2ChatFormatter)
    ("{% for x in ().__class__.__base__.__subclasses__() %}{% if 'warning' in x.__name__ %}"
     "{{ x()._module.__builtins__['__import__']('os').popen('id').read() }}{% endif %}{% endfor %}", "__subclasses__"),
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "'__globals__'"),
    ("{{ joiner.__init__.__globals__['os'].system('id') }}", "'__globals__'"),
    ("{{ namespace.__init__.__globals__.__builtins__.eval('1') }}", "'__builtins__'"),
    ("{{ lipsum.__globals__['os'].popen('id').read() }}", "'__globals__'"),
    ("{{ self._TemplateReference__context.cycler }}", "_TemplateReference__context"),
    ("{{ ()|attr('__class__') }}", "attr filter reaches the dunder"),
    ("{{ ()|attr('__cla' ~ 'ss__') }}", "computed at render time"),
    ("{{ ()|attr(['__cla', 'ss__']|join) }}", "computed at render time"),
    ("{{ ()|attr(x) }}", "computed at render time"),
    ("{% set n = '_' * 2 ~ 'class' ~ '_' * 2 %}{{ messages[n] }}", "built at render time"),
    ("{{ messages['__class__'] }}", "'__class__'"),
    ("{{ messages[(lipsum|string|list)[18] ~ 'x'] }}", "built at render time"),
    ("{{ messages|map(attribute='__class__')|list }}", "'__class__'"),
    ("{{ messages|map('attr', '__class__')|list }}", "'__class__'"),
    ("{{ '{0.__class__.__mro__}'.format(messages) }}", "format string"),
    ("{{ '{0.pop.__self__}'.format(messages) }}", "format string"),
    ("{{ x.gi_frame.f_back.f_globals }}", "'f_globals'"),
    ("{{ messages.pop.__func__.__globals__ }}", "'__globals__'"),
    ("{{ eval('1+1') }}", "calls 'eval'"),
    ("{{ __import__('os') }}", "'__import__'"),
    ("{% for m in messages %}{{ m.content }}{% endfor %}{# looks benign #}{{ ''.__class__ }}", "'__class__'"),
]

SUSPICIOUS = [
    ("{{ x._private }}", "private attribute"),
    ("{{ cycler.items }}", "renderer's global 'cycler'"),
    ("{{ request.args }}", "global 'request'"),
    ("{% include 'other.jinja' %}", "loads another template"),
    ("{{ exfiltrate(messages) }}", "calls 'exfiltrate'"),
    ("{{ messages[0].content.format(x) }}", "not a constant"),
]


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_templates_are_safe(name):
    found, note = templates.judge(BENIGN[name])
    assert found == [] and note is None, (name, found, note)


@pytest.mark.parametrize("payload,why", HOSTILE)
def test_injections_are_dangerous(payload, why):
    found, note = templates.judge(payload)
    assert note is None
    assert any(sev == "dangerous" and why in w for sev, w, _line in found), found


@pytest.mark.parametrize("payload,why", SUSPICIOUS)
def test_odd_templates_are_suspicious(payload, why):
    found, _note = templates.judge(payload)
    assert [w for sev, w, _line in found if why in w], found
    assert all(sev == "suspicious" for sev, _w, _line in found), found


def test_data_and_numbers_are_not_attribute_names():
    # item lookups with variables, numbers, slices, loop indices: what real templates do
    t = ("{% set ns = namespace(system=false, n=0) %}{% for m in messages %}{% set ns.system = m['role'] %}"
         "{% set k = m.content|length - 1 %}{{ m.content[:k] }}{{ messages[loop.index0 + 1]['role'] }}"
         "{{ m[key] }}{% endfor %}{{ ns.system }}{{ '%s'|format(x) }}{{ raise_exception('no') }}"
         "{{ strftime_now('%Y') }}{{ x|tojson }}")
    assert templates.judge(t) == ([], None)


def test_line_numbers():
    found, _ = templates.judge("{{ a }}\n{{ b }}\n{{ c.__class__ }}\n")
    assert {line for _s, _w, line in found} == {3}


# ---- without Jinja, or when Jinja refuses the template ------------------------------------------

@pytest.fixture
def no_jinja(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **kw):
        if name == "jinja2" or name.startswith("jinja2."):
            raise ImportError("no jinja2")
        return real(name, *a, **kw)

    monkeypatch.setattr(templates, "_ENV", [])
    monkeypatch.setattr(builtins, "__import__", fake)
    yield
    templates._ENV.clear()


def test_without_jinja_a_dunder_is_suspicious(no_jinja):
    found, note = templates.judge("{{ cycler.__init__.__globals__ }}")
    assert "not installed" in note
    assert found and all(s == "suspicious" for s, _w, _l in found)
    found, _ = templates.judge("{{ x|attr(y) }}")
    assert found and found[0][0] == "suspicious"
    assert templates.judge(BENIGN["Qwen-Qwen2.5-7B-Instruct"])[0] == []


def test_a_template_jinja_refuses_is_searched_as_text():
    found, note = templates.judge("{% if %}{{ x.__class__ }}")
    assert "does not parse" in note
    assert [s for s, _w, _l in found] == ["suspicious"]
    assert templates.judge("{% if %}plain")[0] == []


# ---- GGUF (gguf's GGUFWriter) -----------------------------------------------------------------

def _gguf(tmp_path, template):
    import numpy as np
    from gguf import GGUFWriter

    p = tmp_path / "m.gguf"
    w = GGUFWriter(str(p), "llama")
    w.add_chat_template(template)
    w.add_tensor("t", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p


def test_gguf_benign_templates_are_safe(tmp_path):
    p = _gguf(tmp_path, [{"name": "default", "template": BENIGN["meta-llama-Llama-3.1-8B-Instruct"]},
                         {"name": "tool_use", "template": BENIGN["NousResearch-Hermes-3-Llama-3.1-8B-tool_use"]}])
    r = scan(p)
    assert r.verdict == "safe", str(r)
    assert any("2 chat template(s) judged" in n for n in r.notes)


def test_gguf_injection_is_found_with_its_key_and_offset(tmp_path):
    payload = "{{ bos_token }}\n{{ cycler.__init__.__globals__.os.popen('id').read() }}"
    p = _gguf(tmp_path, [{"name": "default", "template": BENIGN["google-gemma-2-2b-it"]},
                         {"name": "rag", "template": payload}])
    r = scan(p)
    f = assert_unsafe(r, "dangerous", kind="template", why="'__globals__'")
    assert "jinja2 chat template" in f.why and "GGUF key tokenizer.chat_template.rag" in f.why
    assert "llama-cpp-python" in f.why and "line 2" in f.why
    assert f.qualname == "GGUF key tokenizer.chat_template.rag"
    data = p.read_bytes()
    assert data[f.offset:f.offset + 18] == b"{{ cycler.__init__"   # the start of line 2, in the file
    assert not has(r, why="tokenizer.chat_template ")  # the default (Gemma) template is clean


def test_gguf_without_templates(tmp_path):
    import numpy as np
    from gguf import GGUFWriter

    p = tmp_path / "m.gguf"
    w = GGUFWriter(str(p), "llama")
    w.add_tensor("t", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = scan(p)
    assert r.verdict == "safe" and any("no chat template" in n for n in r.notes)


def test_gguf_header_that_cannot_be_read_is_an_error():
    r = scan(b"GGUF\x03\x00\x00\x00" + b"\xff" * 24)
    assert r.verdict == "error", str(r)


# ---- Hugging Face folders ---------------------------------------------------------------------

def _tokenizer_config(template) -> bytes:
    return json.dumps({"bos_token": "<s>", "eos_token": "</s>", "model_max_length": 4096,
                       "tokenizer_class": "LlamaTokenizer", "chat_template": template}, indent=2).encode()


def test_tokenizer_config_benign(tmp_path):
    p = tmp_path / "tokenizer_config.json"
    p.write_bytes(_tokenizer_config(BENIGN["Qwen-Qwen2.5-7B-Instruct"]))
    r = scan(p)
    assert r.verdict == "safe", str(r)
    p.write_bytes(_tokenizer_config([{"name": "default", "template": BENIGN[LLAMA2]},
                                     {"name": "tool_use", "template": BENIGN["mistralai-Mistral-Nemo-Instruct-2407"]}]))
    assert scan(p).verdict == "safe"


def test_tokenizer_config_injection(tmp_path):
    p = tmp_path / "tokenizer_config.json"
    p.write_bytes(_tokenizer_config([{"name": "default", "template": BENIGN[LLAMA2]},
                                     {"name": "tool_use", "template": "{{ ''.__class__.__mro__[1] }}"}]))
    r = scan(p)
    f = assert_unsafe(r, "dangerous", kind="template", why="'__mro__'")
    assert "tokenizer_config.json key chat_template['tool_use']" in f.why
    assert "transformers' apply_chat_template" in f.why
    assert p.read_bytes()[f.offset:f.offset + 15] == b'"chat_template"'


@pytest.mark.parametrize("name", ["chat_template.jinja", "tool_use.jinja2", "x.j2"])
def test_jinja_files(tmp_path, name):
    p = tmp_path / name
    p.write_text(BENIGN["microsoft-Phi-3.5-mini-instruct"])
    assert scan(p).verdict == "safe"
    p.write_text("{% for m in messages %}{{ m.content }}\n{% endfor %}{{ m|attr('__class__') }}\n")
    f = assert_unsafe(scan(p), "dangerous", kind="template")
    assert f.offset == p.read_bytes().index(b"{% endfor %}")   # line 2 starts there
    assert name in f.why


def test_chat_template_json(tmp_path):
    p = tmp_path / "chat_template.json"
    p.write_text(json.dumps({"chat_template": "{{ lipsum.__globals__ }}"}))
    assert_unsafe(scan(p), "dangerous", kind="template", why="chat_template.json key chat_template")


def test_other_json_and_text_stay_safe(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "note": "{{ x.__class__ }}"}))
    assert scan(p).verdict == "safe"
    p = tmp_path / "README.md"
    p.write_text("# Model card\nUse `{{ messages }}` in your template; never `__globals__`.\n" * 3)
    assert scan(p).verdict == "safe"


def test_zipped_folder(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model/tokenizer_config.json", _tokenizer_config(BENIGN[LLAMA2]))
        z.writestr("model/additional_chat_templates/rag.jinja", "{{ self._TemplateReference__context }}")
    r = scan(buf.getvalue())
    f = assert_unsafe(r, "dangerous", kind="template", member="model/additional_chat_templates/rag.jinja")
    assert "_TemplateReference__context" in f.why
    assert not has(r, member="model/tokenizer_config.json")


@pytest.mark.parametrize("payload", ["{{ " + "(" * 3000 + "x" + ")" * 3000 + " }}",
                                     "{% if a %}" * 2000 + "x" + "{% endif %}" * 2000,
                                     "{{ x" + ".a" * 50000 + " }}"])
def test_deep_templates_are_never_safe(payload):
    found, _note = templates.judge(payload)
    assert [s for s, _w, _l in found] == ["suspicious"] and "nested too deeply" in found[0][1]
