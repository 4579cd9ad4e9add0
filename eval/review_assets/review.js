// vara review page: a video, its timeline lanes on one canvas, a card per window, filters,
// corrections exported as an interval manifest. Written by `vara review` (eval/review.py).
//
// Model text (captions, explanations, evidence, raw answers) only ever reaches the DOM through
// textContent; the data arrives as inert JSON. Lanes are drawn on a canvas so a 2-hour video
// (3,600 windows a run) stays fast; frame strips load when their card opens.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("review-data").textContent);
  const $ = (id) => document.getElementById(id);
  const player = $("player"), canvas = $("lanes"), card = $("card");
  const ROW_H = 18, AXIS_H = 22, GUTTER = 190, EDGE_PX = 5;
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
  const color = (label) => PALETTE[Math.max(0, D.labels.indexOf(label)) % PALETTE.length];
  const S = {v: 0, view: [0, 1], sel: null, rows: [], matches: [], drag: null, edits: 0,
    corr: D.videos.map((v) => initialCorrections(v))};

  function el(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  // ---- corrections: per video, per label, sorted disjoint [start, end] intervals ----------
  function initialCorrections(video) {
    const c = {};
    D.labels.forEach((l) => { c[l] = []; });
    const base = video.runs[0];
    if (base) base.events.forEach(([li, s, e]) => c[D.labels[li]].push([s, e]));
    D.labels.forEach((l) => { c[l] = normalise(c[l]); });
    return c;
  }
  function normalise(spans) {
    const out = [];
    spans.filter(([s, e]) => e - s > 1e-6).sort((a, b) => a[0] - b[0]).forEach(([s, e]) => {
      const last = out[out.length - 1];
      if (last && s <= last[1] + 1e-9) last[1] = Math.max(last[1], e);
      else out.push([s, e]);
    });
    return out;
  }
  function subtract(spans, a, b) {
    const out = [];
    spans.forEach(([s, e]) => {
      if (e <= a || s >= b) { out.push([s, e]); return; }
      if (s < a) out.push([s, a]);
      if (e > b) out.push([b, e]);
    });
    return out;
  }
  function covered(spans, s, e) {
    let t = 0;
    spans.forEach(([a, b]) => { t += Math.max(0, Math.min(b, e) - Math.max(a, s)); });
    return t;
  }
  // A window is positive for a label when more than half of it is annotated: the windowing
  // rule vara eval applies to an interval manifest (tools/window_rule.py, min_overlap 0.5).
  const correctedOn = (label, w) => covered(S.corr[S.v][label], w.s, w.e) > 0.5 * (w.e - w.s);
  function hop(windows) {
    const d = [];
    for (let i = 1; i < windows.length; i++) d.push(windows[i].s - windows[i - 1].s);
    d.sort((a, b) => a - b);
    return d.length ? d[d.length >> 1] : 0;
  }
  // On: the window's span joins the label's intervals. Off: its middle (its own share of
  // time, the hop between window starts, at least half of it) leaves them, so its
  // neighbours keep their label (exact for overlaps up to one half).
  function setLabel(label, w, on) {
    const c = S.corr[S.v];
    if (on) {
      c[label] = normalise(c[label].concat([[w.s, w.e]]));
      if (!D.multi_label) D.labels.filter((l) => l !== label).forEach((l) => setLabel(l, w, false));
    } else {
      const len = w.e - w.s, cut = Math.max(hop(video().runs[0].windows), len / 2);
      const mid = (w.s + w.e) / 2;
      c[label] = subtract(c[label], Math.max(w.s, mid - cut / 2), Math.min(w.e, mid + cut / 2));
    }
    S.edits++;
  }
  const csvField = (x) => (/[",\n\r]/.test(x) ? '"' + x.replace(/"/g, '""') + '"' : x);
  function correctionsCsv() {
    const rows = [["video", "label", "start_s", "end_s"]];
    D.videos.forEach((v, k) => {
      let any = false;
      D.labels.forEach((l) => S.corr[k][l].forEach(([s, e]) => {
        any = true;
        rows.push([v.path, l, s.toFixed(3), e.toFixed(3)]);
      }));
      if (!any) rows.push([v.path, "", "", ""]);
    });
    return rows.map((r) => r.map(csvField).join(",")).join("\n") + "\n";
  }

  // ---- geometry ---------------------------------------------------------------------------
  const video = () => D.videos[S.v];
  const width = () => canvas.clientWidth;
  const xOf = (t) => GUTTER + (t - S.view[0]) / (S.view[1] - S.view[0]) * (width() - GUTTER);
  const tOf = (x) => S.view[0] + (x - GUTTER) / (width() - GUTTER) * (S.view[1] - S.view[0]);
  function occurring() {  // labels a run, the truth or the corrections give this video
    const v = video(), seen = new Set();
    v.runs.forEach((lane) => lane.events.forEach(([li]) => seen.add(D.labels[li])));
    if (v.truth) Object.entries(v.truth).forEach(([l, spans]) => { if (spans.length) seen.add(l); });
    Object.entries(S.corr[S.v]).forEach(([l, spans]) => { if (spans.length) seen.add(l); });
    return seen;
  }
  function layoutRows() {
    const f = $("f-label").value, rows = [{kind: "marks", name: "filter matches / failed"}];
    const seen = $("f-empty").checked ? new Set(D.labels) : occurring();
    D.labels.filter((l) => (f ? l === f : seen.has(l))).forEach((label) => {
      D.runs.forEach((run, r) => rows.push({kind: "run", r, label, name: label + " · " + run.name}));
      if (video().truth) rows.push({kind: "truth", label, name: label + " · truth"});
      rows.push({kind: "corr", label, name: label + " · corrected"});
    });
    S.rows = rows;
    canvas.style.height = (AXIS_H + rows.length * ROW_H + 4) + "px";
  }
  function rowAt(y) { return S.rows[Math.floor((y - AXIS_H) / ROW_H)]; }
  function windowAt(r, t) {  // the window of run r holding t whose middle is nearest t
    const ws = video().runs[r].windows;
    let lo = 0, hi = ws.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (ws[m].s <= t) lo = m + 1; else hi = m; }
    let best = -1, bd = Infinity;
    for (let i = lo - 1; i >= 0 && i >= lo - 8; i--) {
      const w = ws[i];
      if (w.s <= t && t <= w.e && Math.abs((w.s + w.e) / 2 - t) < bd) {
        best = i; bd = Math.abs((w.s + w.e) / 2 - t);
      }
    }
    return best;
  }

  // ---- drawing ----------------------------------------------------------------------------
  function draw() {
    const dpr = window.devicePixelRatio || 1, w = width(), h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    g.font = "11px system-ui, sans-serif"; g.textBaseline = "middle";
    drawAxis(g, w);
    const [t0, t1] = S.view;
    S.rows.forEach((row, k) => {
      const y = AXIS_H + k * ROW_H;
      g.fillStyle = k % 2 ? "#fafbfc" : "#fff"; g.fillRect(0, y, w, ROW_H);
      g.fillStyle = "#24292f"; g.fillText(row.name.slice(0, 32), 4, y + ROW_H / 2);
      g.save(); g.beginPath(); g.rect(GUTTER, y, w - GUTTER, ROW_H); g.clip();
      drawRow(g, row, y, t0, t1);
      g.restore();
    });
    const x = xOf(player.currentTime || 0);
    g.strokeStyle = "#cf222e"; g.lineWidth = 1.5;
    g.beginPath(); g.moveTo(x, 0); g.lineTo(x, h); g.stroke();
  }
  function drawAxis(g, w) {
    const [t0, t1] = S.view, span = t1 - t0;
    const steps = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
    const step = steps.find((s) => span / s <= (w - GUTTER) / 70) || 7200;
    g.fillStyle = "#59636e"; g.strokeStyle = "#d1d9e0";
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const x = xOf(t);
      g.beginPath(); g.moveTo(x, AXIS_H - 6); g.lineTo(x, AXIS_H); g.stroke();
      g.fillText(fmtTime(t), x + 2, AXIS_H / 2 - 2);
    }
  }
  function spanRect(g, s, e, y, t0, t1) {
    if (e < t0 || s > t1) return;
    const a = xOf(s), b = xOf(e);
    g.fillRect(a, y + 3, Math.max(1, b - a), ROW_H - 6);
  }
  function drawRow(g, row, y, t0, t1) {
    const v = video();
    if (row.kind === "marks") {
      g.fillStyle = "#bc4c00";
      if (S.filtering)
      S.matches.forEach((m) => spanRect(g, m.w.s, m.w.e, y, t0, t1));
      g.fillStyle = "#cf222e";
      v.runs.forEach((lane) => lane.windows.forEach((w) => {
        if (w.status === "failed") spanRect(g, w.s, w.e, y + ROW_H / 3, t0, t1);
      }));
    } else if (row.kind === "run") {
      const lane = v.runs[row.r];
      lane.events.forEach(([li, s, e, score]) => {
        if (D.labels[li] !== row.label) return;
        g.globalAlpha = score === null || score === undefined ? 0.85 : 0.35 + 0.6 * score;
        g.fillStyle = color(row.label); spanRect(g, s, e, y, t0, t1);
      });
      g.globalAlpha = 1;
      if (S.sel && S.sel.r === row.r) {
        const w = lane.windows[S.sel.i];
        g.strokeStyle = "#000"; g.lineWidth = 2;
        g.strokeRect(xOf(w.s), y + 2, Math.max(2, xOf(w.e) - xOf(w.s)), ROW_H - 4);
      }
    } else {
      const spans = row.kind === "truth" ? (v.truth[row.label] || []) : S.corr[S.v][row.label];
      g.fillStyle = row.kind === "truth" ? "#57606a" : color(row.label);
      spans.forEach(([s, e]) => spanRect(g, s, e, y, t0, t1));
      if (row.kind === "corr") {
        g.fillStyle = "#000";
        spans.forEach(([s, e]) => [s, e].forEach((t) => {
          if (t >= t0 && t <= t1) g.fillRect(xOf(t) - 1, y + 1, 2, ROW_H - 2);
        }));
      }
    }
  }
  function fmtTime(t) {
    const m = Math.floor(t / 60), s = t - 60 * m;
    return m ? m + ":" + s.toFixed(s % 1 ? 1 : 0).padStart(2, "0") : s.toFixed(s % 1 ? 1 : 0) + "s";
  }
  let drawQueued = false;
  function redraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; draw(); });
  }

  // ---- filters ----------------------------------------------------------------------------
  const same = (a, b) => a.length === b.length && a.every((x) => b.includes(x));
  function applyFilters() {
    const label = $("f-label").value, smin = +$("f-smin").value, smax = +$("f-smax").value;
    const wantRuns = $("f-runs").checked, wantTruth = $("f-truth").checked;
    const wantFailed = $("f-failed").checked, fullRange = smin <= 0 && smax >= 1;
    S.filtering = !!label || !fullRange || wantRuns || wantTruth || wantFailed;
    const v = video(), byId = v.runs.map((lane) => new Map(lane.windows.map((w) => [w.id, w])));
    const out = [];
    v.runs.forEach((lane, r) => lane.windows.forEach((w, i) => {
      const labels = w.labels || [];
      if (wantFailed && w.status !== "failed") return;
      if (label && !labels.includes(label) && !(w.truth || []).includes(label)) return;
      if (!fullRange) {
        if (!w.scores) return;
        const sc = w.scores.filter((x) => !label || x[0] === label).map((x) => x[1]);
        const top = sc.length ? Math.max(...sc) : -1;
        if (top < smin || top > smax) return;
      }
      if (wantTruth && (!w.truth || w.status !== "ok" || same(labels, w.truth))) return;
      if (wantRuns) {  // windows two runs both answered, with other labels
        if (w.status !== "ok") return;
        const others = byId.filter((m, k) => k !== r).map((m) => m.get(w.id)).filter(Boolean);
        if (!others.some((o) => o.status === "ok" && !same(o.labels, labels))) return;
      }
      out.push({r, i, w});
    }));
    out.sort((a, b) => a.w.s - b.w.s || a.r - b.r);
    S.matches = out;
    $("f-count").textContent = out.length + (S.filtering ? " window(s) match" : " window(s)");
    layoutRows(); redraw();
  }

  // ---- the card ---------------------------------------------------------------------------
  function chip(label, kind) { return el("span", "lab " + kind, label); }
  function labelChips(labels, truth) {
    const box = el("div", "chips");
    if (!labels.length && !(truth || []).length) box.append(el("span", "muted", "(none)"));
    labels.forEach((l) => box.append(chip(l, !truth ? "predicted" : truth.includes(l) ? "hit" : "false-alarm")));
    (truth || []).filter((l) => !labels.includes(l)).forEach((l) => box.append(chip(l, "miss")));
    return box;
  }
  function seek(t) {
    player.currentTime = Math.max(0, t);
    redraw();
  }
  function evidenceList(w, capsList) {
    const ul = el("ul", "ev");
    w.ev.forEach(([source, ref, text, verified]) => {
      const li = el("li"), a = el("a", "ref", ref);
      a.href = "#";
      const t = /^t=(\d+(?:\.\d+)?)s?$/.exec(ref), c = /^caption:(\d+)$/.exec(ref);
      a.addEventListener("click", (ev) => {
        ev.preventDefault();
        if (t) seek(parseFloat(t[1]));
        if (c && capsList) {
          capsList.querySelectorAll("li").forEach((n) => n.classList.remove("hl"));
          const item = capsList.children[parseInt(c[1], 10) - 1];
          if (item) { item.classList.add("hl"); item.scrollIntoView({block: "nearest"}); }
        }
      });
      li.append(a, el("span", "muted", " " + source + " "));
      if (verified === true) li.append(el("span", "quoted", "quoted"), " ");
      if (verified === false) li.append(el("span", "unverified", "unverified quote"), " ");
      li.append(el("span", "ev-text", text));
      ul.append(li);
    });
    return ul;
  }
  const TOP_SCORES = 5;  // shown at once; the rest behind "all scores"
  function scoreTable(scores) {
    const fmt = (x, d) => (x === null ? "n/a" : x.toFixed(d));
    const rows = [...scores].sort((a, b) => (b[1] ?? -1) - (a[1] ?? -1)).map(([l, p, thr]) => {
      const tr = el("tr");
      tr.append(el("td", null, l), el("td", "num", fmt(p, 3)),
        el("td", "num muted", "threshold " + fmt(thr, 2)));
      return tr;
    });
    const top = el("table", "scores");
    top.append(...rows.slice(0, TOP_SCORES));
    if (rows.length <= TOP_SCORES) return top;
    const more = el("details"), rest = el("table", "scores");
    rest.append(...rows.slice(TOP_SCORES));
    more.append(el("summary", null, "all " + rows.length + " scores"), rest);
    const box = el("div");
    box.append(top, more);
    return box;
  }
  function runSection(run, w) {
    const sec = el("section", "entry");
    const head = el("h4", null, run.name);
    head.append(el("span", "badge " + w.status, w.status === "ok" ? "predicted" : w.status));
    sec.append(head);
    if (w.strip) {
      const img = el("img", "strip");
      img.loading = "lazy"; img.alt = "frames the model saw"; img.src = w.strip;
      sec.append(img, el("div", "muted times", "frames at t = " + w.times.map((t) => t.toFixed(2)).join(", ") + " s"));
    } else if (w.note) sec.append(el("p", "placeholder", w.note));
    if (w.status === "failed") {
      sec.append(el("p", "failure", w.error));
      if (w.raw) { const d = el("details"); d.append(el("summary", null, "raw"), el("pre", null, w.raw)); sec.append(d); }
      return sec;
    }
    if (w.status !== "ok") { sec.append(el("p", "muted", "no prediction (run not finished?)")); return sec; }
    sec.append(labelChips(w.labels, w.truth));
    if (w.scores) sec.append(scoreTable(w.scores));
    if (w.expl) sec.append(el("p", "expl", w.expl));
    let caps = null;
    if (w.caps && w.caps.length) {
      caps = el("ol", "caps");
      w.caps.forEach(([text, times]) => {
        const li = el("li", null, text);
        li.append(el("span", "muted", " (t=" + times.map((t) => t.toFixed(2)).join(", ") + " s)"));
        caps.append(li);
      });
    }
    if (w.ev && w.ev.length) sec.append(evidenceList(w, caps));
    if (caps) sec.append(el("div", "muted", "captions / tokens"), caps);
    const d = el("details");
    d.append(el("summary", null, "raw answer (" + w.attempts + " attempt(s)), models"),
      el("pre", null, w.raw), el("p", "muted", w.models));
    sec.append(d);
    return sec;
  }
  function correctionBox(w) {
    const box = el("section", "corr");
    box.append(el("h4", null, "Corrected labels (exported)"));
    D.labels.forEach((l) => {
      const lab = el("label", "corr-label"), cb = el("input");
      cb.type = "checkbox"; cb.checked = correctedOn(l, w); cb.dataset.label = l;
      cb.addEventListener("change", () => {
        setLabel(l, w, cb.checked); layoutRows(); showCard(); redraw(); showEdits();
      });
      lab.append(cb, " " + l);
      box.append(lab);
    });
    return box;
  }
  function showCard() {
    card.replaceChildren();
    if (!S.sel) return;
    const v = video(), w = v.runs[S.sel.r].windows[S.sel.i], mid = (w.s + w.e) / 2;
    const head = el("header");
    head.append(el("h3", null, w.id), el("span", "muted", v.name + " · " + w.s.toFixed(2) + "–" + w.e.toFixed(2) + " s"));
    const truth = el("div", "truth", "truth: ");
    if (w.truth) w.truth.forEach((l) => truth.append(chip(l, "truth")));
    else truth.append(el("span", "muted", "unknown"));
    card.append(head, truth);
    D.runs.forEach((run, r) => {
      const lane = v.runs[r];
      let k = lane.windows.findIndex((x) => x.id === w.id);
      if (k < 0) k = windowAt(r, mid);
      if (k >= 0) card.append(runSection(run, lane.windows[k]));
    });
    card.append(correctionBox(w));
  }
  function select(r, i, doSeek) {
    S.sel = {r, i};
    showCard();
    if (doSeek) seek(video().runs[r].windows[i].s);
    redraw();
  }
  function step(dir) {  // the next window matching the filters (every window: no filter)
    const list = S.filtering ? S.matches : video().runs[0].windows.map((w, i) => ({r: 0, i, w}));
    if (!list.length) return;
    const cur = S.sel ? video().runs[S.sel.r].windows[S.sel.i].s : (dir > 0 ? -Infinity : Infinity);
    const pick = dir > 0 ? list.find((m) => m.w.s > cur + 1e-9)
      : [...list].reverse().find((m) => m.w.s < cur - 1e-9);
    if (!pick) return;
    const span = S.view[1] - S.view[0];
    if (pick.w.s < S.view[0] || pick.w.e > S.view[1]) setView(pick.w.s - span / 2, pick.w.s + span / 2);
    select(pick.r, pick.i, true);
  }

  // ---- interaction ------------------------------------------------------------------------
  function setView(a, b) {
    const dur = video().duration_s || 1, span = Math.min(dur, Math.max(2, b - a));
    a = Math.min(Math.max(0, a), dur - span);
    S.view = [a, a + span];
    redraw();
  }
  function canvasXY(ev) {
    const r = canvas.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }
  function edgeAt(row, x) {
    const spans = S.corr[S.v][row.label];
    for (let k = 0; k < spans.length; k++) {
      for (const side of [0, 1]) if (Math.abs(xOf(spans[k][side]) - x) <= EDGE_PX) return {k, side};
    }
    return null;
  }
  canvas.addEventListener("mousedown", (ev) => {
    const [x, y] = canvasXY(ev), row = rowAt(y);
    if (x < GUTTER) return;
    if (row && row.kind === "corr") {
      const edge = edgeAt(row, x);
      if (edge) { S.drag = {label: row.label, ...edge}; ev.preventDefault(); return; }
    }
    const t = tOf(x);
    if (row && row.kind === "run") {
      const i = windowAt(row.r, t);
      if (i >= 0) { select(row.r, i, true); return; }
    }
    if (row && (row.kind === "truth" || row.kind === "corr") && video().runs.length) {
      const i = windowAt(0, t);
      if (i >= 0) { select(0, i, false); }
    }
    seek(t);
  });
  window.addEventListener("mousemove", (ev) => {
    if (S.drag) {
      const [x] = canvasXY(ev), spans = S.corr[S.v][S.drag.label], sp = spans[S.drag.k];
      const t = Math.round(Math.max(0, Math.min(video().duration_s, tOf(x))) * 100) / 100;
      if (S.drag.side === 0) sp[0] = Math.min(t, sp[1] - 0.01); else sp[1] = Math.max(t, sp[0] + 0.01);
      redraw();
      return;
    }
    const [x, y] = canvasXY(ev), row = rowAt(y);
    canvas.style.cursor = row && row.kind === "corr" && edgeAt(row, x) ? "ew-resize" : "pointer";
  });
  window.addEventListener("mouseup", () => {
    if (!S.drag) return;
    S.corr[S.v][S.drag.label] = normalise(S.corr[S.v][S.drag.label]);
    S.drag = null; S.edits++;
    showEdits(); showCard(); redraw();
  });
  canvas.addEventListener("wheel", (ev) => {
    const [x] = canvasXY(ev);
    if (x < GUTTER) return;
    ev.preventDefault();
    const t = tOf(x), f = ev.deltaY > 0 ? 1.25 : 0.8, [a, b] = S.view;
    setView(t - (t - a) * f, t + (b - t) * f);
  }, {passive: false});
  function zoom(f) { const [a, b] = S.view, c = (a + b) / 2; setView(c - (c - a) * f, c + (b - c) * f); }
  document.addEventListener("keydown", (ev) => {
    // Typing a number or choosing from a list keeps its keys; anywhere else they drive the page.
    if (ev.target.matches && ev.target.matches("input[type=number], select, textarea")) return;
    if (ev.key === "n" || ev.key === "ArrowRight") { step(1); ev.preventDefault(); }
    else if (ev.key === "p" || ev.key === "ArrowLeft") { step(-1); ev.preventDefault(); }
    else if (ev.key === " ") { ev.preventDefault(); if (player.paused) player.play(); else player.pause(); }
    else if (ev.key === "+" || ev.key === "=") zoom(0.5);
    else if (ev.key === "-") zoom(2);
  });
  function follow() {  // lanes follow the playhead
    const t = player.currentTime, [a, b] = S.view;
    if (t > b || t < a) setView(t - (b - a) * 0.1, t + (b - a) * 0.9);
    redraw();
    if (!player.paused) requestAnimationFrame(follow);
  }
  player.addEventListener("play", follow);
  ["seeked", "timeupdate"].forEach((e) => player.addEventListener(e, redraw));
  ["f-label", "f-smin", "f-smax", "f-runs", "f-truth", "f-failed", "f-empty"].forEach((id) =>
    $(id).addEventListener("change", applyFilters));
  $("zoom-all").addEventListener("click", () => setView(0, video().duration_s || 1));
  function showEdits() { $("edits").textContent = S.edits ? S.edits + " edit(s)" : ""; }
  $("export").addEventListener("click", () => {
    const a = $("export-link");
    a.href = "data:text/csv;charset=utf-8," + encodeURIComponent(correctionsCsv());
    a.click();
  });
  window.addEventListener("resize", redraw);

  function openVideo(k) {
    S.v = k; S.sel = null;
    const v = video();
    player.removeAttribute("src");
    if (v.src) player.src = v.src;
    $("video-note").textContent = (v.proxy ? "H.264 proxy of " : "") + v.path + (v.note ? " — " + v.note : "");
    card.replaceChildren(el("p", "muted", "Click a window on a lane to open its card."));
    S.view = [0, v.duration_s || 1];
    applyFilters();
  }
  D.videos.forEach((v, k) => $("video-select").append(new Option(v.name, String(k))));
  $("video-select").addEventListener("change", (ev) => openVideo(+ev.target.value));
  D.labels.forEach((l) => $("f-label").append(new Option(l, l)));
  $("notes").textContent = D.runs.length + " run(s); truth: " + (D.truth_source || "none") +
    (D.notes.length ? "; " + D.notes.join("; ") : "");
  openVideo(0);
  draw();
  // For tests and the benchmark: where a lane point is, and the CSV the button exports.
  window.review = {
    ready: performance.now(),
    xy(kind, label, t, r) {  // scrolled into view; null when no such lane is shown
      const k = S.rows.findIndex((row) => row.kind === kind && row.label === label &&
        (r === undefined || row.r === r));
      if (k < 0) return null;
      let b = canvas.getBoundingClientRect(), y = b.top + AXIS_H + k * ROW_H + ROW_H / 2;
      if (y < 0 || y > window.innerHeight) {
        window.scrollBy(0, y - window.innerHeight / 2);
        b = canvas.getBoundingClientRect(); y = b.top + AXIS_H + k * ROW_H + ROW_H / 2;
      }
      return [b.left + xOf(t), y];
    },
    windows: (r) => video().runs[r].windows.map((w) => ({id: w.id, s: w.s, e: w.e})),
    correctionsCsv,
    setView,
  };
})();
