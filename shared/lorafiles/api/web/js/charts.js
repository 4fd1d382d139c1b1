// Pictures of a training file, in SVG: the token histogram against max_length, exclusions by
// reason, and the persona × arc × topic coverage heatmap. Each figure has a text alternative
// (aria-label) and its numbers in a table under "Data table".
import { fmt, h, nextId, s } from "./dom.js";

function niceStep(range, target) {
  const raw = range / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
}

function dataTable(caption, head, rows) {
  return h("details", { class: "data-table" }, h("summary", {}, "Data table"),
    h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": caption },
      h("table", {}, h("caption", {}, caption),
        h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => (i ? h("td", {}, c) : h("th", { scope: "row" }, c)))))))));
}

/** Histogram of `values` (tokens per example) in bins, with a marked line at `limit` (max_length). */
export function histogram({ values, limit, width, label, id }) {
  const figId = id || nextId("hist");
  const W = Math.max(300, Math.min(900, width || 640));
  const H = 240;
  const m = { l: 44, r: 12, t: 22, b: 40 };
  const top = Math.max(limit || 0, ...values, 1);
  const step = niceStep(top, W < 420 ? 10 : 20);
  const nBins = Math.max(1, Math.ceil((top + 1) / step));
  const bins = new Array(nBins).fill(0);
  for (const v of values) bins[Math.min(nBins - 1, Math.floor(v / step))] += 1;
  const maxCount = Math.max(1, ...bins);
  const x = (v) => m.l + (v / (nBins * step)) * (W - m.l - m.r);
  const y = (c) => H - m.b - (c / maxCount) * (H - m.t - m.b);
  const over = values.filter((v) => v > limit).length;
  const titleId = `${figId}-title`;
  const descId = `${figId}-desc`;
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-labelledby": `${titleId} ${descId}`,
    class: "chart", "data-chart": "histogram", "data-examples": values.length, "data-max-length": limit,
  },
  s("title", { id: titleId }, label),
  s("desc", { id: descId }, `${values.length} examples in ${nBins} bins of ${step} tokens; ` +
    `max_length ${limit}; ${over} example${over === 1 ? "" : "s"} over it.`));
  // y grid and ticks
  const yStep = niceStep(maxCount, 4);
  for (let c = 0; c <= maxCount; c += yStep) {
    svg.append(s("line", { x1: m.l, x2: W - m.r, y1: y(c), y2: y(c), class: "grid" }),
      s("text", { x: m.l - 6, y: y(c) + 4, "text-anchor": "end", class: "tick" }, fmt.int(c)));
  }
  bins.forEach((c, i) => {
    if (!c) return;
    const lo = i * step;
    svg.append(s("rect", {
      x: x(lo) + 1, y: y(c), width: Math.max(1, x(lo + step) - x(lo) - 2), height: H - m.b - y(c),
      class: lo + step > limit && lo >= limit ? "bar over" : "bar",
    }, s("title", {}, `${fmt.int(lo)}–${fmt.int(lo + step - 1)} tokens: ${c} example${c === 1 ? "" : "s"}`)));
  });
  // x axis
  const xStep = niceStep(nBins * step, W < 420 ? 4 : 8);
  svg.append(s("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: "axis" }));
  for (let v = 0; v <= nBins * step; v += xStep) {
    svg.append(s("text", { x: x(v), y: H - m.b + 16, "text-anchor": "middle", class: "tick" }, fmt.int(v)));
  }
  svg.append(s("text", { x: (W + m.l) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label" }, "tokens per example"),
    s("text", { x: 12, y: m.t - 8, class: "axis-label" }, "examples"));
  if (limit) {
    const lx = x(limit);
    svg.append(s("line", { x1: lx, x2: lx, y1: m.t - 4, y2: H - m.b, class: "limit" }),
      s("text", { x: Math.min(lx, W - m.r - 4), y: m.t - 8, "text-anchor": lx > W - 120 ? "end" : "start", class: "limit-label" },
        `max_length ${fmt.int(limit)}`));
  }
  return h("figure", { class: "chart-figure", id: figId },
    h("figcaption", {}, label, h("span", { class: "help" },
      ` — ${values.length} examples, ${over} over max_length ${fmt.int(limit)}.`)),
    h("div", { class: "chart-wrap" }, svg),
    dataTable(`${label}: examples per bin`, ["tokens", "examples"],
      bins.map((c, i) => [`${fmt.int(i * step)}–${fmt.int((i + 1) * step - 1)}`, c]).filter((r) => r[1])));
}

/** Horizontal bars: one per reason, length = count; the tokens they cost in the label. */
export function exclusionBars({ exclusions, width, id }) {
  const figId = id || nextId("excl");
  const rows = Object.entries(exclusions || {}).map(([reason, v]) => ({
    reason, count: Number(v?.count ?? v ?? 0), tokens: Number(v?.trainable_tokens ?? 0),
  })).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
  const total = rows.reduce((n, r) => n + r.count, 0);
  const label = "Exclusions by reason (trained turns left out of the exports)";
  const W = Math.max(300, Math.min(900, width || 640));
  const bar = 22;
  const gap = 10;
  const labelW = Math.min(150, W * 0.36);
  const H = 16 + rows.length * (bar + gap);
  const maxCount = Math.max(1, ...rows.map((r) => r.count));
  const titleId = `${figId}-title`;
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-labelledby": titleId, class: "chart",
    "data-chart": "exclusions", "data-total": total,
  }, s("title", { id: titleId }, `${label}: ${rows.map((r) => `${r.reason} ${r.count}`).join(", ") || "none"}`));
  rows.forEach((r, i) => {
    const y0 = 8 + i * (bar + gap);
    const len = ((W - labelW - 150) * r.count) / maxCount;
    svg.append(
      s("text", { x: labelW - 6, y: y0 + bar / 2 + 4, "text-anchor": "end", class: "tick" }, r.reason),
      s("rect", { x: labelW, y: y0, width: Math.max(r.count ? 2 : 0, len), height: bar, class: r.count ? "bar excl" : "bar zero" }),
      s("text", { x: labelW + Math.max(2, len) + 6, y: y0 + bar / 2 + 4, class: "value" },
        `${fmt.int(r.count)} (${fmt.int(r.tokens)} tokens)`));
  });
  return h("figure", { class: "chart-figure", id: figId },
    h("figcaption", {}, label, h("span", { class: "help" }, total ? ` — ${total} in all.` : " — nothing was excluded.")),
    h("div", { class: "chart-wrap" }, svg),
    dataTable(label, ["reason", "turns excluded", "trainable tokens lost"], rows.map((r) => [r.reason, r.count, r.tokens])));
}

/** persona × arc heatmaps, one per topic (and one over all topics), from a file's members. */
export function coverageHeatmaps({ members, id }) {
  const figId = id || nextId("cov");
  const key = (v) => v || "(none)";
  const personas = [...new Set(members.map((m) => key(m.persona_key)))].sort();
  const arcs = [...new Set(members.map((m) => key(m.emotional_arc_key)))].sort();
  const topics = [...new Set(members.map((m) => key(m.training_topic_key)))].sort();
  const counts = new Map();
  for (const m of members) {
    for (const t of ["*", key(m.training_topic_key)]) {
      const k = `${t}|${key(m.persona_key)}|${key(m.emotional_arc_key)}`;
      counts.set(k, (counts.get(k) || 0) + 1);
    }
  }
  const panels = [["*", "All topics"], ...topics.map((t) => [t, `Topic: ${t}`])];
  const maxAll = Math.max(1, ...[...counts.entries()].filter(([k]) => !k.startsWith("*|")).map(([, v]) => v));
  const cell = 40;
  const rowH = 28;
  const labelW = Math.min(200, 16 + 7 * Math.max(4, ...personas.map((p) => p.length)));
  const headH = Math.min(150, 24 + 5.2 * Math.max(4, ...arcs.map((a) => a.length)));
  const W = labelW + arcs.length * cell + Math.round(headH * 0.9); // room for the slanted labels
  const H = headH + personas.length * rowH + 8;

  const svgFor = ([topic, title]) => {
    const max = topic === "*" ? Math.max(1, ...[...counts.entries()].filter(([k]) => k.startsWith("*|")).map(([, v]) => v)) : maxAll;
    const titleId = nextId("cov-title");
    let filled = 0;
    const svg = s("svg", {
      viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-labelledby": titleId, class: "chart heatmap",
      "data-chart": "heatmap", "data-topic": topic,
    }, s("title", { id: titleId }, `${title}: conversations per persona (rows) and emotional arc (columns)`));
    arcs.forEach((a, j) => {
      const cx = labelW + j * cell + cell / 2;
      svg.append(s("text", { x: cx, y: headH - 6, transform: `rotate(-40 ${cx} ${headH - 6})`, class: "tick" }, a));
    });
    personas.forEach((p, i) => {
      const y0 = headH + i * rowH;
      svg.append(s("text", { x: labelW - 6, y: y0 + rowH / 2 + 4, "text-anchor": "end", class: "tick" }, p));
      arcs.forEach((a, j) => {
        const n = counts.get(`${topic}|${p}|${a}`) || 0;
        if (n) filled += 1;
        const level = n ? Math.min(5, Math.ceil((n / max) * 5)) : 0;
        svg.append(s("rect", { x: labelW + j * cell + 1, y: y0 + 1, width: cell - 2, height: rowH - 2, class: `cell l${level}` },
          s("title", {}, `${p} × ${a}${topic === "*" ? "" : ` × ${topic}`}: ${n}`)),
        s("text", { x: labelW + j * cell + cell / 2, y: y0 + rowH / 2 + 4, "text-anchor": "middle",
          class: `cell-text${level >= 3 ? " dark" : ""}` }, n ? String(n) : "·"));
      });
    });
    svg.dataset.filled = filled;
    return h("div", { class: "heatmap-panel" }, h("h4", {}, title),
      h("div", { class: "chart-wrap", tabindex: 0, role: "region", "aria-label": `${title} heatmap` }, svg));
  };

  const tableRows = [...counts.entries()].filter(([k]) => !k.startsWith("*|")).map(([k, v]) => {
    const [t, p, a] = k.split("|");
    return [p, a, t, v];
  }).sort((x, y) => x.join().localeCompare(y.join()));
  return h("figure", { class: "chart-figure", id: figId },
    h("figcaption", {}, "Coverage: persona × emotional arc × topic",
      h("span", { class: "help" }, ` — ${members.length} conversations, ${personas.length} personas, ${arcs.length} arcs, ` +
        `${topics.length} topics; darker cells hold more conversations.`)),
    h("div", { class: "heatmaps" }, panels.map(svgFor)),
    dataTable("Conversations per persona, arc and topic", ["persona", "emotional arc", "topic", "conversations"], tableRows));
}

