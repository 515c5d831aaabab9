"""The JavaScript that tools/check_lab.py runs in JupyterLab's page."""

from __future__ import annotations

from check_book import JS_PRELUDE

__all__ = ["KERNEL_IDLE", "NOTEBOOK_CHECKS", "WATCH_KERNEL", "EXPLORER_STATE"]

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
