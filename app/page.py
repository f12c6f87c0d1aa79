"""The page's fixed parts: its introduction, style and question templates, the perturbation
menus, and how a result or an error is put on the page."""

from __future__ import annotations

import html
import logging

import gradio as gr

from vittle.analysis.perturb import list_perturbations, unavailable
from vittle.app.inputs import InputError
from vittle.app.query import NONE

logger = logging.getLogger(__name__)

INTRO = """# Vittle: does an information bottleneck make a model robust?
Ask a baseline and a Vittle model the same question about an image, clean and perturbed: see whether the perturbation
changes their answers, and (in the tabs below) what it does inside them."""


SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
SYSTEM_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]


def theme() -> gr.themes.Base:
    """Gradio's default theme in the visitor's own fonts: the default's web fonts are four
    downloads (the regular face alone is 100 KB) that a page's text waits for on a slow link."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO)


def intro_html() -> str:
    """`INTRO` as the page's own HTML, put before Gradio's app by the server (`PageMiddleware`):
    a visitor reads the title and what the page does at the first paint, instead of after every
    script of the app has loaded and run (about 6 s on a slow phone). Its box is the one Gradio
    gives its first block at each of its breakpoints (the same left edge and width as the
    inputs under it), so nothing moves when the app appears below it."""
    title, *rest = INTRO.strip().splitlines()
    fonts = ", ".join(f'"{font}"' if " " in font else font for font in SYSTEM_FONTS)
    breakpoints = "".join(f"@media (min-width: {width}px) {{ #intro {{ max-width: {width}px; }} }}"
                          for width in (640, 768, 1024, 1280, 1536, 1920))
    style = ("#intro { box-sizing: border-box; width: 100%; margin: 0 auto; padding: 16px 32px 0; "
             f"font-family: {fonts}; }}"
             "#intro h1 { font-size: 26px; line-height: 1.3; font-weight: 600; margin: 0 0 8px; }"
             "#intro p { font-size: 14px; line-height: 1.625; margin: 16px 0 0; }"
             # Gradio's page colours its body by the system's scheme only; a dark theme asked for in
             # the link (?__theme=dark) darkens the app's box alone, and would leave this one white
             "body.dark { background: var(--bg-dark); color: var(--col-dark); }" + breakpoints)
    return (f"<style>{style}</style><header id=\"intro\"><h1>{html.escape(title.removeprefix('# '))}</h1>"
            f"<p>{html.escape(' '.join(line.strip() for line in rest))}</p></header>")


SCROLL_TO_ANSWERS = ("() => { if (window.innerWidth < 800) { "
                     "document.querySelector('#perturbation')?.scrollIntoView({behavior: 'smooth', block: 'start'}); } }")
SCROLL_IF_HIDDEN = ("() => { const el = document.querySelector('#perturbation'); if (window.innerWidth < 800 && el) { "
                    "const top = el.getBoundingClientRect().top; "
                    "if (top < -50 || top > window.innerHeight) { el.scrollIntoView({block: 'start'}); } } }")
"""After a turn, on a narrow screen: the answers back in view if the page moved under the smooth
scroll of the click (results that arrive while it scrolls can cut it short)."""

KEYS_SCRIPT = r"""
() => {
  // Enter in a slider's number box applies the number typed (Gradio applies it when the box loses focus)
  document.addEventListener('keydown', (event) => {
    const box = event.target;
    if (event.key === 'Enter' && box instanceof HTMLInputElement && box.type === 'number') box.blur();
  });
  // every image gets a text alternative (the examples' thumbnails come without one); an icon whose
  // button or link already says its alt text is decorative; an empty placeholder needs no label
  const describe = () => {
    document.querySelectorAll('button img[alt]:not([alt=""]), a img[alt]:not([alt=""])').forEach((img) => {
      if ((img.closest('button, a').textContent || '').includes(img.alt)) {  // the label says it already
        img.alt = '';
        img.dataset.decorative = '1';
      }
    });
    document.querySelectorAll('img:not([alt]):not([data-decorative]), img[alt=""]:not([data-decorative])').forEach((img) => {
      const name = decodeURIComponent((img.src.split('/').pop() || '').split('?')[0]).replace(/\.[a-z]+$/i, '').replace(/[-_]+/g, ' ');
      img.alt = img.closest('#query-image, #perturbed-image') ? `Query image ${name}` : `Example image: ${name}`;
    });
    document.querySelectorAll('div.empty[aria-label]').forEach((box) => box.removeAttribute('aria-label'));
    document.querySelectorAll('button.upload-container[aria-label]').forEach((button) => {
      if ((button.textContent || '').trim()) button.removeAttribute('aria-label');  // its visible text names it
    });
  };
  // the inputs' row shows once all its kinds of part are drawn (the page's style), or after 5 s whatever is drawn
  setTimeout(() => document.querySelector('.gradio-container')?.classList.add('vittle-shown'), 5000);
  // at most once per 50 ms: the page's parts mount in many small steps while it loads
  let queued = false;
  const soon = () => { if (!queued) { queued = true; setTimeout(() => { queued = false; describe(); }, 50); } };
  new MutationObserver(soon).observe(document.body, {childList: true, subtree: true});
  describe();
}
"""
"""The page's keyboard and accessibility helpers (run with the map's script: `page_script`)."""


def page_script(*scripts: str) -> str:
    """One function for `launch(js=...)` that runs each of `scripts` (each "() => {...}")."""
    return "() => {\n" + "\n".join(f"  ({script.strip()})();" for script in scripts) + "\n}"


QUESTION_TEMPLATES = [["what color is the shape?"], ["what shape is this?"], ["is there a red shape?"], ["is there not a circle?"],
                      ["Does this image contain a triangle?"]]
"""easy-vqa's kinds of question: colour, shape, yes/no (also negated)."""

CSS = """
#query-image img, #perturbed-image img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
#robustness-table table { display: block; overflow-x: auto; }
#robustness-plot:has(.empty) { display: none !important; }  /* models in neither study: no figure, no empty box */
#robustness-table td, #robustness-table th { overflow-wrap: normal; word-break: normal; hyphens: none; }
#results:has(#stale p) .block:not(#stale):not(#status):not(#finding) { opacity: 0.45; }
#domain-badge p { background: #fff4e5; border-left: 4px solid #b45309; padding: 6px 10px; color: #5c2d00; }
#stale p { color: #5c2d00; }
#status { min-height: 3.2em; }
#query-image { min-height: 200px; } #perturbed-image { min-height: 220px; } #actions { min-height: 40px; }
.gradio-container:not(READY):not(.vittle-shown) #workspace { visibility: hidden; }
.gradio-container:not(READY):not(.vittle-shown) .tabs, .gradio-container:not(READY):not(.vittle-shown) footer { display: none; }
.gradio-container > .main > .wrap[data-testid="status-tracker"] { display: none !important; }
#run { background: #b93a0a; border-color: #b93a0a; color: #fff; }
#run:hover { background: #9a3008; }
footer .show-api, footer .built-with, footer .settings, .upload-container .or { color: #374151 !important; }
.paginate button { min-width: 24px; min-height: 24px; }
.tab-container button.selected { color: #b93a0a; }
@media (max-width: 800px) { .tab-container button { padding-left: 5px; padding-right: 5px; font-size: 12px; } }
"""
"""The page's own style (passed to `launch`): a small image (easy-vqa's are 64 x 64) fills its box,
enlarged by nearest neighbour, so a corruption's pixels can be seen; the gate table scrolls
instead of breaking words; results of earlier settings are greyed while the stale line shows;
the out-of-domain badge stands out; the status line keeps its height while its words change (no layout
shift); Run, the footer and the upload box's text have a 4.5:1 contrast; the examples' page buttons
are 24 px targets.

Nothing on the first screen moves while the page loads (Lighthouse's layout shift was 0.23 on
desktop, 0.22 of it Gradio's own "Loading..." overlay, which grew and moved with the page):
Gradio draws each part once its component code has loaded, in whatever order that code arrives:
on a slow link the results' column and the rows under an image moved as the parts above them
appeared (0.17 on a throttled phone), and the tabs and the footer, drawn first, were pushed off
the screen. The inputs' and results' row stays invisible (its space kept) until a part of each
of its kinds is drawn (`FIRST_PARTS`; after 5 s it shows whatever is there), and the tabs and the
footer wait for it. The overlay goes as soon as this style arrives (with the app's config, before its parts);
the images and the Run row keep their height while their code loads. On a narrow screen the
four tab names fit on one line (no "..." menu) in a wide system font (DejaVu Sans: 12 px)."""


FIRST_PARTS = ("#query-image", "#question", "#status p", "#visual", "#severity", "#actions #run", "#vittle", "#examples",
               "#perturbed-image", "#baseline-distribution")
"""Parts of the inputs' and results' row, one per kind of Gradio component in it: each kind's
code arrives on its own, and Gradio draws a part when its kind's code has run."""
CSS = CSS.replace("READY", "".join(f":has({part})" for part in FIRST_PARTS))


def choices(modality: str) -> list[tuple[str, str]]:
    """The menu: every perturbation of `modality` whose data is installed here."""
    return [("None", NONE)] + [(p.label, p.name) for p in list_perturbations(modality) if unavailable(p.name) is None]


def hidden_note() -> str:
    """A line naming the perturbations hidden on this server and what they need ("" if none)."""
    reasons: dict[str, list[str]] = {}
    for perturbation in list_perturbations():
        why = unavailable(perturbation.name)
        if why:
            reasons.setdefault(why, []).append(perturbation.label)
    if not reasons:
        return ""
    return "Not offered on this server: " + "; ".join(f"{', '.join(labels)} ({why})" for why, labels in reasons.items()) + "."


def user_error(err: Exception) -> gr.Error:
    """A message for the page: the input error as written, anything else without internals."""
    if isinstance(err, InputError):
        return gr.Error(str(err), title="Cannot use this input", print_exception=False)
    logger.exception("request failed")
    return gr.Error(f"The server could not complete this request ({type(err).__name__}: {err}). "
                    "Other requests are not affected.", title="Server error")
