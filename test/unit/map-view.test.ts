// devmove map's pure drawing: every cell shows the worst status of the bytes it stands for
// (checked against the blocks byte range by byte range, over seeded random maps), the totals add up
// to the domain, and the SVG holds the same cells as the text.
import { describe, expect, it } from 'vitest';

import { gridLines, layOut, legendLines, mapSvg, mapText, STATUS_ORDER } from '../../src/cli/map-view';
import { RescueMap, type BlockStatus, type MapBlock } from '../../src/resume/mapfile';
import { random } from '../helpers/random';

const SEED = Number(process.env.DEVMOVE_TEST_SEED ?? Date.now() % 2 ** 31);
console.log(`map-view.test.ts seed ${SEED} (DEVMOVE_TEST_SEED=${SEED} replays it)`);

function randomBlocks(rnd: () => number): MapBlock[] {
  const blocks: MapBlock[] = [];
  let pos = Math.floor(rnd() * 4096) * 512;
  const n = 1 + Math.floor(rnd() * 40);
  for (let i = 0; i < n; i++) {
    const size = 512 * (1 + Math.floor(rnd() ** 3 * 100_000));
    blocks.push({ pos, size, status: STATUS_ORDER[Math.floor(rnd() * STATUS_ORDER.length)] });
    pos += size;
  }
  return blocks;
}

/** The worst status among the blocks overlapping [from, to), by brute force. */
function worstIn(blocks: readonly MapBlock[], from: number, to: number): BlockStatus {
  const present = blocks.filter((b) => b.pos < to && b.pos + b.size > from).map((b) => b.status);
  return STATUS_ORDER.find((s) => present.includes(s)) as BlockStatus;
}

describe('layOut', () => {
  it('each cell shows the worst status of its bytes; cells fit the grid; totals add up (seeded)', () => {
    const rnd = random(SEED);
    for (let round = 0; round < 100; round++) {
      const blocks = randomBlocks(rnd);
      const columns = 1 + Math.floor(rnd() * 80);
      const rows = 1 + Math.floor(rnd() * 30);
      const p = layOut(blocks, columns, rows);
      const end = blocks[blocks.length - 1].pos + blocks[blocks.length - 1].size;
      expect(p.start).toBe(blocks[0].pos);
      expect(p.length).toBe(end - blocks[0].pos);
      expect(p.cells.length).toBeLessThanOrEqual(columns * rows);
      expect(p.cells.length * p.cellBytes).toBeGreaterThanOrEqual(p.length);
      expect((p.cells.length - 1) * p.cellBytes).toBeLessThan(p.length);
      p.cells.forEach((status, i) => {
        const from = p.start + i * p.cellBytes;
        expect(status, `cell ${i}`).toBe(worstIn(blocks, from, Math.min(end, from + p.cellBytes)));
      });
      expect(p.totals.reduce((n, t) => n + t.bytes, 0)).toBe(p.length);
      expect(p.totals.reduce((n, t) => n + t.areas, 0)).toBe(blocks.length);
    }
  });

  it('one bad sector in a cell of megabytes still shows', () => {
    const bad = 2 ** 29 + 2 ** 20; // inside cell 4 of 16 cells of 128 MiB
    const p = layOut([{ pos: 0, size: bad, status: '+' }, { pos: bad, size: 512, status: '-' }, { pos: bad + 512, size: 2 ** 31 - bad - 512, status: '+' }], 8, 2);
    expect(p.cells.indexOf('-')).toBe(4);
    expect(p.cells.filter((c) => c === '-')).toHaveLength(1);
    expect(p.cells.filter((c) => c === '+')).toHaveLength(p.cells.length - 1);
  });
});

describe('the pictures', () => {
  const text = [
    '# Mapfile. Created by GNU ddrescue version 1.27',
    '# current_pos  current_status  current_pass',
    '0x00300000     +               1',
    '#      pos        size  status',
    '0x00000000  0x00100000  +',
    '0x00100000  0x00000400  -',
    '0x00100400  0x0000FC00  /',
    '0x00110000  0x00010000  *',
    '0x00120000  0x002E0000  ?',
  ].join('\n');
  const map = RescueMap.parse(text, 'disk.map');
  const p = layOut(map.list(), 16, 4);

  it('text: a heading, one row per grid row starting with its byte offset, and the legend with totals', () => {
    const out = mapText('disk.map', p, false);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^disk\.map: 4\.0 MiB \(4194304 bytes\) from byte 0, 64 cells of 64 KiB/);
    expect(gridLines(p, false)).toEqual([
      '      0 ++++++++++++++++',
      '1048576 -*??????????????',
      '2097152 ????????????????',
      '3145728 ????????????????',
    ]);
    expect(legendLines(p, false)).toEqual([
      '-- - bad             1.0 KiB    0.02%  1 area (1024 bytes)',
      '// / non-scraped      63 KiB    1.54%  1 area (64512 bytes)',
      '** * non-trimmed      64 KiB    1.56%  1 area (65536 bytes)',
      '?? ? non-tried       2.9 MiB   71.88%  1 area (3014656 bytes)',
      '++ + finished        1.0 MiB   25.00%  1 area (1048576 bytes)',
    ]);
    expect(lines.slice(lines.length - 5)).toEqual(legendLines(p, false));
  });

  it('colour: each cell a coloured space, no status characters in the grid', () => {
    const [first] = gridLines(p, true);
    expect(first).toBe(`      0 ${'\x1b[42m \x1b[0m'.repeat(16)}`);
  });

  it('SVG: one rectangle per cell in the status colours, a legend, well-formed', () => {
    const svg = mapSvg('disk <map>', p);
    expect(svg.startsWith("<svg xmlns='http://www.w3.org/2000/svg'")).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    const cells = [...svg.matchAll(/<rect [^>]*fill='(#[0-9a-f]{6})'><title>([a-z-]+)<\/title>/g)];
    expect(cells).toHaveLength(p.cells.length);
    expect(cells.map((m) => m[2])).toEqual(p.cells.map((s) => ({ '+': 'finished', '?': 'non-tried', '*': 'non-trimmed', '/': 'non-scraped', '-': 'bad' })[s]));
    expect(svg).toContain('disk &#60;map&#62;');
    for (const name of ['bad', 'non-scraped', 'non-trimmed', 'non-tried', 'finished']) expect(svg).toMatch(new RegExp(`[-/*?+] ${name} +[\\d.]+ [KMG]?i?B`));
  });
});
