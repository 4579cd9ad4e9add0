"""The review page's HTML shell (``vara.eval.review`` fills in the title and the data).

The shell holds no model text: the title is escaped by the caller and the data is inert
JSON (``type="application/json"``) that ``review.js`` parses and renders with
``textContent``. Everything the page needs lies beside it: ``review.css``, ``review.js``,
``strips/``, ``media/``; no CDN, no server.
"""

from __future__ import annotations

__all__ = ["PAGE_TEMPLATE"]

PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="review.css"></head>
<body>
<header><h1>{title}</h1><p id="notes" class="muted"></p></header>
<main>
<section id="top">
 <div id="player-box">
  <label>video <select id="video-select"></select></label>
  <video id="player" controls preload="metadata" muted></video>
  <p id="video-note" class="muted"></p>
 </div>
 <aside id="card"><p class="muted">Click a window on a lane to see what the model saw and
 said. Keys: <kbd>n</kbd>/<kbd>&rarr;</kbd> next window, <kbd>p</kbd>/<kbd>&larr;</kbd>
 previous, <kbd>space</kbd> play/pause, <kbd>+</kbd>/<kbd>-</kbd> zoom (or the wheel).</p>
 </aside>
</section>
<section id="controls">
 <label>label <select id="f-label"><option value="">all</option></select></label>
 <label>score <input id="f-smin" type="number" min="0" max="1" step="0.05" value="0">
 &ndash; <input id="f-smax" type="number" min="0" max="1" step="0.05" value="1"></label>
 <label><input id="f-runs" type="checkbox"> runs disagree</label>
 <label><input id="f-truth" type="checkbox"> differs from truth</label>
 <label><input id="f-failed" type="checkbox"> failed</label>
 <label title="also labels no run, truth or correction gives this video"><input id="f-empty"
 type="checkbox"> empty lanes</label>
 <span id="f-count" class="muted"></span>
 <span class="spacer"></span>
 <button id="zoom-all" type="button">whole video</button>
 <span id="edits" class="muted"></span>
 <button id="export" type="button">Export corrections</button>
 <a id="export-link" download="corrections.csv" hidden>corrections.csv</a>
</section>
<section id="lanes-box"><canvas id="lanes"></canvas></section>
</main>
<script type="application/json" id="review-data">{data}</script>
<script src="review.js"></script>
</body></html>
"""
