// The live display on a real pseudo-terminal (util-linux `script`): `devmove run` draws one line per
// pair and a total, redrawn in place, then leaves only the permanent lines; without a terminal the
// same job prints plain lines and no escape sequence.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { makeImage, tempDir } from '../helpers/devices';

const MiB = 1024 * 1024;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const hasScript = spawnSync('script', ['--version']).status === 0;

describe.skipIf(!hasScript)('live progress on a terminal (needs script)', () => {
  let dir: string;
  let jobFile: string;

  beforeAll(() => {
    dir = tempDir('/var/tmp');
    makeImage(dir, 'a.img', 6 * MiB, 'random', 'a');
    makeImage(dir, 'b.img', 4 * MiB, 'random', 'b');
    // 4 MiB/s per pair: the job lasts ~1.5 s, long enough for several redraws at 10 Hz.
    jobFile = path.join(dir, 'job.json');
    fs.writeFileSync(jobFile, JSON.stringify({
      version: 1,
      defaults: { rate: '4M' },
      pairs: [
        { name: 'alpha', source: 'a.img', target: 'a.copy' },
        { name: 'beta', source: 'b.img', target: 'b.copy' },
      ],
    }));
  });

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  function clean(): void {
    for (const f of ['a.copy', 'b.copy']) fs.rmSync(path.join(dir, f), { force: true });
  }

  it('devmove run: a line per pair and a total, redrawn in place, then the permanent lines', () => {
    clean();
    const command = `'${process.execPath}' '${CLI}' run '${jobFile}'`;
    const run = spawnSync('script', ['--quiet', '--return', '--command', command, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status, run.stdout).toBe(0);
    const frames = run.stdout.split('\r\x1b[2A\x1b[J').slice(1).map((f) => f.split(/\r?\n|\r\x1b\[J/).slice(0, 3));
    const full = frames.filter((f) => f.length === 3 && f[0].startsWith('alpha') && f[1].startsWith('beta') && f[2].startsWith('total'));
    expect(full.length, run.stdout).toBeGreaterThan(2);
    const percentOf = (line: string): number => Number(/(\d+\.\d)%/.exec(line)?.[1] ?? 'NaN');
    const moving = full.find((f) => percentOf(f[0]) > 1 && percentOf(f[0]) < 99 && /\[=+>? *\]/.test(f[0]) && /ETA/.test(f[0]));
    expect(moving, 'a frame with alpha copying').toBeDefined();
    expect(moving?.[2]).toMatch(/^total +[\d.]+ [KMG]?i?B \/ [\d.]+ [KMG]?i?B +\[[=> ]+\] +\d+\.\d%/);
    // Percentages never go back, per pair.
    const alphaPercents = full.map((f) => percentOf(f[0])).filter((n) => !Number.isNaN(n));
    expect([...alphaPercents].sort((x, y) => x - y)).toEqual(alphaPercents);
    // The permanent lines survive the display; the last thing drawn is cleared.
    expect(run.stdout).toMatch(/alpha: 6291456 bytes \(6(\.0)? MiB\) copied in [\d.]+ s/);
    expect(run.stdout).toMatch(/beta: 4194304 bytes \(4(\.0)? MiB\) copied in [\d.]+ s/);
    expect(run.stdout).toMatch(/\x1b\[J2 pairs: 2 done; 10485760 bytes \(10(\.0)? MiB\) in [\d.]+ s\r?\n$/);
    expect(fs.readFileSync(path.join(dir, 'a.copy')).equals(fs.readFileSync(path.join(dir, 'a.img')))).toBe(true);
  });

  it('without a terminal: plain lines only', () => {
    clean();
    const run = spawnSync(process.execPath, [CLI, 'run', jobFile], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status).toBe(0);
    expect(run.stdout + run.stderr).not.toMatch(/\x1b/);
    expect(run.stdout.split('\n').filter(Boolean)).toHaveLength(3);
  });
});
