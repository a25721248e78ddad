// A GNU ddrescue mapfile drawn the way ddrescueview draws it: the rescue domain as a grid of
// cells in reading order, each cell coloured by the worst status of the bytes it stands for (one
// bad sector in a cell of megabytes must still show), with a legend and the totals per status.
// Pure: text for a terminal (ANSI colours or status characters) and SVG for a report.
import { formatBytesIEC } from '../base/size';
import type { BlockStatus, MapBlock } from '../resume/mapfile';

/** Worst first: the status a cell shows when its bytes have several. */
export const STATUS_ORDER: readonly BlockStatus[] = ['-', '/', '*', '?', '+'];

export const STATUS_NAMES: Readonly<Record<BlockStatus, string>> = {
  '+': 'finished',
  '?': 'non-tried',
  '*': 'non-trimmed',
  '/': 'non-scraped',
  '-': 'bad',
};

/** ddrescueview's palette: green finished, grey untried, yellow non-trimmed, blue non-scraped, red bad. */
const COLORS: Readonly<Record<BlockStatus, { svg: string; ansi: string }>> = {
  '+': { svg: '#2ca02c', ansi: '42' },
  '?': { svg: '#8c8c8c', ansi: '100' },
  '*': { svg: '#f2c511', ansi: '43' },
  '/': { svg: '#1f6fd1', ansi: '44' },
  '-': { svg: '#d62728', ansi: '41' },
};

export interface MapPicture {
  /** First byte of the domain and its length. */
  start: number;
  length: number;
  columns: number;
  rows: number;
  /** Bytes per cell (the last cell may stand for fewer). */
  cellBytes: number;
  /** One status per cell, row by row; cells past the domain's end are absent. */
  cells: BlockStatus[];
  totals: Array<{ status: BlockStatus; bytes: number; areas: number }>;
}

/**
 * Lays the blocks over a grid of at most columns × rowsMax cells. Small domains get fewer cells
 * (never less than one byte each), and a cell never mixes in bytes of the next one.
 */
export function layOut(blocks: readonly MapBlock[], columns: number, rowsMax: number): MapPicture {
  const start = blocks.length > 0 ? blocks[0].pos : 0;
  const end = blocks.length > 0 ? blocks[blocks.length - 1].pos + blocks[blocks.length - 1].size : 0;
  const length = end - start;
  const cellBytes = Math.max(1, Math.ceil(length / (columns * rowsMax)));
  const count = Math.ceil(length / cellBytes);
  const rank = (s: BlockStatus): number => STATUS_ORDER.indexOf(s);
  const cells: BlockStatus[] = new Array<BlockStatus>(count).fill('+');
  const seen = new Array<boolean>(count).fill(false);
  for (const b of blocks) {
    if (b.size <= 0) continue;
    const first = Math.floor((b.pos - start) / cellBytes);
    const last = Math.floor((b.pos + b.size - 1 - start) / cellBytes);
    for (let i = first; i <= last; i++) {
      if (!seen[i] || rank(b.status) < rank(cells[i])) cells[i] = b.status;
      seen[i] = true;
    }
  }
  return { start, length, columns, rows: Math.ceil(count / columns), cellBytes, cells, totals: totalsOf(blocks) };
}

function totalsOf(blocks: readonly MapBlock[]): MapPicture['totals'] {
  return STATUS_ORDER.map((status) => {
    const mine = blocks.filter((b) => b.status === status);
    return { status, bytes: mine.reduce((n, b) => n + b.size, 0), areas: mine.length };
  });
}

function percentOf(bytes: number, of: number): string {
  return of > 0 ? `${((100 * bytes) / of).toFixed(2)}%` : '0.00%';
}

/** Legend and totals, one line per status: "+ finished     1.2 GiB  98.31%  3 areas". */
export function legendLines(p: MapPicture, color: boolean): string[] {
  return p.totals.map(({ status, bytes, areas }) => {
    const swatch = color ? `\x1b[${COLORS[status].ansi}m  \x1b[0m` : `${status}${status}`;
    const name = STATUS_NAMES[status].padEnd(12);
    return `${swatch} ${status} ${name}${formatBytesIEC(bytes).padStart(11)}  ${percentOf(bytes, p.length).padStart(7)}  ${areas} ${areas === 1 ? 'area' : 'areas'} (${bytes} bytes)`;
  });
}

/** The grid for a terminal: each row starts with the byte offset of its first cell. */
export function gridLines(p: MapPicture, color: boolean): string[] {
  const offsetWidth = String(p.start + p.length).length;
  const lines: string[] = [];
  for (let row = 0; row < p.rows; row++) {
    const cells = p.cells.slice(row * p.columns, (row + 1) * p.columns);
    const body = color ? cells.map((s) => `\x1b[${COLORS[s].ansi}m \x1b[0m`).join('') : cells.join('');
    lines.push(`${String(p.start + row * p.columns * p.cellBytes).padStart(offsetWidth)} ${body}`);
  }
  return lines;
}

/** The whole terminal picture: heading, grid, legend with totals. */
export function mapText(name: string, p: MapPicture, color: boolean): string {
  const heading = `${name}: ${formatBytesIEC(p.length)} (${p.length} bytes) from byte ${p.start}, ${p.cells.length} cells of ${formatBytesIEC(p.cellBytes)}`;
  const key = color ? '' : '  (+ finished, ? non-tried, * non-trimmed, / non-scraped, - bad; a cell shows its worst byte)';
  return [heading + key, ...gridLines(p, color), '', ...legendLines(p, color)].join('\n') + '\n';
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const CELL_PX = 12;
const GAP_PX = 1;
const FONT = "font-family='DejaVu Sans Mono, monospace' font-size='12'";

/** The same picture as a standalone SVG document. */
export function mapSvg(name: string, p: MapPicture): string {
  const labelPx = 8 * String(p.start + p.length).length + 12;
  const gridTop = 40;
  const step = CELL_PX + GAP_PX;
  const width = Math.max(labelPx + p.columns * step + 10, 560);
  const legendTop = gridTop + p.rows * step + 24;
  const height = legendTop + p.totals.length * 20 + 10;
  const out: string[] = [];
  out.push(`<svg xmlns='http://www.w3.org/2000/svg' width='${width}' height='${height}' viewBox='0 0 ${width} ${height}'>`);
  out.push(`<rect width='100%' height='100%' fill='#ffffff'/>`);
  out.push(`<text x='10' y='18' ${FONT} font-weight='bold'>${escapeXml(name)}</text>`);
  out.push(`<text x='10' y='33' ${FONT}>${escapeXml(`${formatBytesIEC(p.length)} from byte ${p.start}; ${p.cells.length} cells of ${formatBytesIEC(p.cellBytes)}, each showing its worst byte`)}</text>`);
  for (let row = 0; row < p.rows; row++) {
    const y = gridTop + row * step;
    out.push(`<text x='${labelPx - 6}' y='${y + CELL_PX - 2}' ${FONT} text-anchor='end' fill='#555'>${p.start + row * p.columns * p.cellBytes}</text>`);
    p.cells.slice(row * p.columns, (row + 1) * p.columns).forEach((s, col) => {
      out.push(`<rect x='${labelPx + col * step}' y='${y}' width='${CELL_PX}' height='${CELL_PX}' fill='${COLORS[s].svg}'><title>${STATUS_NAMES[s]}</title></rect>`);
    });
  }
  p.totals.forEach(({ status, bytes, areas }, i) => {
    const y = legendTop + i * 20;
    out.push(`<rect x='10' y='${y - 11}' width='${CELL_PX}' height='${CELL_PX}' fill='${COLORS[status].svg}'/>`);
    const text = `${status} ${STATUS_NAMES[status].padEnd(12)}${formatBytesIEC(bytes).padStart(11)}  ${percentOf(bytes, p.length).padStart(7)}  ${areas} ${areas === 1 ? 'area' : 'areas'}`;
    out.push(`<text x='${10 + CELL_PX + 8}' y='${y}' ${FONT} xml:space='preserve'>${escapeXml(text)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
