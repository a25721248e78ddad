// The pv-like progress display's pure rendering: invariants over seeded random figures (the seed is
// printed; DEVMOVE_TEST_SEED replays a run), and a few exact lines a person would read.
import { describe, expect, it } from 'vitest';

import type { CopyProgress } from '../../src/base/types';
import { JobDisplay } from '../../src/cli/job-display';
import { bar, figuresOf, formatEta, jobLines, progressLine, redrawSequence, type BarFigures, type PairView } from '../../src/cli/progress-view';
import { random } from '../helpers/random';

const SEED = Number(process.env.DEVMOVE_TEST_SEED ?? Date.now() % 2 ** 31);
console.log(`progress-view.test.ts seed ${SEED} (DEVMOVE_TEST_SEED=${SEED} replays it)`);

function progress(done: number, total: number, over: Partial<CopyProgress> = {}): CopyProgress {
  return {
    bytesDone: done, bytesTotal: total, percent: total > 0 ? (100 * done) / total : 0, bytesPerSecond: 2e9, etaSeconds: 12,
    elapsedSeconds: 1, badBytes: 0, zeroBytes: 0, paused: false, phase: 'copy', verifyDone: 0, verifyTotal: 0, ...over,
  };
}

describe('bar', () => {
  it('is exactly as wide as asked, fills in proportion and never overflows (seeded)', () => {
    const rnd = random(SEED);
    for (let i = 0; i < 2000; i++) {
      const width = 2 + Math.floor(rnd() * 120);
      const fraction = rnd() * 1.4 - 0.2;
      const b = bar(fraction, width);
      expect(b.length, `bar(${fraction}, ${width})`).toBe(width);
      expect(b).toMatch(/^\[=*>? *\]$/);
      const filled = b.replace(/[^=>]/g, '').length;
      expect(filled).toBe(Math.floor(Math.min(1, Math.max(0, fraction)) * (width - 2)));
    }
  });

  it('reads as a bar', () => {
    expect(bar(0, 12)).toBe('[          ]');
    expect(bar(0.5, 12)).toBe('[====>     ]');
    expect(bar(1, 12)).toBe('[==========]');
    expect(bar(Number.NaN, 4)).toBe('[  ]');
  });
});

describe('progressLine', () => {
  it('fits the terminal (last column free), keeps percent and state, and draws a bar when there is room (seeded)', () => {
    const rnd = random(SEED + 1);
    for (let i = 0; i < 2000; i++) {
      const total = Math.floor(rnd() * 2 ** 44);
      const f: BarFigures = { bytesDone: Math.floor(rnd() * total), bytesTotal: total, bytesPerSecond: rnd() * 1e10, etaSeconds: rnd() < 0.1 ? undefined : rnd() * 1e6 };
      if (rnd() < 0.3) f.label = 'x'.repeat(1 + Math.floor(rnd() * 20));
      const columns = 10 + Math.floor(rnd() * 190);
      const line = progressLine(f, columns, f.label?.length ?? 0);
      expect(line.length, JSON.stringify({ f, columns })).toBeLessThanOrEqual(columns - 1);
      if (columns >= 80) {
        expect(line).toMatch(/\[[=> ]{8,}\] +\d+\.\d%  /);
        expect(line).toMatch(/\/s  ETA (\d+:)?\d+:\d\d$|ETA --:--$/);
      }
    }
  });

  it('shows sizes, bar, percent, rate and ETA like pv', () => {
    const line = progressLine(figuresOf(progress(1.5 * 2 ** 30, 4 * 2 ** 30)), 80);
    expect(line).toMatch(/^ +1\.5 GiB \/ 4\.0 GiB +\[=+> +\]  37\.5%  2\.0 GB\/s  ETA 0:12$/);
    expect(line.length).toBeLessThanOrEqual(79);
  });

  it('says paused instead of a rate, and follows the verify pass while verifying', () => {
    expect(progressLine(figuresOf(progress(1, 4, { paused: true })), 60)).toMatch(/ 25\.0%  paused$/);
    const verifying = figuresOf(progress(4, 4, { phase: 'verify', verifyDone: 1, verifyTotal: 2 }), 'db');
    expect(verifying).toMatchObject({ label: 'db verify', bytesDone: 1, bytesTotal: 2, etaSeconds: undefined });
  });
});

describe('formatEta', () => {
  it.each([
    [undefined, '--:--'], [Number.POSITIVE_INFINITY, '--:--'], [-1, '--:--'], [0, '0:00'], [59.6, '1:00'], [125, '2:05'], [3723, '1:02:03'],
  ])('%s s → %s', (s, text) => expect(formatEta(s)).toBe(text));
});

describe('jobLines and the live area', () => {
  it('one line per pair plus a total that adds the pairs up (seeded)', () => {
    const rnd = random(SEED + 2);
    for (let i = 0; i < 300; i++) {
      const pairs: PairView[] = Array.from({ length: 1 + Math.floor(rnd() * 8) }, (_, k) => {
        const total = Math.floor(rnd() * 2 ** 34);
        const status = (['waiting', 'copying', 'done', 'failed'] as const)[Math.floor(rnd() * 4)];
        return status === 'waiting' ? { name: `pair-${k}`, status } : { name: `pair-${k}`, status, progress: progress(Math.floor(rnd() * total), total) };
      });
      const columns = 40 + Math.floor(rnd() * 120);
      const lines = jobLines(pairs, columns);
      expect(lines).toHaveLength(pairs.length + 1);
      for (const line of lines) expect(line.length).toBeLessThanOrEqual(columns - 1);
      pairs.forEach((p, k) => expect(lines[k].startsWith(p.name)).toBe(true));
      expect(lines[pairs.length]).toMatch(/^total /);
    }
  });

  it('redraws in place: back to the first line, clear to the end of the screen, the new lines', () => {
    expect(redrawSequence(0, ['a', 'b', 'c'])).toBe('\r\x1b[Ja\nb\nc');
    expect(redrawSequence(3, ['a', 'b', 'c'])).toBe('\r\x1b[2A\x1b[Ja\nb\nc');
    expect(redrawSequence(1, [])).toBe('\r\x1b[J');
  });

  it('JobDisplay draws the pairs and the total, throttles progress redraws to 10 Hz, clears on request', () => {
    const written: string[] = [];
    let now = 0;
    const stream = { columns: 100, write: (s: string) => written.push(s) } as unknown as NodeJS.WritableStream & { columns: number };
    const display = new JobDisplay(stream, ['root', 'data'], () => now);
    display.update({ type: 'pair-start', pair: 'root', source: '/dev/a', targets: ['/dev/b'], queueDepth: 8, blockSize: 524288 });
    now = 150;
    display.update({ type: 'progress', pair: 'root', ...progress(2 ** 20, 2 ** 22) });
    now = 200;
    display.update({ type: 'progress', pair: 'root', ...progress(2 ** 21, 2 ** 22) });
    expect(written).toHaveLength(2); // the progress event 50 ms after the last drawing is not drawn
    expect(written[1]).toMatch(/^\r\x1b\[2A\x1b\[Jroot +1\.0 MiB \/ 4\.0 MiB +\[.*25\.0%.*\ndata +waiting\ntotal .*25\.0%/);
    display.clear();
    expect(written[2]).toBe('\r\x1b[2A\x1b[J');
  });
});
