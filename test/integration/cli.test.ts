// The CLI end to end, as a spawned process: dd compatibility checked against
// GNU dd itself, exit codes, the stderr transfer line, --json, signals.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { attachLoop, detachAll, makeImage, sha256Range, skipWithoutLoop, tempDir } from '../helpers/devices';

const MiB = 1024 * 1024;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

function devmove(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('CLI usage', () => {
  it('--help documents operands, options and exit codes', () => {
    const run = devmove(['--help']);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^Usage: devmove if=SOURCE of=TARGET/);
    for (const word of ['bs=', 'count=', 'skip=', 'seek=', 'conv=', 'iflag=', 'oflag=', 'status=', '--queue-depth', '--json', 'Exit status']) {
      expect(run.stdout).toContain(word);
    }
  });

  it('--version prints the package version', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    expect(devmove(['--version'])).toMatchObject({ status: 0, stdout: `devmove ${pkg.version}\n` });
  });

  it.each([
    [['if=a', 'of=b', 'bs=12Q'], /invalid operand 'bs=12Q'/],
    [['if=a', 'of=b', 'conv=swab'], /conv=swab is not supported/],
    [['if=a', 'of=b', 'frob=1'], /unknown operand 'frob=1'/],
    [['if=a', 'of=b', '--queue-depth=0'], /queue-depth/],
  ])('usage error %j exits 2 with one line and a hint', (args, pattern) => {
    const run = devmove(args);
    expect(run.status).toBe(2);
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^devmove: /);
    expect(lines[0]).toMatch(pattern);
    expect(lines[1]).toBe("Try 'devmove --help' for more information.");
  });
});

describe.skipIf(skipWithoutLoop)('CLI copies like GNU dd', () => {
  let dir: string;
  let source: string;
  beforeAll(() => {
    dir = tempDir('/var/tmp');
    source = makeImage(dir, 'source.img', 5 * MiB + 1234);
  });
  afterAll(detachAll);

  // Each operand list runs through dd and devmove onto identical pre-filled targets.
  const cases: string[][] = [
    [],
    ['bs=1M'],
    ['bs=4k', 'count=10'],
    ['bs=1M', 'count=2', 'skip=1', 'seek=3'],
    ['ibs=4096', 'obs=512', 'skip=3', 'seek=7', 'count=100'],
    ['bs=1000', 'count=7', 'skip=3'],
    ['bs=64K', 'skip=1', 'conv=notrunc'],
    ['bs=512', 'seek=5', 'conv=notrunc', 'count=2x512'],
    ['iflag=skip_bytes,count_bytes', 'skip=12345', 'count=100000'],
    ['oflag=seek_bytes', 'seek=777', 'bs=128K'],
    ['bs=1M', 'count=1', 'skip=5'],
    ['oflag=seek_bytes', 'seek=140000', 'bs=128K'],
    ['bs=4K', 'seek=1'],
    ['count=3', 'skip=2', 'iflag=skip_bytes'],
    ['bs=2M', 'conv=fsync', 'oflag=direct'],
  ];

  it.each(cases)('dd %j', (...operands) => {
    const ddTarget = path.join(dir, 'dd.img');
    const ourTarget = path.join(dir, 'ours.img');
    for (const t of [ddTarget, ourTarget]) fs.writeFileSync(t, Buffer.alloc(3 * MiB + 99, 0xc3));
    const dd = spawnSync('dd', [`if=${source}`, `of=${ddTarget}`, ...operands, 'status=none'], { encoding: 'utf8' });
    const ours = devmove([`if=${source}`, `of=${ourTarget}`, ...operands, 'status=none']);
    expect(ours.stderr).toBe(dd.stderr.replace(/^dd: /gm, 'devmove: '));
    expect(ours.status).toBe(dd.status);
    expect(fs.statSync(ourTarget).size).toBe(fs.statSync(ddTarget).size);
    expect(sha256Range(ourTarget, 0, fs.statSync(ourTarget).size)).toBe(sha256Range(ddTarget, 0, fs.statSync(ddTarget).size));
  });

  it('skip past the end of the source: refused with exit 1 and the target left alone (GNU dd copies nothing and truncates)', () => {
    const target = path.join(dir, 'past.img');
    fs.writeFileSync(target, Buffer.alloc(MiB, 0x7e));
    const run = devmove([`if=${source}`, `of=${target}`, 'bs=1M', 'skip=6']);
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(`devmove: if=${source}: source offset ${6 * MiB} bytes is past the end of the source (${5 * MiB + 1234} bytes) (EINVAL from read)\n`);
    expect(fs.readFileSync(target).equals(Buffer.alloc(MiB, 0x7e))).toBe(true);
  });

  it('prints dd\'s records and transfer lines on stderr, matching dd\'s counts', () => {
    const target = path.join(dir, 'lines.img');
    const operands = ['bs=1M', 'count=3', 'ibs=1000', 'obs=4096'];
    const dd = spawnSync('dd', [`if=${source}`, `of=${target}`, ...operands], { encoding: 'utf8' });
    const ours = devmove([`if=${source}`, `of=${target}`, ...operands]);
    const ddLines = dd.stderr.trimEnd().split('\n');
    const ourLines = ours.stderr.trimEnd().split('\n');
    expect(ours.status).toBe(0);
    expect(ourLines.slice(0, 2)).toEqual(ddLines.slice(0, 2));
    expect(ourLines[2]).toMatch(/^3145728 bytes \(3\.1 MB, 3\.0 MiB\) copied, [0-9.e-]+ s, [0-9.]+ [kMG]?B\/s$/);
    expect(ourLines[2].split(',')[0]).toBe(ddLines[2].split(',')[0]);
  });

  it('status=noxfer prints only the records lines; status=none prints nothing', () => {
    const target = path.join(dir, 'quiet.img');
    expect(devmove([`if=${source}`, `of=${target}`, 'status=noxfer']).stderr).toBe('10+1 records in\n10+1 records out\n'.replace('10+1', `${Math.floor((5 * MiB + 1234) / 512)}+1`).replace('10+1', `${Math.floor((5 * MiB + 1234) / 512)}+1`));
    expect(devmove([`if=${source}`, `of=${target}`, 'status=none'])).toMatchObject({ status: 0, stderr: '', stdout: '' });
  });
});

describe.skipIf(skipWithoutLoop)('CLI on loop devices', () => {
  let dir: string;
  let source: string;
  let target: string;
  beforeAll(() => {
    dir = tempDir();
    source = attachLoop(makeImage(dir, 'source.img', 64 * MiB));
    target = attachLoop(makeImage(dir, 'target.img', 64 * MiB, 'zero'));
  });
  afterAll(detachAll);

  it('device → device, exit 0, data identical', () => {
    const run = devmove([`if=${source}`, `of=${target}`, 'bs=1M']);
    expect(run.status).toBe(0);
    expect(run.stderr).toMatch(/^64\+0 records in\n64\+0 records out\n67108864 bytes \(67 MB, 64 MiB\) copied, /);
    expect(sha256Range(target, 0, 64 * MiB)).toBe(sha256Range(source, 0, 64 * MiB));
  });

  // util-linux `script` gives the CLI a real pseudo-terminal as stderr.
  it.skipIf(spawnSync('script', ['--version']).status !== 0)('on a terminal: one live line with bytes, bar, percent, rate and ETA, cleared before the final lines', () => {
    const command = [process.execPath, CLI, `if=${source}`, `of=${target}`, 'bs=4K', '--queue-depth=1', 'count=16M', 'iflag=count_bytes']
      .map((a) => `'${a}'`)
      .join(' ');
    const run = spawnSync('script', ['--quiet', '--return', '--command', command, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status).toBe(0);
    const live = run.stdout.split('\r\x1b[K').filter((l) => l.includes('ETA'));
    expect(live.length).toBeGreaterThan(0);
    expect(live[0]).toMatch(/^ *\d+(\.\d)? [KMG]?i?B \/ 16 MiB +\[[=> ]{10,}\] +\d+\.\d%  [\d.]+ [kMG]?B\/s  ETA (\d+:\d\d|--:--)$/);
    expect(run.stdout).toMatch(/\r\x1b\[K4096\+0 records in\r?\n4096\+0 records out\r?\n16777216 bytes \(17 MB, 16 MiB\) copied/);
  });

  it('accepts node names and MAJ:MIN for if= and of= (devmove if=loop3 of=loop4)', () => {
    const name = (dev: string): string => path.basename(dev);
    const run = devmove([`if=${name(source)}`, `of=${name(target)}`, 'count=4M', 'iflag=count_bytes', 'status=none']);
    expect(run).toMatchObject({ status: 0, stderr: '' });
    expect(sha256Range(target, 0, 4 * MiB)).toBe(sha256Range(source, 0, 4 * MiB));
    const devno = fs.readFileSync(`/sys/class/block/${name(target)}/dev`, 'utf8').trim();
    expect(devmove([`if=${name(source)}`, `of=${devno}`, 'count=1M', 'iflag=count_bytes', 'status=none']).status).toBe(0);
    // Errors name the operand even when a node name was given.
    const small = attachLoop(makeImage(dir, 'named-small.img', MiB, 'zero'));
    const failed = devmove([`if=${name(source)}`, `of=${name(small)}`]);
    expect(failed.status).toBe(1);
    expect(failed.stderr).toMatch(new RegExp(`^devmove: of=${small}: target too small`));
  });

  it('devmove devices lists the loop devices; devices info NAME --json has the backing file', () => {
    const table = devmove(['devices']);
    expect(table.status).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+SIZE\s+TYPE/);
    expect(table.stdout).toMatch(new RegExp(`^${path.basename(source)}\\s+64 MiB\\s+loop`, 'm'));
    const info = devmove(['devices', 'info', path.basename(source), '--json']);
    expect(info.status).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({ name: path.basename(source), path: source, loop: { backingFile: `${dir}/source.img` } });
    const missing = devmove(['devices', 'info', 'nosuchdisk9']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/nosuchdisk9/);
  });

  it('--json prints JSON lines: progress events and a final result', () => {
    const run = devmove([`if=${source}`, `of=${target}`, '--json', 'count=8M', 'iflag=count_bytes']);
    expect(run.status).toBe(0);
    expect(run.stderr).toBe('');
    const events = run.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; bytesCopied?: number; durability?: string });
    const last = events[events.length - 1];
    expect(last).toMatchObject({ type: 'result', bytesCopied: 8 * MiB, durability: 'fdatasync' });
    expect(events.slice(0, -1).every((e) => e.type === 'progress')).toBe(true);
  });

  it('a runtime error exits 1 with one line naming the operand and the reason', () => {
    const small = attachLoop(makeImage(dir, 'small.img', MiB, 'zero'));
    const run = devmove([`if=${source}`, `of=${small}`]);
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(
      `devmove: of=${small}: target too small: the copy needs 67108864 bytes (offset 0 + length 67108864) but the device has 1048576 bytes (ENOSPC from write)\n`,
    );
    const json = devmove([`if=${source}`, `of=${small}`, '--json']);
    expect(JSON.parse(json.stdout.trim())).toMatchObject({ type: 'error', code: 'ENOSPC', syscall: 'write', path: small });
  });

  function startSlowCopy(extra: string[] = []): ReturnType<typeof spawn> {
    return spawn(process.execPath, [CLI, `if=${source}`, `of=${target}`, 'bs=512', '--queue-depth=1', '--json', ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  function collect(child: ReturnType<typeof spawn>): Promise<{ code: number | null; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  }

  function onFirstProgress(child: ReturnType<typeof spawn>, action: () => void): void {
    let fired = false;
    child.stdout?.on('data', (d: Buffer) => {
      if (!fired && d.toString().includes('"type":"progress"') && /"bytesDone":[1-9]/.test(d.toString())) {
        fired = true;
        action();
      }
    });
  }

  it('SIGUSR1 prints dd\'s statistics lines with the live byte count and the copy goes on', async () => {
    const child = startSlowCopy();
    onFirstProgress(child, () => {
      child.kill('SIGUSR1');
      setTimeout(() => child.kill('SIGINT'), 300);
    });
    const { code, stderr } = await collect(child);
    expect(code).toBe(130);
    const lines = stderr.split('\n');
    expect(lines[0]).toMatch(/^[1-9]\d*\+\d records in$/);
    expect(lines[1]).toMatch(/^[1-9]\d*\+\d records out$/);
    expect(lines[2]).toMatch(/^[1-9]\d* bytes .*copied, [0-9.e-]+ s, /);
    expect(lines[3]).toMatch(/^devmove: interrupted by SIGINT after [1-9]\d* bytes/);
  });

  it('SIGINT stops cleanly: drained, flushed, exit 130, one line saying so', async () => {
    const child = startSlowCopy();
    onFirstProgress(child, () => child.kill('SIGINT'));
    const { code, stderr } = await collect(child);
    expect(code).toBe(130);
    expect(stderr).toMatch(/^devmove: interrupted by SIGINT after \d+ bytes; what was written has been flushed\n$/);
  });

  it('SIGTERM exits 143', async () => {
    const child = startSlowCopy();
    onFirstProgress(child, () => child.kill('SIGTERM'));
    expect((await collect(child)).code).toBe(143);
  });
});
