// Trend and dip charts as inline SVG, no library (the booth PC has no internet).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function extent(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v == null || !isFinite(v)) continue; lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return null;
  // Readings that are not negative (ppm, %, kPa) keep their axis at or above zero.
  const floor = lo >= 0 ? 0 : -Infinity;
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.08;
  return [Math.max(floor, lo - pad), hi + pad];
}

function fmt(v) {
  if (v == null) return "-";
  const a = Math.abs(v);
  return a >= 1000 ? v.toFixed(0) : a >= 100 ? v.toFixed(1) : v.toFixed(2);
}

// points: [{ts, value, value2}], spanS: seconds of the x axis (ending at the newest point).
function drawTrend(svg, points, spanS) {
  const W = 300, H = 70;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  if (!points.length) return;
  const t1 = points[points.length - 1].ts, t0 = t1 - spanS;
  const ys = extent(points.flatMap(p => [p.value, p.value2]));
  if (!ys) return;
  const x = t => ((t - t0) / spanS) * W;
  const y = v => H - 12 - ((v - ys[0]) / (ys[1] - ys[0])) * (H - 16);
  svg.appendChild(svgEl("line", { x1: 0, y1: H - 12, x2: W, y2: H - 12, class: "axis" }));
  for (const [key, cls] of [["value2", "trace2"], ["value", "trace"]]) {
    let d = "", pen = false;
    for (const p of points) {
      const v = p[key];
      if (v == null || p.ts < t0) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${x(p.ts).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    if (d) svg.appendChild(svgEl("path", { d, class: cls, "vector-effect": "non-scaling-stroke" }));
  }
  const lo = svgEl("text", { x: 2, y: H - 1 }); lo.textContent = fmt(ys[0]);
  const hi = svgEl("text", { x: 2, y: 10 }); hi.textContent = fmt(ys[1]);
  svg.append(lo, hi);
}

// The dips of a lot: O2 (ppm, left axis, blue) and solder temperature (C, right axis, amber)
// at each entry, one column per dip.
function drawDips(box, dips) {
  box.textContent = "";
  if (!dips.length) { box.textContent = "no dips on record"; return; }
  const W = Math.max(300, box.clientWidth || 600), H = 220, L = 50, R = 50, T = 10, B = 30;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, "data-testid": "lot-chart" });
  const o2 = extent(dips.map(d => d.o2_ppm)) || [0, 1];
  const tc = extent(dips.map(d => d.solder_temp_c)) || [0, 1];
  const n = dips.length;
  const x = i => L + (n === 1 ? (W - L - R) / 2 : (i / (n - 1)) * (W - L - R));
  const y = (v, r) => T + (1 - (v - r[0]) / (r[1] - r[0])) * (H - T - B);
  svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("line", { x1: W - R, y1: T, x2: W - R, y2: H - B, class: "axis" }));
  const label = (tx, ax, ay, anchor) => {
    const t = svgEl("text", { x: ax, y: ay, "text-anchor": anchor || "start" });
    t.textContent = tx; svg.appendChild(t);
  };
  label(`${fmt(o2[1])} ppm`, 2, T + 10); label(`${fmt(o2[0])}`, 2, H - B);
  label(`${fmt(tc[1])} C`, W - 2, T + 10, "end"); label(`${fmt(tc[0])}`, W - 2, H - B, "end");
  label("O2 at entry", L + 4, H - 8); label("solder C at entry", W - R - 4, H - 8, "end");
  dips.forEach((d, i) => {
    if (d.o2_ppm != null) svg.appendChild(svgEl("circle", { cx: x(i), cy: y(d.o2_ppm, o2), r: 5, class: "dot-o2" }));
    if (d.solder_temp_c != null) svg.appendChild(svgEl("rect", { x: x(i) - 4, y: y(d.solder_temp_c, tc) - 4, width: 8, height: 8, class: "dot-t" }));
    if (n <= 30) label(`u${d.unit ?? "?"}`, x(i), H - B + 12, "middle");
  });
  box.appendChild(svg);
}

window.BoothCharts = { svgEl, drawTrend, drawDips, fmt };
