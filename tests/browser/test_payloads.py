"""Issue 10 in a real browser: hostile model output never runs script in JupyterLab or makes the
page fetch anything outside the Jupyter server.

A scripted root model writes prose, code, outputs, sub-call prompts, sub-call answers, a
traceback and a final answer full of the payloads of :data:`PAYLOADS` / :data:`BUNDLES` (the
query is one too). The routes: the live view (ipywidgets HTML), the final static view,
``%rlm show``, the cells the ``rlm-jupyter-cells`` extension inserts, ``%%rlm_step`` re-displaying
the environment kernel's outputs, and the exported notebook (``result.to_notebook``) opened in
JupyterLab. Each payload would set a global ``window.__pwned_<name>``; none may be set, and
the page's request log (Playwright) holds only the Jupyter server's own address.

The payload lists are plain data, shared with the unit battery (tests/test_safe_html.py).
"""

from __future__ import annotations

import json
import textwrap

import pytest

EVIL = "http://203.0.113.7"  # TEST-NET-3: never routed; the page must never ask for it


def js(name: str) -> str:
    return f"window.__pwned_{name}=1"


# (name, text): text placed in every text field that reaches HTML.
PAYLOADS: list[tuple[str, str]] = [
    ("dq_breakout", f'x"onerror="{js("dq")}" y="'),
    ("sq_breakout", f"x' onmouseover='{js('sq')}' autofocus onfocus='{js('sq2')}' '"),
    ("tag_breakout", f'"></pre></details></div><script>{js("tag")}</script>'),
    ("script", f"<script>{js('script')}</script>"),
    ("img_onerror", f'<img src=x onerror="{js("img")}">'),
    ("event_handler", f'<div onmouseover="{js("div")}" onclick="{js("div2")}">hover</div>'),
    ("details_toggle", f'<details open ontoggle="{js("toggle")}"><summary>s</summary></details>'),
    ("js_link", f'<a href="javascript:{js("jslink")}">click</a>'),
    ("js_link_case", f'<a href=" JaVaScRiPt:{js("jslink2")}">click</a>'),
    ("md_js_link", f"[click me](javascript:{js('mdjs')})"),
    ("svg_inline", f'<svg onload="{js("svgin")}"><script>{js("svgin2")}</script></svg>'),
    ("css_escape", f'<div style="background:\\75 rl({EVIL}/css-escape.png)">css</div>'),
    ("css_url", f'<p style="background-image:url({EVIL}/css-url.png)">css</p>'),
    ("css_import", f"<style>@import url({EVIL}/import.css); body{{background:url({EVIL}/bg.png)}}</style>"),
    ("font_face", f"<style>@font-face{{font-family:f;src:url({EVIL}/font.woff)}} p{{font-family:f}}</style>"),
    ("iframe", f'<iframe src="{EVIL}/frame" onload="{js("iframe")}"></iframe>'),
    ("iframe_srcdoc", f'<iframe srcdoc="<script>parent.__pwned_srcdoc=1</script>"></iframe>'),
    ("base", f'<base href="{EVIL}/">'),
    ("meta_refresh", f'<meta http-equiv="refresh" content="0;url={EVIL}/refresh">'),
    ("form", f'<form action="{EVIL}/form"><input type="image" src="{EVIL}/input.png"><button formaction="javascript:{js("form")}">b</button></form>'),
    ("md_image", f"![chart]({EVIL}/md-image.png)"),
    ("md_image_ref", f"![chart][r]\n\n[r]: {EVIL}/md-image-ref.png"),
    ("html_remote_img", f'<img src="{EVIL}/remote.png">'),
    ("srcset", f'<img srcset="{EVIL}/srcset.png 1x">'),
    ("data_uri_html", '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">d</a><img src="data:text/html,x">'),
    ("object_embed", f'<object data="{EVIL}/obj"></object><embed src="{EVIL}/embed">'),
    ("link_css", f'<link rel="stylesheet" href="{EVIL}/link.css">'),
    ("video_poster", f'<video poster="{EVIL}/poster.png"><source src="{EVIL}/v.mp4"></video>'),
    ("mxss", f"<math><mtext><table><mglyph><style><img src=x onerror={js('mxss')}></style></mglyph></table></mtext></math>"),
]

SVG_SCRIPT = (
    f'<svg xmlns="http://www.w3.org/2000/svg" onload="{js("svgout")}"><script>{js("svgout2")}</script>'
    f'<image href="{EVIL}/svg-image.png" width="9" height="9"/></svg>'
)
PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
# (name, MIME bundle): displays the model's code makes (raw=True).
BUNDLES: list[tuple[str, dict]] = [
    ("png_breakout", {"image/png": f'x"onerror="{js("png")}'}),
    ("jpeg_breakout", {"image/jpeg": f"x' onerror='{js('jpeg')}' '"}),
    ("gif_breakout", {"image/gif": f'"><script>{js("gif")}</script>'}),
    ("svg_output", {"image/svg+xml": SVG_SCRIPT}),
    ("app_js", {"application/javascript": js("appjs"), "text/plain": "js"}),
    ("text_js", {"text/javascript": js("textjs")}),
    ("html_script", {"text/html": f"<script>{js('html')}</script><img src=x onerror={js('htmlimg')}><b>bold</b>"}),
    ("html_remote", {"text/html": f'<img src="{EVIL}/html-out.png"><div style="background:url({EVIL}/html-css.png)">x</div>'}),
    ("markdown_out", {"text/markdown": f"![m]({EVIL}/md-out.png) <img src={EVIL}/md-out2.png onerror={js('mdout')}>"}),
    ("widget_view", {"application/vnd.jupyter.widget-view+json": {"model_id": "deadbeef", "version_major": 2, "version_minor": 0}, "text/plain": "w"}),
    ("mime_key", {f'image/png" onerror="{js("key")}': "x", "text/plain": "key"}),
    ("valid_png", {"image/png": PNG_1PX, "text/plain": "a real image"}),
]


def all_names() -> list[str]:
    return [n for n, _ in PAYLOADS] + [n for n, _ in BUNDLES]


# -- the browser test ----------------------------------------------------------------------------
NB = "payloads.ipynb"
EXPORTED = "payloads_exported.ipynb"

# JS: globals a payload would have set (window.__pwned_*) in the page and its frames.
PWNED_JS = """() => {
    const found = Object.keys(window).filter(k => k.startsWith('__pwned'));
    for (const f of document.querySelectorAll('iframe')) {
        try { found.push(...Object.keys(f.contentWindow).filter(k => k.startsWith('__pwned')).map(k => 'frame:' + k)); }
        catch (e) {}
    }
    return found;
}"""


def _setup_source() -> str:
    texts = [t for _, t in PAYLOADS]
    bundles = [b for _, b in BUNDLES]
    prose = "Looking. " + "\n\n".join(texts)
    code1 = (
        "from IPython.display import display\n"
        f"TEXTS = {texts!r}\n"
        f"for b in {bundles!r}:\n"
        "    display(b, raw=True)\n"
        "print('\\n'.join(TEXTS))\n"
        "answers = [llm_query(t) for t in TEXTS[:6]]\n"
        "ans = '\\n'.join(TEXTS)\n"
    )
    code2 = "raise ValueError('\\n'.join(TEXTS))"
    replies = [f"{prose}\n```repl\n{code1}```", f"{prose}\n```repl\n{code2}\n```", "FINAL_VAR(ans)"]
    return textwrap.dedent(
        f"""
        %load_ext rlm_jupyter
        from rlm_jupyter.lm.scripted import script
        script("payload-root", {replies!r}, latency=1.5)
        script("payload-sub", lambda m: m[-1]["content"] + {texts[2]!r}, latency=0.2)
        docs = {texts[0]!r}
        """
    ).strip()


def _query() -> str:
    return "What does it say? " + " ".join(t for _, t in PAYLOADS[:12])


def _wait_idle(page, timeout=180):
    page.wait_for_function(
        """() => { const w = window.jupyterapp.shell.currentWidget;
                   const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                   return !!k && k.status === 'idle'; }""",
        timeout=timeout * 1000,
    )


def _run_and_wait(page, index, timeout=180):
    """Run cell ``index`` and wait until it has a new execution count and the kernel is idle."""
    before = page.evaluate("(i) => window.jupyterapp.shell.currentWidget.content.model.cells.get(i).executionCount", index)
    _run_cell(page, index)
    page.wait_for_function(
        """([i, prev]) => { const w = window.jupyterapp.shell.currentWidget;
                            const c = w.content.model.cells.get(i); const k = w.sessionContext.session.kernel;
                            return k.status === 'idle' && c.executionCount !== null && c.executionCount !== prev; }""",
        arg=[index, before],
        timeout=timeout * 1000,
    )


def _run_cell(page, index):
    page.evaluate(
        """(i) => { const nb = window.jupyterapp.shell.currentWidget.content;
                    nb.activeCellIndex = i; nb.mode = 'command';
                    window.jupyterapp.commands.execute('notebook:run-cell'); }""",
        index,
    )


def _visit_all(page):
    """Bring every cell of the current notebook into view once (JupyterLab renders lazily)."""
    n = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")
    for i in range(n):
        page.evaluate(
            "(i) => { const nb = window.jupyterapp.shell.currentWidget.content;"
            " const w = nb.widgets[i]; if (w) { nb.scrollToItem(i, 'start'); } }", i)
        page.wait_for_timeout(60)


def _check(page, requests, failures, where):
    """Record (in ``failures``) the payload globals set and the foreign requests made so far."""
    _visit_all(page)
    page.wait_for_timeout(800)  # let onerror/onload handlers fire
    pwned = sorted(set(page.evaluate(PWNED_JS)) - {k for f in failures.values() for k in f["pwned"]})
    seen = {u for f in failures.values() for u in f["requests"]}
    foreign = sorted({u for u in requests if not u.startswith((page.lab_base, "data:", "blob:", "about:"))} - seen)
    if pwned or foreign:
        failures[where] = {"pwned": pwned, "requests": foreign}


@pytest.mark.timeout(420)
def test_payloads_never_run_or_fetch_in_jupyterlab(jupyter_lab, page, artifacts):
    from .conftest import labextension_installed, open_notebook, require, shot, write_notebook

    require(labextension_installed("rlm-jupyter-cells"), "the rlm-jupyter-cells labextension is not installed")
    requests: list[str] = []
    failures: dict[str, dict] = {}  # route -> payload globals set / foreign URLs requested there
    page.on("request", lambda r: requests.append(r.url))
    page.lab_base = jupyter_lab.base
    cell = "%%rlm docs --out result -m scripted/payload-root --sub-model scripted/payload-sub\n" + _query()
    show = "%rlm show 0"
    export = f"result.to_notebook({EXPORTED!r}); print('exported')"
    write_notebook(jupyter_lab.root / NB, [_setup_source(), cell, show, export], ids=["setup", "rlm", "show", "export"])
    try:
        open_notebook(page, jupyter_lab, NB)
        page.wait_for_function("() => !!window.rlmJupyterCells", timeout=30_000)
        _run_and_wait(page, 0)
        _run_cell(page, 1)
        # the live view: widgets with the iteration's HTML (prose, code, outputs, sub-calls)
        out = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(1).locator(".jp-OutputArea")
        out.locator(".widget-html .rlm-iteration").first.wait_for(state="attached", timeout=90_000)
        out.locator(".widget-html .rlm-outputs").first.wait_for(state="attached", timeout=60_000)
        _check(page, requests, failures, "live view")
        # the final static view
        out.locator(".rlm-run .rlm-final").wait_for(state="attached", timeout=120_000)
        page.wait_for_function(
            "() => window.jupyterapp.shell.currentWidget.content.model.cells.get(1).executionCount !== null", timeout=60_000)
        _wait_idle(page)
        for d in page.locator(".rlm-run details").all():  # open every entry: all payloads in the DOM
            d.evaluate("e => e.open = true")
        _check(page, requests, failures, "final view")
        # the inserted cells (extension): prose, code with outputs from the environment kernel
        page.wait_for_function("() => document.querySelectorAll('.jp-Cell.rlm-cell').length >= 4", timeout=30_000)
        _check(page, requests, failures, "inserted cells")
        trust = page.evaluate(
            """() => { const cells = window.jupyterapp.shell.currentWidget.content.model.cells; const out = [];
                       for (let i = 0; i < cells.length; i++) { const c = cells.get(i); const r = c.getMetadata('rlm');
                         if (r && c.type === 'code') out.push([c.trusted, c.outputs.trusted, c.outputs.length]); }
                       return out; }"""
        )
        assert trust and all(t == [False, False, t[2]] for t in trust), trust  # JupyterLab treats them as untrusted
        assert any(t[2] > 0 for t in trust), trust
        # %%rlm_step: re-run the first inserted code cell in the run's environment kernel
        idx = page.evaluate(
            """() => { const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
                       for (let i = 0; i < cells.length; i++) {
                         const c = cells.get(i); const r = c.getMetadata('rlm');
                         if (r && r.block === 0 && r.iteration === 1) return i; }
                       return -1; }"""
        )
        assert idx > 0
        _run_and_wait(page, idx)
        page.wait_for_timeout(1000)
        step_mimes = page.evaluate(
            """(i) => { const c = window.jupyterapp.shell.currentWidget.content.model.cells.get(i).toJSON();
                        return (c.outputs || []).flatMap(o => Object.keys(o.data || {})); }""", idx)
        assert "image/png" in step_mimes and "text/html" in step_mimes, step_mimes  # re-displayed, made safe
        _check(page, requests, failures, "%%rlm_step re-display")
        # %rlm show, then the export
        n = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.model.cells.length")
        _run_and_wait(page, n - 2)
        page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(n - 2).locator(".rlm-run .rlm-final").wait_for(
            state="attached", timeout=30_000)
        _check(page, requests, failures, "%rlm show")
        _run_and_wait(page, n - 1)
        assert (jupyter_lab.root / EXPORTED).is_file()
        shot(page, "payloads_notebook.png", full_page=True)
        open_notebook(page, jupyter_lab, EXPORTED)
        page.wait_for_timeout(1500)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:render-all-markdown')")
        _check(page, requests, failures, "exported notebook")
        exported = json.loads((jupyter_lab.root / EXPORTED).read_text())
        mimes = {m for c in exported["cells"] for o in c.get("outputs", []) for m in o.get("data", {})}
        assert not mimes & {"application/javascript", "text/javascript", "application/vnd.jupyter.widget-view+json"}, mimes
        assert page.locator(".jp-RenderedImage img, .jp-RenderedHTMLCommon img").count() >= 1  # real images still shown
        shot(page, "payloads_exported.png", full_page=True)
    except BaseException:
        failures["(test error)"] = {"pwned": [], "requests": []}
        shot(page, "payloads_failure.png", full_page=True)
        raise
    finally:
        (artifacts / "payloads_requests.txt").write_text("\n".join(requests))
        (artifacts / "payloads_routes.json").write_text(json.dumps(failures, indent=1))
    assert not failures, json.dumps(failures, indent=1)
