// `devmove run` on a terminal: one live line per pair and a total (progress-view.ts renders them),
// redrawn in place at most every 100 ms, and cleared whenever a permanent line is written.
import type { JobEvent } from '../jobs/job';
import { DEFAULT_COLUMNS, jobLines, LiveArea, type PairView } from './progress-view';

/** Redraws at most this often (progress events of many pairs arrive close together). */
const REDRAW_INTERVAL_MS = 100;

export class JobDisplay {
  private readonly pairs: PairView[];
  private readonly area: LiveArea;
  private lastDrawMs = -Infinity;

  constructor(
    private readonly stream: NodeJS.WritableStream & { columns?: number },
    pairNames: readonly string[],
    private readonly now: () => number = () => performance.now(),
  ) {
    this.pairs = pairNames.map((name) => ({ name, status: 'waiting' }));
    this.area = new LiveArea(stream);
  }

  /** Takes one job event; redraws unless one was drawn less than 100 ms ago (state changes always redraw). */
  update(event: JobEvent): void {
    const pair = this.pairs.find((p) => p.name === event.pair);
    if (pair === undefined) return;
    if (event.type === 'pair-start') pair.status = 'copying';
    else if (event.type === 'progress') {
      pair.status = 'copying';
      const { type: _type, pair: _pair, ...progress } = event;
      pair.progress = progress;
      if (this.now() - this.lastDrawMs < REDRAW_INTERVAL_MS) return;
    } else if (event.type === 'pair-done') {
      pair.status = 'done';
      if (pair.progress) pair.progress = { ...pair.progress, bytesDone: event.result.bytesCopied, bytesTotal: Math.max(pair.progress.bytesTotal ?? 0, event.result.bytesCopied) };
    } else if (event.type === 'pair-failed') {
      pair.status = (event.error as { code?: unknown }).code === 'ABORT_ERR' ? 'cancelled' : 'failed';
    } else {
      return; // pair-budget: the pair's ring grew; nothing on the line changes
    }
    this.draw();
  }

  draw(): void {
    this.area.draw(jobLines(this.pairs, this.stream.columns || DEFAULT_COLUMNS));
    this.lastDrawMs = this.now();
  }

  /** Removes the lines (before a permanent line is written, and at the end). */
  clear(): void {
    this.area.clear();
  }
}
