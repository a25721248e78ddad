// Small, dependency-free SVG charts for the benchmark: grouped bars and lines,
// each with axes, tick labels, units and a legend.
'use strict';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
const FONT = 'font-family="DejaVu Sans, Arial, sans-serif"';

// One layout for every chart: plot area left/top of the legend column.
const LAYOUT = Object.freeze({ width: 760, height: 420, left: 70, top: 50, plotW: 480, plotH: 300 });

function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A "nice" axis maximum and tick step for values up to max. */
function niceScale(max) {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  return { top: Math.ceil(max / step) * step, step };
}

function frame(width, height, title) {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
}

function yAxis(out, { left, top, plotH, plotW, scale, label }) {
  for (let v = 0; v <= scale.top + 1e-9; v += scale.step) {
    const y = top + plotH - (v / scale.top) * plotH;
    out.push(`<line x1="${left}" y1="${y}" x2="${left + plotW}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${Number(v.toFixed(2))}</text>`);
  }
  out.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="black"/>`);
  out.push(`<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="black"/>`);
  out.push(`<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(label)}</text>`);
}

function legend(out, items, x, y) {
  items.forEach((item, i) => {
    const yy = y + i * 18;
    if (item.dash) out.push(`<line x1="${x}" y1="${yy - 4}" x2="${x + 22}" y2="${yy - 4}" stroke="${item.color}" stroke-width="2" stroke-dasharray="6 3"/>`);
    else out.push(`<rect x="${x}" y="${yy - 10}" width="22" height="10" fill="${item.color}"/>`);
    out.push(`<text x="${x + 28}" y="${yy}">${esc(item.label)}</text>`);
  });
}

/**
 * Grouped bar chart.
 * @param {{title: string, unit: string, groups: {label: string, bars: {label: string, value: number}[]}[]}} spec
 */
function renderBars(spec) {
  const { width, height, left, top, plotW, plotH } = LAYOUT;
  const max = Math.max(...spec.groups.flatMap((g) => g.bars.map((b) => b.value)));
  const scale = niceScale(max);
  const out = frame(width, height, spec.title);
  yAxis(out, { left, top, plotH, plotW, scale, label: spec.unit });
  const groupW = plotW / spec.groups.length;
  const barLabels = spec.groups[0].bars.map((b) => b.label);
  const barW = (groupW * 0.8) / barLabels.length;
  spec.groups.forEach((g, gi) => {
    const gx = left + gi * groupW + groupW * 0.1;
    g.bars.forEach((b, bi) => {
      const h = (b.value / scale.top) * plotH;
      const x = gx + bi * barW;
      const y = top + plotH - h;
      out.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barW - 3).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[bi % COLORS.length]}"/>`);
      out.push(`<text x="${(x + (barW - 3) / 2).toFixed(1)}" y="${(y - 4).toFixed(1)}" text-anchor="middle" font-size="10">${b.value.toFixed(2)}</text>`);
    });
    out.push(`<text x="${(gx + groupW * 0.4).toFixed(1)}" y="${top + plotH + 20}" text-anchor="middle">${esc(g.label)}</text>`);
  });
  legend(out, barLabels.map((label, i) => ({ label, color: COLORS[i % COLORS.length] })), left + plotW + 20, top + 10);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Line chart over categorical x values.
 * @param {{title: string, xLabel: string, yLabel: string, xs: (string|number)[], series: {label: string, ys: number[]}[], limits?: {label: string, y: number}[]}} spec
 */
function renderLines(spec) {
  const { width, height, left, top, plotW, plotH } = LAYOUT;
  const limits = spec.limits ?? [];
  const max = Math.max(...spec.series.flatMap((s) => s.ys), ...limits.map((l) => l.y));
  const scale = niceScale(max);
  const out = frame(width, height, spec.title);
  yAxis(out, { left, top, plotH, plotW, scale, label: spec.yLabel });
  const xAt = (i) => left + (spec.xs.length === 1 ? plotW / 2 : (i / (spec.xs.length - 1)) * plotW);
  const yAt = (v) => top + plotH - (v / scale.top) * plotH;
  spec.xs.forEach((x, i) => {
    out.push(`<line x1="${xAt(i)}" y1="${top + plotH}" x2="${xAt(i)}" y2="${top + plotH + 5}" stroke="black"/>`);
    out.push(`<text x="${xAt(i)}" y="${top + plotH + 18}" text-anchor="middle">${esc(x)}</text>`);
  });
  out.push(`<text x="${left + plotW / 2}" y="${top + plotH + 40}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  const items = [];
  spec.series.forEach((s, si) => {
    const color = COLORS[si % COLORS.length];
    const pts = s.ys.map((y, i) => `${xAt(i).toFixed(1)},${yAt(y).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"/>`);
    s.ys.forEach((y, i) => out.push(`<circle cx="${xAt(i).toFixed(1)}" cy="${yAt(y).toFixed(1)}" r="3" fill="${color}"/>`));
    items.push({ label: s.label, color });
    const limit = limits[si];
    if (limit) {
      out.push(`<line x1="${left}" y1="${yAt(limit.y).toFixed(1)}" x2="${left + plotW}" y2="${yAt(limit.y).toFixed(1)}" stroke="${color}" stroke-width="1.5" stroke-dasharray="6 3"/>`);
      items.push({ label: `${limit.label} (${limit.y.toFixed(2)})`, color, dash: true });
    }
  });
  legend(out, items, left + plotW + 20, top + 10);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

module.exports = { renderBars, renderLines, niceScale };
