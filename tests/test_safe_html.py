"""Issue 10: one rendering path for untrusted content. A battery of hostile payloads (shared with
the browser test, tests/browser/test_payloads.py) goes into every field that reaches HTML
(query, model ids, run id, prose, code, streams, rich outputs, image data, MIME keys,
tracebacks, sub-call prompts/answers/errors, notices, status text, child RLM query/answer)
and through every renderer: safe_html itself, the live view's widgets, the final static view,
``%rlm show``, ``%%rlm_step``'s re-display, the notebook export and the cells extension's
messages. The produced HTML is parsed (html.parser) and checked tag by tag and attribute by
attribute; markdown cells are first rendered with raw HTML on (as JupyterLab does).
"""

from __future__ import annotations

import html.parser
import re

import nbformat
import pytest
from browser.test_payloads import BUNDLES, EVIL, PAYLOADS, PNG_1PX
from markdown_it import MarkdownIt

from rlm_jupyter import RLM
from rlm_jupyter.core import events as ev
from rlm_jupyter.core.trajectory import Trajectory
from rlm_jupyter.jupyter import cells as C
from rlm_jupyter.jupyter import render_html as R
from rlm_jupyter import safe_html as S
from rlm_jupyter.notebook_io import trajectory_to_notebook
from rlm_jupyter.jupyter.view import LiveView

FORBIDDEN_TAGS = {
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "base", "meta", "form", "input", "button",
    "textarea", "select", "link", "style", "audio", "video", "source", "track", "image", "use", "foreignobject",
    "animate", "set", "math", "portal", "noscript", "template", "img-fake",
}  # fmt: skip
FORBIDDEN_ATTRS = {"srcset", "srcdoc", "action", "formaction", "background", "poster", "xlink:href", "data", "http-equiv",
                   "lowsrc", "dynsrc", "ping", "content"}
DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/]*={0,2}")
EVIL_HOST = EVIL.split("//")[1]
EXECUTABLE = {"application/javascript", "text/javascript", "application/vnd.jupyter.widget-view+json"}


class _Inspector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        self._check(tag, attrs)

    def handle_startendtag(self, tag, attrs):
        self._check(tag, attrs)

    def _check(self, tag, attrs):
        bad = self.problems.append
        if tag in FORBIDDEN_TAGS:
            bad(f"<{tag}>")
        names = {k for k, _ in attrs}
        for k, v in attrs:
            v = v or ""
            if k.startswith("on") or k in FORBIDDEN_ATTRS:
                bad(f"<{tag} {k}=...>")
            elif k == "href":
                if not re.match(r"https?://", v) or "noopener" not in dict(attrs).get("rel", ""):
                    bad(f"<{tag} href={v[:40]!r}>")
            elif k == "src":
                if tag != "img" or not DATA_IMAGE.fullmatch(v):
                    bad(f"<{tag} src={v[:40]!r}>")
            elif k == "style":
                low = v.lower()
                if EVIL_HOST in low:
                    bad(f"<{tag} style={v[:60]!r}>")
                if any(s in low for s in ("url(", "\\", "expression", "@import", "javascript", "behavior", "binding")):
                    bad(f"<{tag} style={v[:60]!r}>")
        if tag == "a" and "href" in names and "target" in names:
            bad("<a target>")


def assert_inert(markup: str, where: str = "") -> None:
    """No executable markup and no remote load in ``markup`` (parsed, not string-matched)."""
    p = _Inspector()
    p.feed(markup)
    p.close()
    assert not p.problems, f"{where}: {p.problems[:8]}"


_JL_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_JL_MARKDOWN.validateLink = lambda url: True  # marked keeps javascript: links (JupyterLab's sanitizer drops them)


def assert_markdown_inert(source: str, where: str = "") -> None:
    """A markdown cell's source, rendered with raw HTML on (as JupyterLab's marked does), is inert."""
    assert_inert(_JL_MARKDOWN.render(source), where)


def assert_outputs_safe(outputs: list[dict], where: str = "") -> None:
    for o in outputs:
        data = o.get("data") or {}
        assert not set(data) & EXECUTABLE, (where, set(data))
        assert set(data) <= S.KEPT_MIMES, (where, set(data))
        if "text/html" in data:
            assert_inert("".join(data["text/html"]) if isinstance(data["text/html"], list) else data["text/html"], where)
        for m in S.RASTER_MIMES:
            if m in data:
                assert re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", data[m]), where
        assert set(o.get("metadata") or {}) <= set(S.RASTER_MIMES), where


IDS = [n for n, _ in PAYLOADS]
TEXTS = [t for _, t in PAYLOADS]
DISPLAYS = [b for _, b in BUNDLES]


def _outputs(text: str) -> list[dict]:
    outs = [
        {"output_type": "stream", "name": "stdout", "text": text},
        {"output_type": "stream", "name": text, "text": [text, text]},
        {"output_type": "error", "ename": text, "evalue": text, "traceback": [f"\x1b[31m{text}\x1b[0m"]},
        {"output_type": "display_data", "data": {"text/html": text, "text/markdown": text, "text/plain": text},
         "metadata": {"isolated": True, text: text}},
        {"output_type": "execute_result", "data": {"text/markdown": text}, "metadata": {}, "execution_count": 3},
    ]
    outs += [{"output_type": "display_data", "data": dict(b), "metadata": {}} for b in DISPLAYS]
    return outs


def hostile_events(text: str) -> list[ev.Event]:
    """A run (root, sub-calls, a batch, a child RLM) with ``text`` in every field a view shows."""
    run = text.replace(",", ";")  # nbformat tags (rlm-run-<id>) may not hold a comma

    def E(kind, node, parent, depth, t, **data):
        return ev.Event(kind, node, parent, depth, t, data, run_id=run)

    code = f"x = {text!r}  # {text}\nprint(x)"
    reply = f"Thinking about {text}\n\n{text}\n```repl\n{code}\n```"
    return [
        E(ev.RUN_STARTED, "0", None, 0, 0.0, query=text, model=text, sub_model=text,
          context_info={"type": text, "total_chars": 9}, limits={"max_iterations": 3}),
        E(ev.ITERATION_STARTED, "0", None, 0, 0.1, iteration=1, max_iterations=3),
        E(ev.ROOT_REPLY, "0", None, 0, 0.2, iteration=1, text=reply, usage={}),
        E(ev.CODE_STARTED, "0", None, 0, 0.3, iteration=1, block=0, code=code),
        E(ev.SUBCALL_STARTED, "0.s1", "0", 1, 0.4, op=text, model=text, prompt=text + "\n" + text, batch=None),
        E(ev.SUBCALL_FINISHED, "0.s1", "0", 1, 0.5, answer=text, usage={}, error=None, cached=False),
        E(ev.SUBCALL_STARTED, "0.s2", "0", 1, 0.5, op="llm_query_batched", model=text, prompt=text, batch=text),
        E(ev.SUBCALL_FINISHED, "0.s2", "0", 1, 0.6, answer=None, usage={}, error=text, cached=False),
        E(ev.RUN_STARTED, "0.c1", "0", 1, 0.6, query=text, model=text, sub_model=text, context_info={}, limits={}),
        E(ev.ITERATION_STARTED, "0.c1", "0", 1, 0.6, iteration=1, max_iterations=2),
        E(ev.ROOT_REPLY, "0.c1", "0", 1, 0.7, iteration=1, text=reply, usage={}),
        E(ev.FINAL, "0.c1", "0", 1, 0.7, answer=text, source=text),
        E(ev.RUN_FINISHED, "0.c1", "0", 1, 0.7, status=text, answer=text, message=text),
        E(ev.CODE_FINISHED, "0", None, 0, 0.8, iteration=1, block=0, outputs=_outputs(text), text=text,
          status=text, seconds=0.5, execution_count=1),
        E(ev.NOTICE, "0", None, 0, 0.9, message=text),
        E(ev.FINAL, "0", None, 0, 1.0, answer=text, source=text),
        E(ev.RUN_FINISHED, "0", None, 0, 1.1, status="stopped", answer=text, message=text),
    ]


def hostile_trajectory(text: str) -> Trajectory:
    return Trajectory.from_events(hostile_events(text))


# -- safe_html itself ---------------------------------------------------------------------------
def test_the_battery_has_at_least_twenty_payloads_and_globals():
    assert len(PAYLOADS) + len(BUNDLES) >= 20 and len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_safe_html_functions_leave_nothing_executable(text):
    assert_inert(S.escape(text), "escape")
    assert "<" not in S.escape(text) and '"' not in S.escape(text)
    assert_inert(S.sanitize(text), "sanitize")
    assert_inert(S.markdown(text), "markdown")
    assert_inert(S.code(text), "code")
    assert_markdown_inert(S.markdown_source(text), "markdown_source")
    for mime in (*S.RASTER_MIMES, S.SVG_MIME, "text/html", text):
        assert_inert(S.image(mime, text), f"image {mime}")
    assert_inert(f'<div title="{S.escape(text)}">{S.escape(text)}</div>', "escape in an attribute")


@pytest.mark.parametrize("name,bundle", BUNDLES, ids=[n for n, _ in BUNDLES])
def test_rich_outputs_of_every_bundle(name, bundle):
    out = {"output_type": "display_data", "data": dict(bundle), "metadata": {}}
    assert_inert(R.outputs_html([out], R.Caps()), name)
    assert_outputs_safe(S.safe_outputs([out]), name)


def test_images_are_validated_base64_and_svg_only_inside_img():
    assert S.image("image/png", 'x"onerror="window.__pwned=1') == ""
    img = S.image("image/png", PNG_1PX[:20] + "\n" + PNG_1PX[20:])
    assert DATA_IMAGE.search(img) and PNG_1PX in img
    svg = S.image("image/svg+xml", '<svg onload="x()"><script>x()</script></svg>')
    assert svg.startswith("<img") and "<svg" not in svg and "script" not in svg
    assert S.image("text/html", "PGI+") == "" and S.image_uri("image/bmp", PNG_1PX) is None
    html = R.outputs_html([{"output_type": "display_data", "data": {"image/png": "%%%", "text/plain": "fallback"}}], R.Caps())
    assert "fallback" in html and "<img" not in html


def test_markdown_links_http_only_images_become_links_and_raw_html_is_text():
    md = S.markdown(f"**b** [ok](https://example.org) [js](javascript:alert(1)) [rel](/api/x) ![i]({EVIL}/i.png) <b>x</b>")
    assert "<strong>b</strong>" in md and '<a href="https://example.org" rel="noopener noreferrer">ok</a>' in md
    assert "<img" not in md and f'<a href="{EVIL}/i.png" rel="noopener noreferrer">i</a>' in md
    assert "&lt;b&gt;x&lt;/b&gt;" in md and "javascript" not in md.split("[js]")[0] and 'href="/api' not in md
    table = S.markdown("|a|b|\n|-|-|\n|1|2|\n\n~~gone~~")
    assert "<table>" in table and "<td>1</td>" in table and "<s>gone</s>" in table


def test_markdown_source_keeps_plain_markdown_and_defuses_the_rest():
    plain = "### Iteration 1\n\nI will **count** the `words` if n < 3, see [docs](https://example.org) and `<b>`."
    assert S.markdown_source(plain) == plain
    for bad in (f"![x]({EVIL}/a.png)", "<img src=x>", "[a](javascript:x)", "a <b>b</b>", "[r](/relative)"):
        src = S.markdown_source(bad)
        assert src != bad and "\n" not in src, bad
        assert_markdown_inert(src, bad)


def test_sanitize_keeps_tables_and_formatting():
    df = '<style scoped>.x{}</style><table border="1" class="dataframe"><thead><tr><th>a</th></tr></thead><tbody><tr><td colspan="2">1</td></tr></tbody></table>'
    out = S.sanitize(df)
    assert out == '<table><thead><tr><th>a</th></tr></thead><tbody><tr><td colspan="2">1</td></tr></tbody></table>'


def test_safe_outputs_drop_executable_types_and_keep_real_outputs():
    outs = S.safe_outputs([
        {"output_type": "display_data", "data": {"application/javascript": "x()", "text/plain": "p"}, "metadata": {"isolated": True}},
        {"output_type": "display_data", "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "m"}}, "metadata": {}},
        {"output_type": "display_data", "data": {"image/png": PNG_1PX}, "metadata": {"image/png": {"width": 10, "x": "y"}}},
        {"output_type": "display_data", "data": {"image/svg+xml": "<svg/>"}, "metadata": {}},
        {"output_type": "execute_result", "data": {"text/markdown": "**m**"}, "metadata": {}, "execution_count": 2},
        {"output_type": "stream", "name": "stdout", "text": "s"},
        {"output_type": "bogus"},
    ])  # fmt: skip
    assert outs[0]["data"] == {"text/plain": "p"} and outs[0]["metadata"] == {}
    assert list(outs[1]["data"]) == ["text/plain"] and "not shown" in outs[1]["data"]["text/plain"]
    assert outs[2]["data"]["image/png"] == PNG_1PX and outs[2]["metadata"] == {"image/png": {"width": 10}}
    assert outs[3]["data"]["text/html"].startswith('<img class="rlm-image"')
    assert outs[4]["data"]["text/html"] == "<p><strong>m</strong></p>\n" and outs[4]["execution_count"] == 2
    assert outs[5]["text"] == "s" and len(outs) == 6
    for o in outs:
        nbformat.validate(nbformat.from_dict({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
            {"cell_type": "code", "id": "c", "source": "", "metadata": {}, "execution_count": None, "outputs": [o]}]}))


# -- every view ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_static_live_and_quiet_renderings(text):
    traj = hostile_trajectory(text)
    header = R.header_from_trajectory(traj)
    bundle = R.static_bundle(traj, header)
    assert_inert(bundle["text/html"], "final view")
    root = traj.root
    assert root.iterations and root.iterations[0].cells and root.iterations[0].subcalls and root.iterations[0].children
    live = R.iteration_html(traj, root, root.iterations[0], R.LIVE_CAPS, open_=True)
    assert_inert(live, "live iteration")
    assert_inert(R.header_html(R.Header(status=text, model=text, sub_model=text, message=text)), "header")
    assert_inert(R.quiet_html(text, header), "quiet")
    assert_inert(R.final_html(text, text, R.Caps(), text), "final")


@pytest.mark.parametrize("text", TEXTS[:8] + TEXTS[-8:], ids=IDS[:8] + IDS[-8:])
def test_live_view_widgets_and_finish(text):
    view = LiveView(use_widgets=True, min_interval=0)
    for e in hostile_events(text):
        view.on_event(e)
        view.tick()
    values = [w.value for w in (view._header, view._plot, *view._iters)]
    assert len(values) == 3 and all(values[0:1])
    for v in values:
        assert_inert(v, "live widget")
    bundle = view.finish(text, "stopped", text)
    assert_inert(bundle["text/html"], "finish")


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_notebook_export_and_inserted_cells(text):
    traj = hostile_trajectory(text)
    nb = trajectory_to_notebook(traj)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            assert_markdown_inert(cell.source, "export markdown")
        else:
            assert_outputs_safe(cell.outputs, "export outputs")
    assert any(o.get("output_type") == "stream" for c in nb.cells if c.cell_type == "code" for o in c.outputs)

    sent = []
    view = C.CellsView("parent", open_comm=lambda data: type("Comm", (), {"send": lambda s, m: sent.append(m), "close": lambda s: None})())
    for e in hostile_events(text):
        view.on_event(e)
    view.tick()
    view.finish("stopped")
    inserts = [m["cell"] for m in sent if m["type"] == "insert"]
    assert {c["cell_type"] for c in inserts} == {"markdown", "code"}
    for c in inserts:
        if c["cell_type"] == "markdown":
            assert_markdown_inert(c["source"], "inserted markdown")
        assert_outputs_safe(c.get("outputs") or [], "inserted outputs")
    for m in sent:
        if m["type"] == "outputs":
            assert_outputs_safe(m["outputs"], "outputs message")


# -- through a real environment kernel and the magics (fixture ip: conftest.py) ---------------


def test_real_run_rlm_show_and_rlm_step_redisplay(ip, scripted, tmp_path):
    from IPython.utils.capture import capture_output

    code = (
        "from IPython.display import display\n"
        f"for b in {DISPLAYS!r}:\n    display(b, raw=True)\n"
        f"T = {TEXTS!r}\nprint(T)\nr = [llm_query(t) for t in T[:3]]\nans = chr(10).join(T)"
    )
    root = scripted([f"{TEXTS[2]} {TEXTS[20]}\n```repl\n{code}\n```", "FINAL_VAR(ans)"])
    sub = scripted(lambda m: m[-1]["content"] + TEXTS[0])
    ip.user_ns["docs"] = TEXTS[0]
    with capture_output() as cap:
        ip.run_cell_magic("rlm", f"docs --out hostile -m {root} --sub-model {sub}", " ".join(TEXTS[:10]))
    result = ip.user_ns["hostile"]
    try:
        assert result.status == "done" and len(result.trajectory.subcalls) == 3
        assert_inert(cap.outputs[-1].data["text/html"], "final view (magic)")
        assert "<img" in cap.outputs[-1].data["text/html"]  # the valid PNG is still shown
        n = len(ip.magics_manager.registry["RLMMagics"].runs) - 1
        with capture_output() as cap:
            ip.run_line_magic("rlm", f"show {n}")
        assert_inert(cap.outputs[0].data["text/html"], "%rlm show")
        with capture_output() as cap:
            ip.run_cell_magic("rlm_step", f"{n} 1", code.split("\nT =")[0] + f"\nraise ValueError({TEXTS[2]!r})")
        bundles = [o.data for o in cap.outputs]
        assert len(bundles) == len(DISPLAYS)
        assert_outputs_safe([{"data": b} for b in bundles], "%%rlm_step")
        assert any("image/png" in b for b in bundles) and TEXTS[2] in cap.stderr
        path = result.to_notebook(tmp_path / "hostile.ipynb")
        nb = nbformat.read(str(path), as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert any("image/png" in o.get("data", {}) for o in outputs)
        assert_outputs_safe(outputs, "export of a real run")
        for c in nb.cells:
            if c.cell_type == "markdown":
                assert_markdown_inert(c.source, "export markdown (real run)")
    finally:
        result.close()
