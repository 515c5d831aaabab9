"""The JavaScript the browser checks run in a page: tools/check_book.py in each built page,
tools/check_lab.py in JupyterLab's page after Run All."""

from __future__ import annotations

__all__ = ["JS_PRELUDE", "PAGE_CHECKS", "KERNEL_IDLE", "NOTEBOOK_CHECKS", "WATCH_KERNEL",
           "EXPLORER_STATE"]

# The start of every in-page check (here and in tools/check_lab.py): a list of problems and
# helpers to record one and to wait for a condition (bounded by `timeout` ms).
JS_PRELUDE = r"""
  const problems = [];
  const add = (kind, detail) => problems.push([kind, String(detail).slice(0, 300)]);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const until = async (cond) => {
    const end = Date.now() + timeout;
    while (Date.now() < end) { if (cond()) return true; await sleep(100); }
    return cond();
  };
  const short = (s) => s.replace(/\s+/g, " ").trim().slice(0, 120);
"""

# Runs in the page once it has loaded: waits for MathJax, images and widgets (each bounded by
# `timeout` ms), then returns [[kind, detail], ...].
PAGE_CHECKS = "async (timeout) => {\n" + JS_PRELUDE + r"""

  // MathJax 3 typesets after it has loaded; wait for it when the page loads it.
  const loadsMathJax = Array.from(document.scripts).some(
    (s) => /mathjax[^?]*\/(?:tex|mml)-[\w-]+\.js|\/MathJax\.js/i.test(s.src));
  await until(() => !loadsMathJax ||
                    (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise));
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    try { await Promise.race([window.MathJax.startup.promise, sleep(timeout)]); }
    catch (e) { add("math", "MathJax failed: " + e); }
  }

  // Images: load lazy ones now, then wait for every image to settle.
  const imgs = Array.from(document.images);
  imgs.forEach((img) => { if (img.loading === "lazy") img.loading = "eager"; });
  await until(() => imgs.every((img) => img.complete));
  for (const img of imgs) {
    if (!img.complete || img.naturalWidth === 0) {
      add("image", "image did not load: " + (img.currentSrc || img.src || img.outerHTML));
    }
  }

  // Widgets: the widget manager puts a div.widget-subarea before each view's script tag.
  const views = Array.from(
    document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
  // A view hidden by its own saved state (tqdm hides a leave=False bar when it is done) is
  // rendered; the book's CSS collapses it.
  const hiddenByState = (box) => Array.from(box.children).every(
    (c) => c.style.visibility === "hidden" || c.style.display === "none");
  const rendered = (s) => {
    const box = s.previousElementSibling;
    return box && box.classList.contains("widget-subarea") && box.childElementCount > 0 &&
      (box.getBoundingClientRect().height > 0 || hiddenByState(box));
  };
  await until(() => views.every(rendered));
  for (const s of views) {
    let id = "?";
    try { id = JSON.parse(s.textContent).model_id; } catch (e) { /* reported below */ }
    if (!rendered(s)) { add("widget", "widget " + id + " did not render"); continue; }
    const box = s.previousElementSibling;
    if (/Error displaying widget|Could not create a view/.test(box.textContent) ||
        box.querySelector(".jupyter-widgets-error-widget, .widget-error")) {
      add("widget", "widget " + id + " shows an error: " + short(box.textContent));
    }
  }
  const outputs = Array.from(document.querySelectorAll(".cell_output, .output"));
  const fallback = new RegExp(
    "\\b(?:HBox|VBox|Box|interactive|FloatProgress|IntProgress|Output|Tab|Accordion)" +
    "\\(children=|\\bLoading widget\\.\\.\\.|\\bWidget not rendered\\b|" +
    "\\bError displaying widget\\b");
  for (const o of outputs) {
    if (o.closest(".widget-subarea")) continue;
    const m = (o.innerText || "").match(fallback);
    if (m && !o.parentElement.closest(".cell_output, .output")) {
      add("widget", "widget shown as its text fallback: " + short(m[0]));
    }
  }

  // Raw math delimiters in the text a reader sees (code and outputs in <pre> are left alone).
  const skip = "pre, code, script, style, textarea, kbd, samp, .highlight, mjx-container, " +
               ".widget-subarea";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let text = "";
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip)) continue;  // hidden text counts too (a collapsed section)
    text += n.nodeValue + "\n";
  }
  const raw = text.match(/\\\(|\\\[|\$\$/g) || [];
  if (raw.length) {
    const i = text.search(/\\\(|\\\[|\$\$/);
    add("math", raw.length + " raw math delimiter(s) in the text, first: " +
        short(text.slice(Math.max(0, i - 20), i + 60)));
  }
  for (const m of document.querySelectorAll("span.math, div.math")) {
    if (!m.querySelector("mjx-container") && /\\\(|\\\[|\$/.test(m.textContent)) {
      add("math", "math not typeset: " + short(m.textContent));
    }
  }
  for (const e of document.querySelectorAll("mjx-merror, [data-mjx-error]")) {
    add("math", "MathJax error: " + (e.getAttribute("data-mjx-error") || short(e.textContent)));
  }

  // Python tracebacks and error outputs.
  for (const o of document.querySelectorAll(".cell_output .traceback, .output.traceback, " +
                                             ".output.error, .output_error")) {
    add("traceback", "error output: " + short(o.textContent));
  }
  for (const o of outputs) {
    if (o.parentElement.closest(".cell_output, .output")) continue;
    const t = o.textContent || "";
    const i = t.indexOf("Traceback (most recent call last)");
    if (i >= 0 && !o.querySelector(".traceback")) {
      add("traceback", "traceback in an output: " + short(t.slice(i, i + 160)));
    }
    if (/\x1b\[[0-9;]*m|\[0;3[0-9]m/.test(t)) {
      add("traceback", "raw ANSI escape in an output: " + short(t));
    }
    // a matplotlib figure shown as its repr: the notebook had no inline backend
    if (/<Figure size \d+x\d+ with \d+ Axes>/.test(t)) {
      add("image", "a figure printed as text, not drawn: " + short(t));
    }
  }

  // Output lines cut at the right edge: a <pre> in an output wider than its box.
  for (const p of document.querySelectorAll(".cell_output pre, .output pre")) {
    if (p.closest(".cell_input, .widget-subarea")) continue;
    if (p.scrollWidth > p.clientWidth + 2) {
      const line = (p.textContent || "").split("\n")
        .reduce((a, b) => (b.length > a.length ? b : a), "");
      add("overflow", "output wider than the page (" + p.scrollWidth + " > " + p.clientWidth +
          " px): " + short(line));
    }
  }
  return problems;
}
"""

# Runs in the page; true when the notebook's kernel is idle and no cell is queued or running.
KERNEL_IDLE = r"""
() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.sessionContext || !panel.content) return false;
  const ctx = panel.sessionContext;
  if (!ctx.session || !ctx.session.kernel || ctx.isReady === false) return false;
  if (ctx.kernelDisplayStatus !== "idle") return false;
  return !Array.from(panel.content.node.querySelectorAll(".jp-InputPrompt"))
    .some((p) => p.textContent.includes("*"));
}
"""

# Runs in the page after Run All: returns [[kind, detail], ...] for the current notebook.
NOTEBOOK_CHECKS = "async (timeout) => {\n" + JS_PRELUDE + r"""
  const panel = window.jupyterapp.shell.currentWidget;
  const nb = panel.content.node;

  // Errors, from the notebook's model (what would be saved), and cells Run All never reached.
  let notRun = 0;
  panel.content.widgets.forEach((cell, i) => {
    const m = cell.model;
    if (m.type !== "code" || !m.sharedModel.getSource().trim()) return;
    if (m.executionCount === null) notRun += 1;
    for (const o of m.outputs.toJSON()) {
      if (o.output_type === "error") add("error", `cell ${i + 1}: ${o.ename}: ${short(o.evalue)}`);
    }
  });
  if (notRun) add("error", `${notRun} code cell(s) did not run`);

  // Rendered markdown (cells and markdown outputs) as a reader sees it; inline code is kept
  // between backticks so that an unparsed role reads as it was written: {cite}`key`.
  const skip = "pre, script, style, textarea, .katex, mjx-container, .MathJax, " +
               ".jp-InputArea-editor, .jp-Toolbar, .cm-editor";
  const textOf = (root) => {
    let out = "";
    const walk = (n) => {
      if (n.nodeType === Node.TEXT_NODE) { out += n.nodeValue; return; }
      if (n.nodeType !== Node.ELEMENT_NODE || n.matches(skip)) return;
      if (n.tagName === "CODE") { out += "`" + n.textContent + "`"; return; }
      if (/^(P|DIV|LI|H[1-6]|BR|TR|BLOCKQUOTE|ASIDE|DETAILS|SUMMARY)$/.test(n.tagName)) out += "\n";
      n.childNodes.forEach(walk);
    };
    walk(root);
    return out;
  };
  const blocks = Array.from(nb.querySelectorAll(
    ".jp-MarkdownCell, .jp-OutputArea-output[data-mime-type='text/markdown']"));
  let unresolved = 0;
  for (const b of blocks) {
    const text = textOf(b);
    const role = text.match(/\{[a-z][\w-]*(?::[\w-]+)*\}`[^`\n]*`/);
    if (role) add("markup", "raw role in rendered markdown: " + short(role[0]));
    const fence = text.match(/^[ \t]*(?:`{3,}|~{3,}|:{3,})[ \t]*\{[a-z][\w:-]*\}.*$/m);
    if (fence) add("markup", "raw directive fence in rendered markdown: " + short(fence[0]));
    // an unparsed ```{note} fence becomes a code block of the language "{note}"
    for (const c of b.querySelectorAll("pre code[class*='language-{'], pre[class*='language-{']")) {
      const lang = (c.className.match(/language-(\{[^}\s]*\})/) || [, "{?}"])[1];
      add("markup", `directive ${lang} shown as a code block: ` + short(c.textContent));
    }
    // jupyterlab-myst shows a directive or role it does not know as an error box
    for (const e of b.querySelectorAll("aside, details, div")) {
      const head = e.firstElementChild ? e.firstElementChild.textContent : "";
      if (/ - Unknown (Directive|Role)\b/.test(head)) add("markup", short(head));
    }
    unresolved += b.querySelectorAll("[title='Citation Not Found']").length;
  }

  // Images: every one must have loaded (figures, markdown images, outputs).
  const imgs = Array.from(nb.querySelectorAll("img"));
  imgs.forEach((img) => { if (img.loading === "lazy") img.loading = "eager"; });
  await until(() => imgs.every((img) => img.complete));
  for (const img of imgs) {
    if (!img.complete || img.naturalWidth === 0) {
      const src = (img.getAttribute("src") || img.outerHTML).split("?")[0];
      add("image", "image did not load: " + (src.startsWith("data:") ? src.slice(0, 60) : src));
    }
  }

  // Widgets: an error in place of a view, a view still loading, or the text fallback a
  // notebook shows without the widget manager.
  const fallback = new RegExp(
    "\\b(?:HBox|VBox|Box|interactive|FloatProgress|IntProgress|Output|Tab|Accordion|Dropdown)" +
    "\\(children=|\\bError displaying widget\\b|\\bLoading widget\\.\\.\\.|" +
    "\\bCould not create a view\\b|\\bWidget not rendered\\b");
  await until(() => !Array.from(nb.querySelectorAll(".jp-OutputArea-output"))
    .some((o) => /Loading widget\.\.\./.test(o.textContent)));
  for (const o of nb.querySelectorAll(".jp-OutputArea-output")) {
    if (o.parentElement.closest(".jp-OutputArea-output")) continue;
    const m = (o.textContent || "").match(fallback);
    if (m) add("widget", "widget not rendered: " + short(m[0]));
  }
  return {problems, unresolved, images: imgs.length,
          explorers: nb.querySelectorAll(".widget-interact").length};
}
"""

# Counts the kernel's turns (idle to busy), so that a widget change is known to have reached it.
WATCH_KERNEL = r"""
() => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const w = window.__checkLab = {started: 0, busy: false};
  kernel.statusChanged.connect((_, status) => {
    if (status === "busy" && !w.busy) { w.busy = true; w.started += 1; }
    else if (status === "idle") w.busy = false;
  });
}
"""

# The figure an explorer shows: its images' sources (inline PNG data), or its output's text.
EXPLORER_STATE = r"""
(box) => {
  const out = box.querySelector(".widget-output") || box;
  const imgs = Array.from(out.querySelectorAll("img")).map((i) => i.getAttribute("src") || "");
  return {figure: imgs.join("|") || out.textContent, imgs: imgs.length};
}
"""
