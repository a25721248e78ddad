// `devmove map` on real mapfiles of a real faulty device (the FUSE fixture behind a loop device):
// devmove's own map of an interrupted noError copy, and GNU ddrescue's map of the same device
// without its scraping phase. The grid must show every bad range, the legend must give the map's
// own totals, and the SVG must render (rsvg-convert, when installed).
// DEVMOVE_MAP_EXAMPLE_DIR=DIR also writes the pictures there (README's example is made so).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { copy, CopyAbortError } from '../../src/index';
import { RescueMap, type BlockStatus } from '../../src/resume/mapfile';
import { attachLoop, detachAll, makeImage, skipWithoutLoop, tempDir } from '../helpers/devices';
import { FaultyDevice, skipWithoutFuse } from '../helpers/faulty';

const KiB = 1024;
const MiB = 1024 * KiB;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const SIZE = 32 * MiB;
const COLUMNS = 32;
const ROWS = 8;
const CELL = SIZE / (COLUMNS * ROWS); // 128 KiB
/** Unreadable ranges: a few scattered ones and a cluster, as a failing disk shows them. */
const BAD: Array<[number, number]> = [
  [1 * MiB + 512, 1024],
  [5 * MiB, 64 * KiB],
  ...Array.from({ length: 6 }, (_, i): [number, number] => [9 * MiB + i * 384 * KiB, 4 * KiB]),
  [13 * MiB + 3 * 512, 512],
];
const has = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;

function devmoveMap(args: string[], cwd?: string): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [CLI, 'map', ...args], { encoding: 'utf8', timeout: 60_000, cwd });
}

/** The status characters of the --no-color grid, cell by cell. */
function gridCells(stdout: string): BlockStatus[] {
  const rows = stdout.split('\n').filter((l) => /^ *\d+ [-/*?+]+$/.test(l));
  return rows.flatMap((r) => [...r.trim().split(' ')[1]] as BlockStatus[]);
}

function expectLegendMatches(stdout: string, map: RescueMap): void {
  for (const [status, name] of [['+', 'finished'], ['?', 'non-tried'], ['*', 'non-trimmed'], ['/', 'non-scraped'], ['-', 'bad']] as const) {
    const bytes = map.bytes(status);
    expect(stdout).toMatch(new RegExp(`^\\${status}\\${status} \\${status} ${name} .* \\(${bytes} bytes\\)$`, 'm'));
  }
}

function exampleOut(name: string, from: string): void {
  const dir = process.env.DEVMOVE_MAP_EXAMPLE_DIR;
  if (dir) fs.copyFileSync(from, path.join(dir, name));
}

describe.skipIf(skipWithoutLoop || skipWithoutFuse)('devmove map on a faulty device (root, FUSE)', () => {
  let dir: string;
  let device: string;

  beforeAll(async () => {
    dir = tempDir('/var/tmp');
    device = (await FaultyDevice.create({ sizeBytes: SIZE, readErrors: BAD })).device;
  });

  afterAll(() => {
    FaultyDevice.destroyAll();
    detachAll();
  });

  it("devmove's map of an interrupted noError copy: bad ranges, finished and non-tried cells, the map's totals", async () => {
    const target = attachLoop(makeImage(dir, 'target.img', SIZE, 'zero'));
    const mapfile = path.join(dir, 'devmove.map');
    const controller = new AbortController();
    const job = copy({ source: device, target, noError: true, mapfile, rate: '12M', progressInterval: 100, signal: controller.signal });
    job.on('progress', (p) => {
      if (p.bytesDone > 0.75 * SIZE) controller.abort();
    });
    await expect(job).rejects.toBeInstanceOf(CopyAbortError);
    const map = RescueMap.parse(fs.readFileSync(mapfile, 'utf8'), mapfile);
    expect(map.ranges(['-'])).toEqual(BAD);
    expect(map.bytes('?')).toBeGreaterThan(0);

    const svg = path.join(dir, 'devmove-map.svg');
    const run = devmoveMap(['devmove.map', '--no-color', `--columns=${COLUMNS}`, `--rows=${ROWS}`, '--svg', svg], dir);
    expect(run.status, run.stderr).toBe(0);
    const cells = gridCells(run.stdout);
    expect(cells).toHaveLength(COLUMNS * ROWS);
    const cellsWithBad = new Set(BAD.flatMap(([o, l]) => [Math.floor(o / CELL), Math.floor((o + l - 1) / CELL)]));
    cells.forEach((c, i) => expect(c, `cell ${i}`).toBe(cellsWithBad.has(i) ? '-' : map.bytes('?', i * CELL, (i + 1) * CELL) > 0 ? '?' : '+'));
    expectLegendMatches(run.stdout, map);
    expect([...fs.readFileSync(svg, 'utf8').matchAll(/<title>bad<\/title>/g)]).toHaveLength(cellsWithBad.size);
    fs.writeFileSync(path.join(dir, 'devmove-map.txt'), run.stdout);
    exampleOut('map-faulty-devmove.svg', svg);
    exampleOut('map-faulty-devmove.txt', path.join(dir, 'devmove-map.txt'));
    exampleOut('faulty-devmove.map', mapfile);
  });

  it.skipIf(!has('ddrescue'))("GNU ddrescue's map (no scraping: non-scraped areas around the bad sectors) (needs ddrescue)", () => {
    const mapfile = path.join(dir, 'ddrescue.map');
    const rescue = spawnSync('ddrescue', ['-n', '-d', '-f', device, path.join(dir, 'ddrescue.img'), mapfile], { encoding: 'utf8', timeout: 120_000 });
    expect(rescue.status, rescue.stderr).toBe(0);
    const map = RescueMap.parse(fs.readFileSync(mapfile, 'utf8'), mapfile);
    const unfinished = map.ranges(['-', '/', '*']);
    expect(unfinished.length).toBeGreaterThan(0);

    const run = devmoveMap([mapfile, '--no-color', `--columns=${COLUMNS}`, `--rows=${ROWS}`]);
    expect(run.status, run.stderr).toBe(0);
    const cells = gridCells(run.stdout);
    expect(cells).toHaveLength(COLUMNS * ROWS);
    // Every cell holding one of ddrescue's unfinished bytes shows it; every other cell is finished.
    cells.forEach((c, i) => expect(c !== '+', `cell ${i}`).toBe(unfinished.some(([o, l]) => o < (i + 1) * CELL && o + l > i * CELL)));
    expectLegendMatches(run.stdout, map);
    exampleOut('faulty-ddrescue.map', mapfile);
  });

  it.skipIf(!has('rsvg-convert'))('the SVG renders to a PNG of the expected size (needs rsvg-convert)', () => {
    const svg = path.join(dir, 'devmove-map.svg');
    const png = path.join(dir, 'devmove-map.png');
    const render = spawnSync('rsvg-convert', ['-o', png, svg], { encoding: 'utf8' });
    expect(render.status, render.stderr).toBe(0);
    const header = fs.readFileSync(png).subarray(0, 24);
    expect(header.subarray(1, 4).toString()).toBe('PNG');
    const width = header.readUInt32BE(16);
    expect(width).toBe(Number(/width='(\d+)'/.exec(fs.readFileSync(svg, 'utf8'))?.[1]));
    exampleOut('map-faulty-devmove.png', png);
  });

  it('usage errors exit 2; an unreadable or foreign file exits 1 with one line', () => {
    expect(devmoveMap([]).status).toBe(2);
    expect(devmoveMap(['a.map', '--columns=0']).stderr).toMatch(/--columns takes a whole number/);
    const missing = devmoveMap([path.join(dir, 'nope.map')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^devmove: map: .*nope\.map: ENOENT/);
    const foreign = path.join(dir, 'foreign.txt');
    fs.writeFileSync(foreign, 'hello\n');
    expect(devmoveMap([foreign])).toMatchObject({ status: 1, stderr: expect.stringMatching(/^devmove: map: .*foreign\.txt:1: expected 'current_pos current_status/) });
  });
});
