"""The page's script for exploring the embedding map (passed to `launch(js=...)`).

gr.Plot has no select event (only `change`), so the map's interactions live in the browser,
on the plotly figure Gradio draws (`window.Plotly`; Gradio redraws a new figure with
`Plotly.react` on the same element, which keeps the listeners bound here):
- hover: plotly's label shows the query, its expected and given answers (from the figure); this
  adds a card with the clean and perturbed thumbnails (`layout.meta.thumbnails`);
- click: writes "index:time" into the hidden #map-pick textbox, whose change event loads the
  reference query into the inputs;
- the join toggle (#map-join) and the kind filter (#map-kinds) show or hide traces by their
  `meta` (`vittle.app.map_figure`), again after every redraw, so a new turn keeps the choice.
"""

MAP_SCRIPT = r"""
() => {
  const view = {join: false, kinds: null};  // kinds: null = all
  const card = document.createElement('div');
  card.id = 'map-hover-card';
  card.style.cssText = 'position:fixed;display:none;pointer-events:none;z-index:1000;background:#fff;border:1px solid #999;' +
                       'border-radius:6px;padding:6px;font:12px sans-serif;box-shadow:0 2px 8px rgba(0,0,0,.25)';
  document.body.appendChild(card);
  const shown = (kind) => view.kinds === null || view.kinds.includes(kind);

  function apply(gd) {
    if (!gd || !gd.data) return;
    const values = [], indices = [];
    gd.data.forEach((trace, i) => {
      const meta = trace.meta || {};
      const now = trace.visible === undefined ? true : trace.visible;
      let want;
      if (meta.part === 'points') want = shown(meta.kind) ? (now === 'legendonly' ? 'legendonly' : true) : false;
      else if (meta.part === 'join') want = view.join && shown(meta.kind);
      else return;
      if (now !== want) { values.push(want); indices.push(i); }
    });
    if (indices.length) window.Plotly.restyle(gd, {visible: values}, indices);
  }

  function pick(index) {
    const box = document.querySelector('#map-pick textarea, #map-pick input');
    if (!box) return;
    box.value = index + ':' + Date.now();
    box.dispatchEvent(new Event('input', {bubbles: true}));
  }

  function thumbnails(gd, index, event) {
    const thumbs = (gd.layout.meta || {}).thumbnails || {};
    const setting = (gd.layout.meta || {}).setting || 'perturbed';
    const image = (uri, label) => uri ? '<figure style="margin:0 4px;text-align:center"><img src="' + uri +
      '" width="80" height="80" style="image-rendering:pixelated;display:block"><figcaption>' + label + '</figcaption></figure>' : '';
    const html = image((thumbs.clean || [])[index], 'clean') + image((thumbs.perturbed || [])[index], setting);
    if (!html) { card.style.display = 'none'; return; }
    card.innerHTML = '<div style="display:flex">' + html + '</div>';
    card.style.display = 'block';
    const x = event && event.clientX !== undefined ? event.clientX : 0, y = event && event.clientY !== undefined ? event.clientY : 0;
    const box = card.getBoundingClientRect();
    card.style.left = Math.max(4, Math.min(x - box.width - 16, window.innerWidth - box.width - 4)) + 'px';
    card.style.top = Math.max(4, y - box.height - 16) + 'px';
  }

  function bind(gd) {
    if (gd.vittleBound) return;
    gd.vittleBound = true;
    gd.on('plotly_hover', (event) => {
      const point = event.points && event.points[0];
      if (point && (point.data.meta || {}).part === 'points') thumbnails(gd, point.customdata, event.event);
    });
    gd.on('plotly_unhover', () => { card.style.display = 'none'; });
    gd.on('plotly_click', (event) => {
      const point = event.points && event.points[0];
      if (point && (point.data.meta || {}).part === 'points') pick(point.customdata);
    });
    gd.on('plotly_afterplot', () => apply(gd));
    apply(gd);
  }

  const find = () => document.querySelector('#embedding-plot .js-plotly-plot');
  new MutationObserver(() => { const gd = find(); if (gd && gd.on) bind(gd); })
    .observe(document.body, {childList: true, subtree: true});
  window.vittleMap = {
    setJoin(on) { view.join = !!on; apply(find()); },
    setKinds(kinds) { view.kinds = Array.isArray(kinds) ? kinds : null; apply(find()); },
  };
}
"""
