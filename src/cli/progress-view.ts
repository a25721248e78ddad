// What a person watching a copy on a terminal sees, in the manner of pv: a bar, the percentage,
// the rate and the time left, one line per copy and, for `devmove run`, a total, redrawn in place.
// The rendering is pure (strings from numbers, fitted to the terminal's width); LiveArea is the
// only part that writes, and only to a TTY (the callers decide: plain lines otherwise).
import { formatBytesIEC, formatBytesSI } from '../base/size';
import type { CopyProgress } from '../base/types';

/** Narrowest bar worth drawing; below it the line goes without one. */
const BAR_COLUMNS_MIN = 10;
/** "1023.9 GiB" */
const SIZE_COLUMNS = 10;
/** "999.9 MB/s  ETA 99:59:59" */
const TAIL_COLUMNS = 24;
/** A terminal that does not say its width is taken as 80 columns wide. */
export const DEFAULT_COLUMNS = 80;

/** "[=========>          ]" exactly `width` characters wide; fraction is clamped to 0..1. */
export function bar(fraction: number, width: number): string {
  const inner = Math.max(0, width - 2);
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const filled = Math.floor(f * inner);
  if (filled >= inner) return `[${'='.repeat(inner)}]`;
  const head = filled > 0 ? '>' : '';
  return `[${'='.repeat(Math.max(0, filled - 1))}${head}${' '.repeat(inner - Math.max(filled, head.length))}]`;
}

/** "1:02:03", "2:05", or "--:--" while no rate is known. */
export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** The numbers one line shows. */
export interface BarFigures {
  label?: string;
  bytesDone: number;
  /** Undefined when the size is not known (a pipe as the source): no bar, no percent, no ETA. */
  bytesTotal: number | undefined;
  bytesPerSecond: number;
  etaSeconds: number | undefined;
  /** Replaces rate and ETA: 'paused', 'done', 'failed', 'waiting', ... */
  state?: string;
}

/** A copy's progress as figures: while verifying, the verify pass is what moves. */
export function figuresOf(p: CopyProgress, label?: string): BarFigures {
  const verifying = p.phase === 'verify';
  const figures: BarFigures = {
    label: verifying ? `${label ? `${label} ` : ''}verify` : label,
    bytesDone: verifying ? p.verifyDone : p.bytesDone,
    bytesTotal: verifying ? p.verifyTotal : p.bytesTotal,
    bytesPerSecond: p.bytesPerSecond,
    etaSeconds: verifying ? undefined : p.etaSeconds,
  };
  if (p.paused) figures.state = 'paused';
  return figures;
}

/** A copy of unknown size (a pipe as the source): bytes so far and the rate, as pv shows a stream. */
function unsizedLine(f: BarFigures, columns: number, labelWidth: number): string {
  const label = f.label === undefined ? '' : `${f.label.padEnd(labelWidth)}  `;
  const tail = f.state ?? `${formatBytesSI(f.bytesPerSecond)}/s`;
  return `${label}${formatBytesIEC(f.bytesDone)}  ${tail}`.slice(0, Math.max(0, columns - 1));
}

/**
 * One line, at most `columns` wide: "label  1.2 GiB / 4.0 GiB [=====>     ]  30.1%  2.1 GB/s  ETA 0:12".
 * The bar takes what the text leaves; on a narrow terminal the bar goes first, then the sizes.
 */
export function progressLine(f: BarFigures, columns = DEFAULT_COLUMNS, labelWidth = 0): string {
  if (f.bytesTotal === undefined) return unsizedLine(f, columns, labelWidth);
  const percent = f.bytesTotal > 0 ? (100 * f.bytesDone) / f.bytesTotal : f.state === 'done' ? 100 : 0;
  const label = f.label === undefined ? '' : `${f.label.padEnd(labelWidth)}  `;
  if (f.state !== undefined && f.bytesTotal === 0 && f.bytesDone === 0) return `${label}${f.state}`.slice(0, Math.max(0, columns - 1));
  // Fixed-width columns around the bar, so that the bars of a job's lines line up.
  const sizes = `${formatBytesIEC(f.bytesDone).padStart(SIZE_COLUMNS)} / ${formatBytesIEC(f.bytesTotal).padEnd(SIZE_COLUMNS)}`;
  const tail = f.state ?? `${formatBytesSI(f.bytesPerSecond)}/s  ETA ${formatEta(f.etaSeconds)}`;
  const pct = `${percent.toFixed(1).padStart(5)}%`;
  const text = (withSizes: boolean, barWidth: number): string =>
    `${label}${withSizes ? `${sizes} ` : ''}${barWidth > 0 ? `${bar(percent / 100, barWidth)} ` : ''}${pct}  ${tail}`;
  for (const withSizes of [true, false]) {
    // The last column stays free (no auto-wrap); the tail gets its widest form's room.
    const room = columns - 1 - text(withSizes, 0).length - Math.max(0, TAIL_COLUMNS - tail.length);
    if (room >= BAR_COLUMNS_MIN + 1) return text(withSizes, room - 1);
  }
  return text(false, 0).slice(0, Math.max(0, columns - 1));
}

/** The state of one pair of a `devmove run` job, as the display knows it. */
export interface PairView {
  name: string;
  status: 'waiting' | 'copying' | 'done' | 'failed' | 'cancelled';
  progress?: CopyProgress;
}

/** One line per pair and a total: bytes of every pair with a known size, rate of those still copying. */
export function jobLines(pairs: readonly PairView[], columns = DEFAULT_COLUMNS): string[] {
  const labelWidth = Math.min(24, Math.max(5, ...pairs.map((p) => p.name.length)));
  const lines = pairs.map((p) => progressLine(pairFigures(p, labelWidth), columns, labelWidth));
  let done = 0;
  let total = 0;
  let rate = 0;
  for (const p of pairs) {
    done += p.progress?.bytesDone ?? 0;
    total += p.progress?.bytesTotal ?? p.progress?.bytesDone ?? 0;
    if (p.status === 'copying') rate += p.progress?.bytesPerSecond ?? 0;
  }
  const finished = pairs.every((p) => p.status !== 'waiting' && p.status !== 'copying');
  const totals: BarFigures = { label: 'total', bytesDone: done, bytesTotal: total, bytesPerSecond: rate, etaSeconds: rate > 0 ? (total - done) / rate : undefined };
  if (finished) totals.state = 'finished';
  lines.push(progressLine(totals, columns, labelWidth));
  return lines;
}

function pairFigures(p: PairView, labelWidth: number): BarFigures {
  const name = p.name.length > labelWidth ? `${p.name.slice(0, labelWidth - 1)}…` : p.name;
  const figures = p.progress ? figuresOf(p.progress, name) : { label: name, bytesDone: 0, bytesTotal: 0, bytesPerSecond: 0, etaSeconds: undefined };
  if (p.status !== 'copying') figures.state = p.status;
  else if (p.progress?.paused) figures.state = 'paused';
  return figures;
}

/** Cursor movements that redraw a block of lines in place: go back to its first line, clear below, write. */
export function redrawSequence(previousLineCount: number, lines: readonly string[]): string {
  const up = previousLineCount > 1 ? `\x1b[${previousLineCount - 1}A` : '';
  return `\r${up}\x1b[J${lines.join('\n')}`;
}

/** A block of lines at the bottom of a terminal, redrawn in place; clear() before writing anything else. */
export class LiveArea {
  private shown = 0;

  constructor(private readonly stream: NodeJS.WritableStream) {}

  draw(lines: readonly string[]): void {
    this.stream.write(redrawSequence(this.shown, lines));
    this.shown = lines.length;
  }

  clear(): void {
    if (this.shown === 0) return;
    this.stream.write(redrawSequence(this.shown, []));
    this.shown = 0;
  }
}
