// GNU coreutils' own dd tests as devmove's specification. Each describe is one
// script of coreutils' tests/dd/ (read at coreutils commit aa0c0de, 2026-08;
// the scripts are not copied: each case restates the fact it checks), each
// case runs devmove and, where the local GNU dd (Debian 12: 9.1) already
// behaves as upstream expects, dd on the same input. Where devmove differs on
// purpose, the case asserts devmove's documented behaviour (README, "Where
// devmove differs from dd, on purpose"). Cases on standard input and output,
// pipes and FIFOs run on real ones, once per I/O driver (DEVMOVE_IO_ENGINE);
// devmove reads a pipe in full blocks, so its record counts are compared with
// `dd iflag=fullblock`'s. Short reads are made deterministic by a feeder that
// writes the next piece into a FIFO only once the reader has taken the last
// (helpers/cli.ts, feedFifo). Character devices and conversions are outside
// devmove's scope: those operands are refused.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { formatRate, transferLine } from '../../src/cli/output';
import { CLI, devmove, feedFifo, gnuDd, installed, LAUNCHER, shell, shellAsync, tool, type Run } from '../helpers/cli';
import { attachLoop, detachAll, makeImage, sha256File, skipWithoutLoop, tempDir } from '../helpers/devices';
import { FaultyDevice, skipWithoutFuse } from '../helpers/faulty';

const KiB = 1024;
const MiB = 1024 * KiB;
const hasStrace = installed('strace');
const underAsan = process.env.LD_PRELOAD?.includes('asan') === true;
const hasScript = spawnSync('script', ['--version']).status === 0;
const DRIVERS = ['io_uring', 'threads'] as const;

/** dd's stderr as devmove prints it: the same text under devmove's name. */
function asDevmove(stderr: string): string {
  return stderr.replace(/^dd: /gm, 'devmove: ');
}

function write(dir: string, name: string, content: string | Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
}

function read(file: string): Buffer {
  return fs.readFileSync(file);
}

/** KiB allocated to a file (du -k). */
function allocatedKiB(file: string): number {
  return Math.ceil((fs.statSync(file).blocks * 512) / KiB);
}

/**
 * Runs dd and devmove with `operands` onto two copies of `initial` (absent: no target file yet);
 * devmove on `engine`'s I/O driver (absent: the process's default).
 */
function both(dir: string, operands: string[], source: string, initial?: Buffer, engine?: string): { dd: Run; ours: Run; ddOut: string; ourOut: string } {
  const ddOut = path.join(dir, 'dd.out');
  const ourOut = path.join(dir, 'devmove.out');
  for (const f of [ddOut, ourOut]) {
    fs.rmSync(f, { force: true });
    if (initial) fs.writeFileSync(f, initial);
  }
  const dd = gnuDd([`if=${source}`, `of=${ddOut}`, ...operands]);
  const ours = devmove([`if=${source}`, `of=${ourOut}`, ...operands], undefined, engine === undefined ? {} : { DEVMOVE_IO_ENGINE: engine });
  return { dd, ours, ddOut, ourOut };
}

/** Resolves once `condition` holds (polled; the test's timeout is the limit, no time is asserted). */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** A FIFO made for `body` and removed after it, whatever happens. */
async function withFifo<T>(name: string, body: (fifo: string) => Promise<T>): Promise<T> {
  const fifo = path.join(dir, name);
  fs.rmSync(fifo, { force: true });
  expect(tool('mkfifo', [fifo]).status).toBe(0);
  try {
    return await body(fifo);
  } finally {
    fs.rmSync(fifo, { force: true });
  }
}

/** Runs `script` (with $FIFO) while `pieces` arrive through the FIFO as separate short reads. */
function overFifo(script: string, pieces: readonly string[], vars: Record<string, string> = {}): Promise<Run> {
  return withFifo('pieces.fifo', async (fifo) => {
    const [run, feeder] = await Promise.all([shellAsync(script, { ...vars, FIFO: fifo }), feedFifo(fifo, pieces)]);
    expect(feeder.status, feeder.stderr).toBe(0);
    return run;
  });
}

let dir: string;
beforeAll(() => {
  // ext4 on this machine: O_DIRECT and sparse files, as the upstream scripts want.
  dir = tempDir('/var/tmp');
});
afterAll(() => {
  FaultyDevice.destroyAll();
  detachAll();
});

describe('bytes.sh', () => {
  const input = '0123456789abcdefghijklm\n';

  it('count=14B and count=14 iflag=count_bytes copy 14 bytes', () => {
    // Upstream adds conv=swab (a conversion devmove does not have) to the same counts.
    const source = write(dir, 'bytes.in', input);
    for (const operands of [['count=14B'], ['count=14', 'iflag=count_bytes']]) {
      const { dd, ours, ourOut } = both(dir, [...operands, 'status=none'], source);
      expect([dd.status, ours.status]).toEqual([0, 0]);
      expect(read(ourOut).toString()).toBe('0123456789abcd');
    }
  });

  it('iseek=10B and skip=10 iflag=skip_bytes skip 10 bytes', () => {
    const source = write(dir, 'bytes.in', input);
    for (const operands of [['iseek=10B'], ['skip=10', 'iflag=skip_bytes']]) {
      const { ours, ourOut, ddOut } = both(dir, [...operands, 'status=none'], source);
      expect(ours.status).toBe(0);
      expect(read(ourOut).toString()).toBe('abcdefghijklm\n');
      expect(read(ourOut).equals(read(ddOut))).toBe(true);
    }
  });

  it('oseek=8B and seek=8 oflag=seek_bytes (bs=5) write after 8 NUL bytes; with count=0 only the size changes', () => {
    // Upstream reads the data from a pipe; the result on the target is the same.
    const source = write(dir, 'seek.in', 'abcdefghijklm\n');
    for (const operands of [['oseek=8B'], ['seek=8', 'oflag=seek_bytes']]) {
      const { ours, ourOut } = both(dir, [...operands, 'bs=5', 'status=none'], source);
      expect(ours.status).toBe(0);
      expect(read(ourOut)).toEqual(Buffer.concat([Buffer.alloc(8), Buffer.from('abcdefghijklm\n')]));
      const sized = both(dir, [...operands, 'bs=5', 'count=0', 'status=none'], source);
      expect(sized.ours.status).toBe(0);
      expect(read(sized.ourOut)).toEqual(Buffer.alloc(8));
      expect(read(sized.ddOut)).toEqual(Buffer.alloc(8));
    }
  });

  it.each(['1x2x4 oflag=seek_bytes', '1Bx2x4', '1Bx8', '2Bx4B', '2x4B'])('oseek=%s is 8 bytes', (operand) => {
    const source = write(dir, 'seek.in', 'abcdefghijklm\n');
    const [value, ...rest] = operand.split(' ');
    const ours = devmove([`if=${source}`, `of=${path.join(dir, 'mult.out')}`, `oseek=${value}`, ...rest, 'bs=5', 'status=none']);
    expect(ours).toMatchObject({ status: 0, stderr: '' });
    expect(read(path.join(dir, 'mult.out'))).toEqual(Buffer.concat([Buffer.alloc(8), Buffer.from('abcdefghijklm\n')]));
    fs.rmSync(path.join(dir, 'mult.out'));
  });

  it('a multiplier chain of 10,000 factors works under a 256 KiB stack', () => {
    // dd 9.1 still refuses such a chain; upstream expects it to work.
    const source = write(dir, 'chain.in', 'data\n');
    const chain = `${'1x'.repeat(10_000)}1`;
    const r = shell('ulimit -S -s 256 && DEVMOVE if="$IN" of="$OUT" count="$CHAIN" status=none', {
      IN: source,
      OUT: path.join(dir, 'chain.out'),
      CHAIN: chain,
    });
    expect(r).toMatchObject({ status: 0, stderr: '' });
    expect(read(path.join(dir, 'chain.out')).toString()).toBe('data\n');
  });

  it.each(['B', 'B1', 'Bx1', 'KBB', 'BB', 'KBb', 'KBx', 'x1', '1x', '1xx1'])('count=%s is not a number', (count) => {
    const source = write(dir, 'bytes.in', input);
    // dd exits 1 for a bad operand, devmove 2 (usage errors are told apart from failed copies, on purpose).
    expect(gnuDd([`if=${source}`, 'of=/dev/null', `count=${count}`]).status).toBe(1);
    const ours = devmove([`if=${source}`, `of=${path.join(dir, 'never.out')}`, `count=${count}`]);
    expect(ours.status).toBe(2);
    expect(ours.stderr).toMatch(new RegExp(`^devmove: invalid operand 'count=${count.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`));
    expect(fs.existsSync(path.join(dir, 'never.out'))).toBe(false);
  });

  describe.each(DRIVERS)('on pipes (%s driver)', (engine) => {
    it.each(['iseek=10B', 'skip=10 iflag=skip_bytes'])('%s bs=2 from a pipe skips 10 bytes, as dd', (operands) => {
      const run = (dd: string): Run => shell(`printf '${input}' | ${dd} ${operands} bs=2 status=noxfer`, { DEVMOVE_IO_ENGINE: engine });
      const dd = run('dd');
      const ours = run('DEVMOVE');
      expect(dd).toMatchObject({ status: 0, stdout: 'abcdefghijklm\n', stderr: '7+0 records in\n7+0 records out\n' });
      expect(ours).toMatchObject({ status: 0, stdout: dd.stdout, stderr: dd.stderr });
    });

    it.each(['oseek=8B', 'seek=8 oflag=seek_bytes'])('%s bs=5 from a pipe onto standard output redirected to a file', (operands) => {
      const expected = Buffer.concat([Buffer.alloc(8), Buffer.from('abcdefghijklm\n')]);
      for (const [who, out] of [['dd', 'seek.dd'], ['DEVMOVE', 'seek.ours']]) {
        const file = path.join(dir, out);
        fs.rmSync(file, { force: true });
        const r = shell(`printf 'abcdefghijklm\\n' | ${who} ${operands} bs=5 status=none > "$OUT"`, { OUT: file, DEVMOVE_IO_ENGINE: engine });
        expect(r, who).toMatchObject({ status: 0, stderr: '' });
        expect(read(file), who).toEqual(expected);
      }
    });

    it('oseek=8B onto standard output that is a pipe: "cannot seek", exit 1, naming standard output (the source is standard input too)', () => {
      const run = (who: string): Run => shell(`set -o pipefail; printf 'abcdefghijklm\\n' | ${who} oseek=8B bs=5 | cat`, { DEVMOVE_IO_ENGINE: engine });
      expect(run('dd')).toMatchObject({ status: 1, stdout: '' });
      expect(run('dd').stderr).toMatch(/^dd: 'standard output': cannot seek: Illegal seek\n/);
      expect(run('DEVMOVE')).toMatchObject({ status: 1, stdout: '', stderr: 'devmove: of=-: cannot seek on a pipe (seek= needs a seekable target) (ESPIPE from lseek)\n' });
    });
  });

  it('conv=swab (upstream adds it to count=14B): refused as a usage error, nothing created', () => {
    const source = write(dir, 'bytes.in', input);
    expect(gnuDd([`if=${source}`, 'count=14B', 'conv=swab', 'status=none']).stdout).toBe('1032547698badc');
    const ours = devmove([`if=${source}`, `of=${path.join(dir, 'swab.out')}`, 'count=14B', 'conv=swab']);
    expect(ours).toMatchObject({ status: 2, stderr: "devmove: conv=swab is not supported by devmove yet\nTry 'devmove --help' for more information.\n" });
    expect(fs.existsSync(path.join(dir, 'swab.out'))).toBe(false);
  });
});

describe('direct.sh', () => {
  const probe = (): boolean => gnuDd([`if=${write(dir, 'direct.probe', Buffer.alloc(8192))}`, 'oflag=direct', `of=${path.join(dir, 'direct.probe.out')}`]).status === 0;

  it('iflag=direct oflag=direct copies files of 511, 8191 and 8193 bytes (the tail without O_DIRECT)', (ctx) => {
    if (!probe()) ctx.skip(); // upstream skips where the file system has no 512-byte O_DIRECT
    for (const size of [511, 8191, 8193]) {
      const source = makeImage(dir, `direct-${size}.in`, size);
      const { dd, ours, ourOut } = both(dir, ['iflag=direct', 'oflag=direct', 'status=none'], source);
      expect([dd.status, ours.status, ours.stderr]).toEqual([0, 0, '']);
      expect(read(ourOut).equals(read(source))).toBe(true);
    }
  });
});

describe('misc.sh', () => {
  it('status=none prints nothing', () => {
    const source = write(dir, 'misc.in', 'data\n');
    const { dd, ours, ourOut } = both(dir, ['status=none'], source);
    expect(dd).toMatchObject({ status: 0, stderr: '' });
    expect(ours).toMatchObject({ status: 0, stderr: '', stdout: '' });
    expect(read(ourOut).toString()).toBe('data\n');
  });

  it('status=none with skip= past the end: dd copies nothing in silence; devmove refuses (exit 1), on purpose', () => {
    const source = write(dir, 'misc.in', 'data\n');
    const { dd, ours, ourOut } = both(dir, ['status=none', 'skip=2'], source, Buffer.from('keep'));
    expect(dd).toMatchObject({ status: 0, stderr: '' });
    expect(ours.status).toBe(1);
    expect(ours.stderr).toBe(`devmove: if=${source}: source offset 1024 bytes is past the end of the source (5 bytes) (EINVAL from read)\n`);
    expect(read(ourOut).toString()).toBe('keep');
  });

  it('the last status= wins: noxfer then none prints nothing, none then noxfer the records', () => {
    const source = write(dir, 'misc.in', 'data\n');
    for (const operands of [['status=noxfer', 'status=none'], ['status=none', 'status=noxfer']]) {
      const { dd, ours } = both(dir, operands, source);
      expect(ours.status).toBe(0);
      expect(ours.stderr).toBe(asDevmove(dd.stderr));
    }
    expect(devmove([`if=${source}`, `of=${path.join(dir, 'x.out')}`, 'status=none', 'status=noxfer']).stderr).toBe('0+1 records in\n0+1 records out\n');
  });

  it('if= of= copies, also after `--`', () => {
    const source = write(dir, 'misc.in', 'data\n');
    const out = path.join(dir, 'dashdash.out');
    expect(devmove([`if=${source}`, `of=${out}`, 'status=none']).status).toBe(0);
    expect(read(out).toString()).toBe('data\n');
    fs.rmSync(out);
    expect(devmove(['--', `if=${source}`, `of=${out}`, 'status=none']).status).toBe(0);
    expect(read(out).toString()).toBe('data\n');
  });

  it('oflag=append, iflag=nofollow, iflag=directory, oflag=nolinks: refused in one line (upstream checks them only where they work)', () => {
    const source = write(dir, 'misc.in', 'data\n');
    for (const flag of ['oflag=append', 'iflag=nofollow', 'iflag=directory', 'oflag=nolinks']) {
      const ours = devmove([`if=${source}`, `of=${path.join(dir, 'flag.out')}`, flag]);
      expect(ours.status).toBe(2);
      expect(ours.stderr).toBe(`devmove: ${flag} is not supported by devmove yet\nTry 'devmove --help' for more information.\n`);
    }
  });

  it('iflag=noatime leaves the source\'s access time alone (and a copy without it does not)', () => {
    const source = write(dir, 'atime.in', 'data\n');
    const old = new Date(Date.now() - 3 * 86_400_000); // relatime updates an atime older than a day
    const atime = (): number => fs.statSync(source).atimeMs;
    fs.utimesSync(source, old, fs.statSync(source).mtime);
    const before = atime();
    expect(devmove([`if=${source}`, `of=${path.join(dir, 'atime.out')}`, 'iflag=noatime', 'status=none']).status).toBe(0);
    expect(atime()).toBe(before);
    expect(devmove([`if=${source}`, `of=${path.join(dir, 'atime.out')}`, 'status=none']).status).toBe(0);
    expect(atime()).toBeGreaterThan(before);
  });

  it("count=0x1 seek=0x1 skip=0x1: dd's warning three times, then zero of everything", () => {
    const source = write(dir, 'misc.in', 'data\n');
    const { dd, ours, ourOut, ddOut } = both(dir, ['count=0x1', 'seek=0x1', 'skip=0x1', 'status=none'], source, Buffer.from('old'));
    const warning = "warning: '0x' is a zero multiplier; use '00x' if that is intended\n";
    expect(dd.stderr).toBe(`dd: ${warning}`.repeat(3));
    expect(ours).toMatchObject({ status: 0, stderr: asDevmove(dd.stderr) });
    expect(read(ourOut).equals(read(ddOut))).toBe(true);
    expect(read(ourOut).length).toBe(0);
  });

  it('count=00x(61 nines) status=noxfer: no warning, no overflow, 0+0 records, an empty target', () => {
    const source = write(dir, 'misc.in', 'data\n');
    const { dd, ours, ourOut } = both(dir, [`count=00x${'9'.repeat(61)}`, 'status=noxfer'], source);
    expect(dd).toMatchObject({ status: 0, stderr: '0+0 records in\n0+0 records out\n' });
    expect(ours).toMatchObject({ status: 0, stderr: '0+0 records in\n0+0 records out\n' });
    expect(read(ourOut).length).toBe(0);
  });

  it.skipIf(!hasStrace)('the target is cut with O_TRUNC on an open, so a failing ftruncate (strace fault injection) does not matter', () => {
    for (const content of ['data\n', '']) {
      const source = write(dir, 'otrunc.in', content);
      const out = write(dir, 'otrunc.out', 'a much longer old content\n');
      const r = tool('strace', ['-f', '--quiet=all', '-o', '/dev/null', '-e', 'inject=truncate,ftruncate:error=EIO', '-P', out, process.execPath, CLI, `if=${source}`, `of=${out}`, 'status=none']);
      expect(r).toMatchObject({ status: 0, stdout: '', stderr: '' });
      expect(read(out).toString()).toBe(content);
    }
  });

  describe.each(DRIVERS)('on pipes (%s driver)', (engine) => {
    it('if=/dev/stdin with standard input redirected from a file copies it', () => {
      const source = write(dir, 'misc.in', 'data\n');
      for (const [who, out] of [['dd', 'stdin.dd'], ['DEVMOVE', 'stdin.ours']]) {
        fs.rmSync(path.join(dir, out), { force: true });
        const r = shell(`${who} if=/dev/stdin of="$OUT" status=none < "$IN"`, { IN: source, OUT: path.join(dir, out), DEVMOVE_IO_ENGINE: engine });
        expect(r, who).toMatchObject({ status: 0, stderr: '' });
        expect(read(path.join(dir, out)).toString(), who).toBe('data\n');
      }
    });

    it('two short reads from a pipe fill one bs=4 block: devmove always, dd with iflag=fullblock', async () => {
      const run = (who: string): Promise<Run> => overFifo(`${who} bs=4 status=noxfer < "$FIFO"`, ['a\n', 'b\n'], { DEVMOVE_IO_ENGINE: engine });
      // Without iflag=fullblock dd takes each short read as a record: the reads really were short.
      expect(await run('dd')).toMatchObject({ status: 0, stdout: 'a\nb\n', stderr: '0+2 records in\n0+2 records out\n' });
      const full = { status: 0, stdout: 'a\nb\n', stderr: '1+0 records in\n1+0 records out\n' };
      expect(await run('dd iflag=fullblock')).toMatchObject(full);
      expect(await run('DEVMOVE')).toMatchObject(full);
      expect(await run('DEVMOVE iflag=fullblock')).toMatchObject(full);
    });

    it('conv=sync alone (dd pads the 2-byte read to bs=3): a usage error, nothing written', () => {
      const run = (who: string): Run => shell(`echo x | ${who} bs=3 ibs=10 obs=10 conv=sync 2>/dev/null | wc -c; exit \${PIPESTATUS[1]}`, { DEVMOVE_IO_ENGINE: engine });
      expect(run('dd')).toMatchObject({ status: 0, stdout: '3\n' });
      expect(run('DEVMOVE')).toMatchObject({ status: 2, stdout: '0\n' });
      const ours = shell('echo x | DEVMOVE bs=3 ibs=10 obs=10 conv=sync', { DEVMOVE_IO_ENGINE: engine });
      expect(ours.stderr).toBe("devmove: conv=sync is supported only as conv=noerror,sync (unreadable blocks become zeros); devmove never pads short reads\nTry 'devmove --help' for more information.\n");
    });
  });

  it.skipIf(!hasScript)('of=/dev/tty (a real terminal, under script(1)): refused as a character device, exit 1, nothing reaches the terminal', () => {
    // Refused when it is opened, as every character device named by if=/of= is
    // (test/integration/hostile-input.test.ts); `> /dev/tty` is refused as a usage error (exit 2, pipes.test.ts).
    const source = write(dir, 'tty.in', 'SECRET-TTY-DATA\n');
    const r = tool('script', ['-qec', `'${process.execPath}' '${CLI}' if='${source}' of=/dev/tty status=none; echo "exit=$?"`, '/dev/null']);
    expect(r.stdout).toMatch(/devmove: of=\/dev\/tty: is a character device; devmove copies block devices, regular files and pipes \(EINVAL from open\)\r?\nexit=1/);
    expect(r.stdout).not.toContain('SECRET-TTY-DATA');
  });
});

describe('no-allocate.sh', () => {
  /** Does devmove finish (exit 0) under `ulimit -v kib`, with this I/O driver (the environment's by default)? */
  const underLimit = (kib: number, args: string[], engine?: string): Run =>
    shell(`ulimit -v ${kib} && DEVMOVE ${args.map((a) => `'${a}'`).join(' ')}`, engine ? { DEVMOVE_IO_ENGINE: engine } : {});

  const found = new Map<string, number>();
  /**
   * A virtual-memory limit (KiB) under which a 2-byte copy runs, per I/O driver (the threads driver's
   * stacks count too). Upstream's get_min_ulimit_v_ searches for the smallest one; Node's own
   * reservations vary by a few hundred MiB from run to run (measured: `ulimit -v 800000` let 1 of 5
   * two-byte copies through, 900000 all 5, 1000000 1 of 5), so from 256 MiB above the smallest that
   * ever worked, the limit grows in 64 MiB steps until three copies in a row pass under it. It stays
   * below that smallest value + 1 GiB, so a 1 GiB buffer never fits under it.
   */
  const limitOfTwoBytes = (engine?: string): number => {
    const known = found.get(engine ?? '');
    if (known !== undefined) return known;
    const source = write(dir, 'alloc.in', '.\n');
    const args = [`if=${source}`, `of=${path.join(dir, 'alloc.out')}`, 'status=none'];
    let low = 100_000;
    let high = 8_000_000;
    expect(underLimit(high, args, engine).status).toBe(0);
    while (high - low > 8_000) {
      const mid = Math.floor((low + high) / 2);
      if (underLimit(mid, args, engine).status === 0) high = mid;
      else low = mid;
    }
    let limit = high + 256 * 1024;
    while (![0, 1, 2].every(() => underLimit(limit, args, engine).status === 0)) limit += 64 * 1024;
    expect(limit - low).toBeLessThan(1024 * 1024 - 64 * 1024);
    found.set(engine ?? '', limit);
    return limit;
  };

  it.skipIf(underAsan)('bs=1G with count=0 allocates no buffer: it runs within the memory of a 2-byte copy', () => {
    const source = write(dir, 'alloc.in', '.\n');
    const out = path.join(dir, 'alloc.out');
    const limit = limitOfTwoBytes();
    for (const operand of ['bs=1G', 'ibs=1G', 'obs=1G']) {
      expect(underLimit(limit, [`if=${source}`, `of=${out}`, operand, 'count=0', 'status=none'])).toMatchObject({ status: 0, stderr: '' });
    }
    // The limit binds: a copy that does need a 1 GiB buffer fails under it.
    const big = path.join(dir, 'alloc-1g.in');
    fs.rmSync(big, { force: true });
    fs.writeFileSync(big, '');
    fs.truncateSync(big, 1024 * MiB);
    expect(underLimit(limit, [`if=${big}`, `of=${out}`, 'bs=1G', 'status=none']).status).not.toBe(0);
    fs.rmSync(big);
  });

  it('a block size beyond the maximum is a usage error (dd: exit 1 when it cannot allocate; devmove refuses before)', () => {
    const source = write(dir, 'alloc.in', '.\n');
    for (const operand of ['bs=9223372036854775806', 'bs=0']) {
      const ours = devmove([`if=${source}`, `of=${path.join(dir, 'alloc.out')}`, operand]);
      expect(ours.status).toBe(2);
      expect(ours.stderr).toMatch(/^devmove: invalid operand 'bs=/);
    }
  });

  // Upstream's "tape": a FIFO another dd writes one block into. dd must read
  // to skip= on it (and opens it read-write to read seek= blocks out of it),
  // so it needs its input buffer for skip= and its output buffer for seek=.
  describe.each(DRIVERS)('a FIFO "tape" (%s driver)', (engine) => {
    it.skipIf(underAsan).each(['bs', 'ibs', 'obs'])('%s=1G skip=1 count=0 from a FIFO: skipped through a small buffer, within the memory of a 2-byte copy', async (size) => {
      const limit = limitOfTwoBytes(engine);
      // skip=1 is one input block: 1 GiB with bs=/ibs=, 512 bytes with obs=.
      const skipped = size === 'obs' ? 512 : 1024 * MiB;
      await withFifo('tape', async (tape) => {
        const writer = shellAsync(`head -c ${skipped} /dev/zero > "$TAPE"`, { TAPE: tape });
        const reader = shellAsync(`ulimit -v ${limit} && DEVMOVE if="$TAPE" ${size}=1G skip=1 count=0 status=noxfer`, { TAPE: tape, DEVMOVE_IO_ENGINE: engine });
        const [w, r] = await Promise.all([writer, reader]);
        expect(w.status).toBe(0);
        expect(r).toMatchObject({ status: 0, stderr: '0+0 records in\n0+0 records out\n' });
      });
    });

    it.each(['bs', 'ibs', 'obs'])('%s=1G seek=1 count=0 onto a FIFO: "cannot seek" at once (exit 1), without waiting for a reader; dd reads the block out of it', async (size) => {
      await withFifo('tape', async (tape) => {
        // dd: opened read-write, so no reader is needed, and seek= reads what the other writer put in.
        const ddWriter = shellAsync('dd count=1 if=/dev/zero of="$TAPE" status=none', { TAPE: tape });
        const dd = gnuDd([`${size}=${size === 'ibs' ? '256M' : '512'}`, 'seek=1', 'count=0', `of=${tape}`, 'status=noxfer']);
        expect(dd).toMatchObject({ status: 0, stderr: '0+0 records in\n0+0 records out\n' });
        expect((await ddWriter).status).toBe(0);
        // devmove: no reader and no writer: a wait for either would never end.
        const ours = shell(`DEVMOVE of="$TAPE" ${size}=1G seek=1 count=0 < /dev/null`, { TAPE: tape, DEVMOVE_IO_ENGINE: engine });
        expect(ours).toMatchObject({ status: 1, stderr: `devmove: of=${tape}: cannot seek on a pipe (seek= needs a seekable target) (ESPIPE from lseek)\n` });
      });
    });
  });
});

// A cut-short write is the engine's business (the write completion's byte count), so once per I/O driver.
describe.each(DRIVERS)('partial-write.sh (%s driver)', (engine) => {
  it('a write cut short by `ulimit -f` is counted as a partial record, and the byte count is what the file holds', () => {
    const source = makeImage(dir, 'zero-2m.in', 2 * MiB, 'zero');
    const out = path.join(dir, 'partial.out');
    const ddOut = path.join(dir, 'partial.dd');
    for (const f of [out, ddOut]) fs.rmSync(f, { force: true });
    // dd is killed by SIGXFSZ unless it is ignored; devmove ignores it itself.
    const dd = shell(`ulimit -S -f 1024 && trap '' XFSZ && dd if="$IN" of="$OUT" bs=768K count=2`, { IN: source, OUT: ddOut });
    expect(dd.status, dd.stderr).toBe(1);
    // Both buffers' writes are in flight at once, and which completes first is the kernel's (or the
    // threads') choice: when the second failed first, the whole first write was once reported as
    // unfinished ('0 bytes copied and flushed', ~1 run in 20). Ten runs give that order a chance.
    for (let run = 0; run < 10; run++) checkPartialWrite(source, out, ddOut, engine);
  });
});

function checkPartialWrite(source: string, out: string, ddOut: string, engine: string): void {
  fs.rmSync(out, { force: true });
  // The source is all hole: --holes=read makes devmove read and write it as dd does (by default
  // nothing would be written, and the file would only be extended at the end).
  const r = shell('ulimit -S -f 1024 && DEVMOVE if="$IN" of="$OUT" bs=768K count=2 --holes=read', { IN: source, OUT: out, DEVMOVE_IO_ENGINE: engine });
  expect(r.status, r.stderr).toBe(1);
  expect(fs.existsSync(out), r.stderr).toBe(true);
  const size = fs.statSync(out).size;
  expect(size).toBe(MiB); // 1024 blocks of 1 KiB, all the limit lets through
  // Upstream (2026) expects '+1 records out'; Debian 12's dd 9.1 still prints '1+0' here (the bug
  // that test was written for), so the records are checked against upstream and the data against dd.
  expect(r.stderr).toMatch(/^1\+1 records out$/m);
  expect(r.stderr).toMatch(new RegExp(`^${size} bytes \\(1\\.0 MB, 1\\.0 MiB\\) copied, `, 'm'));
  expect(r.stderr).toMatch(/^devmove: of=.*: file too large \(EFBIG from write at byte 1048576\); 786432 bytes copied and flushed \(and 262144 more written by the unfinished write\)$/m);
  expect(read(out).equals(read(ddOut))).toBe(true);
}

describe('reblock.sh', () => {
  it('bs= wins over ibs= and obs= wherever they appear; ibs=3 obs=3 counts like dd', () => {
    // Upstream feeds short reads through a FIFO; on a file dd reads full blocks.
    const source = write(dir, 'reblock.in', 'abcd');
    for (const operands of [['bs=3', 'ibs=1', 'obs=1'], ['ibs=3', 'obs=3']]) {
      const { dd, ours, ourOut } = both(dir, [...operands, 'status=noxfer'], source);
      expect(ours).toMatchObject({ status: 0, stderr: dd.stderr });
      expect(ours.stderr).toBe('1+1 records in\n1+1 records out\n');
      expect(read(ourOut).toString()).toBe('abcd');
    }
  });

  describe.each(DRIVERS)('two short reads from a FIFO (%s driver)', (engine) => {
    // Upstream's two expectations hold for dd without iflag=fullblock; devmove
    // fills its blocks from a pipe, so its counts are dd iflag=fullblock's.
    const cases: Array<[operands: string, plain: string, full: string]> = [
      ['ibs=3 obs=3', '0+2 records in\n1+1 records out\n', '1+1 records in\n1+1 records out\n'],
      ['bs=3 ibs=1 obs=1', '0+2 records in\n0+2 records out\n', '1+1 records in\n1+1 records out\n'],
    ];
    it.each(cases)('%s: dd %j, devmove as dd iflag=fullblock', async (operands, plain, full) => {
      const run = (who: string): Promise<Run> => overFifo(`${who} ${operands} if="$FIFO" status=noxfer`, ['ab', 'cd'], { DEVMOVE_IO_ENGINE: engine });
      expect(await run('dd')).toMatchObject({ status: 0, stdout: 'abcd', stderr: plain });
      expect(await run('dd iflag=fullblock')).toMatchObject({ status: 0, stdout: 'abcd', stderr: full });
      expect(await run('DEVMOVE')).toMatchObject({ status: 0, stdout: 'abcd', stderr: full });
    });
  });
});

describe('skip-seek.pl', () => {
  // Upstream reads standard input (`<`); here the same bytes come from if=.
  const cases: Array<[name: string, operands: string[], expected: string, stderr: string]> = [
    ['sk-seek1', ['bs=1', 'skip=1', 'seek=2', 'conv=notrunc', 'count=3'], 'zy123utsrqponmlkji', '3+0 records in\n3+0 records out\n'],
    ['sk-seek2', ['bs=5', 'skip=1', 'seek=1', 'conv=notrunc', 'count=1'], 'zyxwv56789ponmlkji', '1+0 records in\n1+0 records out\n'],
    ['sk-seek3', ['bs=5', 'skip=1', 'seek=1', 'count=1'], 'zyxwv56789', '1+0 records in\n1+0 records out\n'],
    ['sk-seek5', ['bs=1', 'iseek=1', 'oseek=2', 'conv=notrunc', 'count=3'], 'zy123utsrqponmlkji', '3+0 records in\n3+0 records out\n'],
  ];
  it.each(cases)('%s', (_name, operands, expected, stderr) => {
    const source = write(dir, 'sk.in', '0123456789abcdef');
    const { dd, ours, ourOut } = both(dir, [...operands, 'status=noxfer'], source, Buffer.from('zyxwvutsrqponmlkji'));
    expect(dd.stderr).toBe(stderr);
    expect(ours).toMatchObject({ status: 0, stderr });
    expect(read(ourOut).toString()).toBe(expected);
  });

  describe.each(DRIVERS)('on standard input and output (%s driver)', (engine) => {
    it.each(cases)('%s, reading standard input redirected from the file (`<`), as upstream', (_name, operands, expected, stderr) => {
      const source = write(dir, 'sk.in', '0123456789abcdef');
      const out = write(dir, 'sk.out', 'zyxwvutsrqponmlkji');
      const r = shell(`DEVMOVE ${operands.join(' ')} status=noxfer of="$OUT" < "$IN"`, { IN: source, OUT: out, DEVMOVE_IO_ENGINE: engine });
      expect(r).toMatchObject({ status: 0, stdout: '', stderr });
      expect(read(out).toString()).toBe(expected);
    });

    it('sk-seek4: bs=1 skip=1 from a pipe gives "bc\\n", 3+0 records, as dd', () => {
      const run = (who: string): Run => shell(`printf 'abc\\n' | ${who} bs=1 skip=1 status=noxfer`, { DEVMOVE_IO_ENGINE: engine });
      const expected = { status: 0, stdout: 'bc\n', stderr: '3+0 records in\n3+0 records out\n' };
      expect(run('dd')).toMatchObject(expected);
      expect(run('DEVMOVE')).toMatchObject(expected);
    });
  });

  it('block-sync-1: conv=block,sync cbs=10 is refused as a usage error, nothing written', () => {
    const run = (who: string): Run => shell(`printf '01234567\\nabcdefghijkl\\n' | ${who} ibs=10 cbs=10 conv=block,sync status=noxfer`);
    expect(run('dd')).toMatchObject({ status: 0, stdout: '01234567  abcdefghij          ', stderr: '2+1 records in\n0+1 records out\n1 truncated record\n' });
    const ours = run('DEVMOVE');
    expect(ours).toMatchObject({ status: 2, stdout: '' });
    expect(ours.stderr).toMatch(/^devmove: (cbs=|conv=block)[^\n]* not supported by devmove[^\n]*\nTry 'devmove --help' for more information\.\n$/);
  });
});

describe('skip-seek-past-file.sh', () => {
  it('skip= past the end: dd warns "cannot skip to specified offset" and exits 0; devmove refuses (exit 1) and leaves the target alone', () => {
    const source = write(dir, 'past.in', '1234');
    for (const operands of [['bs=1', 'skip=5'], ['bs=3', 'skip=2']]) {
      const { dd, ours, ourOut } = both(dir, [...operands, 'count=0', 'status=noxfer'], source, Buffer.from('keep'));
      expect(dd).toMatchObject({ status: 0, stderr: `dd: ${source}: cannot skip to specified offset\n0+0 records in\n0+0 records out\n` });
      expect(ours.status).toBe(1);
      expect(ours.stderr).toMatch(/^devmove: if=.*: source offset \d+ bytes is past the end of the source \(4 bytes\) \(EINVAL from read\)\n$/);
      expect(read(ourOut).toString()).toBe('keep');
    }
  });

  it('seek= past the end of the target is fine: 0+0 records, the target extended to it', () => {
    const source = write(dir, 'past.in', '1234');
    const { dd, ours, ourOut, ddOut } = both(dir, ['bs=1', 'seek=5', 'count=0', 'status=noxfer'], source, Buffer.from('12'));
    expect(dd).toMatchObject({ status: 0, stderr: '0+0 records in\n0+0 records out\n' });
    expect(ours).toMatchObject({ status: 0, stderr: '0+0 records in\n0+0 records out\n' });
    expect(read(ourOut).equals(read(ddOut))).toBe(true);
    expect(read(ourOut)).toEqual(Buffer.from('12\0\0\0'));
  });

  it('skip= beyond the largest file offset is not a number: dd exits 1, devmove 2 (a usage error)', () => {
    const source = write(dir, 'past.in', '1234');
    for (const skip of ['9223372036854775808', '9223372036854775808x9223372036854775808']) {
      expect(gnuDd([`if=${source}`, 'of=/dev/null', 'bs=1', `skip=${skip}`, 'count=0']).stderr).toMatch(/invalid number/);
      const ours = devmove([`if=${source}`, `of=${path.join(dir, 'past.out')}`, 'bs=1', `skip=${skip}`, 'count=0']);
      expect(ours.status).toBe(2);
      expect(ours.stderr).toMatch(/^devmove: invalid operand 'skip=.*value is too large/);
    }
  });

  it('skip= at the largest offset a file can have: both exit 1', () => {
    const source = write(dir, 'past.in', '1234');
    const skip = String(Number.MAX_SAFE_INTEGER); // devmove's largest offset; dd's is 2^63-1
    expect(gnuDd([`if=${source}`, 'of=/dev/null', 'bs=1', 'skip=9223372036854775807', 'count=0', 'status=none']).status).toBe(1);
    const ours = devmove([`if=${source}`, `of=${path.join(dir, 'past.out')}`, 'bs=1', `skip=${skip}`, 'count=0', 'status=none']);
    expect(ours.status).toBe(1);
    expect(ours.stderr).toMatch(/past the end of the source/);
  });

  describe.each(DRIVERS)('on standard input (%s driver)', (engine) => {
    const skipWarning = "dd: 'standard input': cannot skip to specified offset\n0+0 records in\n0+0 records out\n";

    it.each([['bs=1', 'skip=5', 5], ['bs=3', 'skip=2', 6]] as const)('%s %s past the end of a pipe: dd warns and exits 0; devmove refuses (exit 1), nothing written', (bs, skip, offset) => {
      const run = (who: string): Run => shell(`cat "$IN" | ${who} ${bs} ${skip} count=0 status=noxfer`, { IN: write(dir, 'past.in', '1234'), DEVMOVE_IO_ENGINE: engine });
      expect(run('dd')).toMatchObject({ status: 0, stdout: '', stderr: skipWarning });
      expect(run('DEVMOVE')).toMatchObject({ status: 1, stdout: '', stderr: `devmove: if=-: source offset ${offset} bytes is past the end of the source (4 bytes) (EINVAL from read)\n` });
    });

    it.each([['bs=1', 'skip=4'], ['bs=2', 'skip=2']])('standard input already read into (skip=1 count=0 first), then %s %s: past the end from where the first one stopped', (bs, skip) => {
      const run = (who: string): Run => shell(`(${who} bs=1 skip=1 count=0 2>/dev/null && ${who} ${bs} ${skip} status=noxfer) < "$IN"`, { IN: write(dir, 'past.in', '1234'), DEVMOVE_IO_ENGINE: engine });
      expect(run('dd')).toMatchObject({ status: 0, stderr: skipWarning });
      // The second devmove starts at byte 1, where the first left standard input: 1 + 4 = 5 > 4.
      expect(run('DEVMOVE')).toMatchObject({ status: 1, stdout: '', stderr: 'devmove: if=-: source offset 5 bytes is past the end of the source (4 bytes) (EINVAL from read)\n' });
    });

    it('seek= past the end of standard output redirected to a file: 0+0 records, and it is not cut or grown (dd neither)', () => {
      for (const who of ['dd', 'DEVMOVE']) {
        const out = write(dir, 'past.out', '12');
        const r = shell(`${who} bs=1 seek=5 count=0 status=noxfer < /dev/null 1<>"$OUT"`, { OUT: out, DEVMOVE_IO_ENGINE: engine });
        expect(r, who).toMatchObject({ status: 0, stderr: '0+0 records in\n0+0 records out\n' });
        expect(read(out).toString(), who).toBe('12');
      }
    });
  });
});

describe.skipIf(skipWithoutLoop)('skip-seek-past-dev.sh', () => {
  it('skip= and seek= one byte past the end of a block device: exit 1, the device untouched', () => {
    const device = attachLoop(makeImage(tempDir(), 'past-dev.img', MiB));
    const before = sha256File(device);
    const past = String(MiB + 1);
    const ddSkip = gnuDd([`if=${device}`, 'of=/dev/null', 'bs=1', `skip=${past}`, 'count=0', 'status=noxfer']);
    expect(ddSkip.status).toBe(1);
    const oursSkip = devmove([`if=${device}`, `of=${path.join(dir, 'past-dev.out')}`, 'bs=1', `skip=${past}`, 'count=0', 'status=noxfer']);
    expect(oursSkip.status).toBe(1);
    expect(oursSkip.stderr).toBe(`devmove: if=${device}: source offset ${MiB + 1} bytes is past the end of the source (${MiB} bytes) (EINVAL from read)\n`);

    const source = write(dir, 'past.in', '1234');
    const ddSeek = gnuDd([`if=${source}`, `of=${device}`, 'bs=1', `seek=${past}`, 'count=0', 'status=noxfer']);
    expect(ddSeek.status).toBe(1);
    expect(ddSeek.stderr).toMatch(/cannot seek: Invalid argument/);
    const oursSeek = devmove([`if=${source}`, `of=${device}`, 'bs=1', `seek=${past}`, 'count=0', 'status=noxfer']);
    expect(oursSeek.status).toBe(1);
    expect(oursSeek.stderr).toMatch(new RegExp(`^devmove: of=${device}: target too small: .* \\(ENOSPC from write\\)\\n$`));
    expect(sha256File(device)).toBe(before);
  });
});

describe('sparse.sh', () => {
  it('bs=32K conv=sparse on a 1 MiB hole: the same size, nothing allocated', () => {
    const source = path.join(dir, 'hole.in');
    fs.writeFileSync(source, '');
    fs.truncateSync(source, MiB);
    const { ours, ourOut, ddOut } = both(dir, ['bs=32K', 'conv=sparse', 'status=none'], source);
    expect(ours.status).toBe(0);
    expect(fs.statSync(ourOut).size).toBe(fs.statSync(ddOut).size);
    expect(allocatedKiB(ourOut)).toBe(0);
  });

  it('conv=sparse,notrunc bs=1: NUL bytes leave the target\'s bytes where they are', () => {
    const source = write(dir, 'anb.in', 'a\0\0b');
    const { ours, ourOut, ddOut } = both(dir, ['bs=1', 'conv=sparse,notrunc', 'status=none'], source, Buffer.from('____'));
    expect(ours.status).toBe(0);
    expect(read(ourOut).toString()).toBe('a__b');
    expect(read(ddOut).toString()).toBe('a__b');
  });

  // Which output blocks are zero is the engine's zero check (a pipeline stage): once per I/O driver.
  describe.each(DRIVERS)('zero blocks are output blocks (obs=, %s driver)', (engine) => {
    let source: string;
    beforeAll(() => {
      // 3 MiB: random, with the middle MiB zero.
      source = makeImage(dir, 'mid-zero.in', 3 * MiB, 'random', 'sparse.sh');
      const fd = fs.openSync(source, 'r+');
      fs.writeSync(fd, Buffer.alloc(MiB), 0, MiB, MiB);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
    });

    it('ibs=1M obs=2M conv=sparse: the zero MiB shares a 2 MiB output block with data, so it is written', () => {
      const { dd, ours, ourOut, ddOut } = both(dir, ['ibs=1M', 'obs=2M', 'conv=sparse', 'status=none'], source, undefined, engine);
      expect([dd.status, ours.status]).toEqual([0, 0]);
      tool('sync', [ddOut, ourOut]); // allocation settled before it is compared
      expect(allocatedKiB(ddOut)).toBeGreaterThan(2500);
      expect(allocatedKiB(ourOut)).toBe(allocatedKiB(ddOut));
      expect(read(ourOut).equals(read(source))).toBe(true);
    });

    it('ibs=2M obs=1M conv=sparse,notrunc: the zero MiB is a whole output block, so it becomes a hole', () => {
      const preallocated = (out: string): void => {
        fs.writeFileSync(out, '');
        fs.truncateSync(out, 3 * MiB);
      };
      const ddOut = path.join(dir, 'holes.dd');
      const ourOut = path.join(dir, 'holes.out');
      preallocated(ddOut);
      preallocated(ourOut);
      const operands = ['ibs=2M', 'obs=1M', 'conv=sparse,notrunc', 'status=none'];
      expect(gnuDd([`if=${source}`, `of=${ddOut}`, ...operands]).status).toBe(0);
      const ours = devmove([`if=${source}`, `of=${ourOut}`, ...operands], undefined, { DEVMOVE_IO_ENGINE: engine });
      expect(ours.status, ours.stderr).toBe(0);
      tool('sync', [ddOut, ourOut]);
      expect(allocatedKiB(ddOut)).toBeLessThan(2500);
      expect(allocatedKiB(ourOut)).toBe(allocatedKiB(ddOut));
      expect(read(ourOut).equals(read(source))).toBe(true);
    });

    it('status=noxfer prints the records lines and nothing else, as dd', () => {
      const { dd, ours } = both(dir, ['ibs=2M', 'obs=1M', 'conv=sparse', 'status=noxfer'], source, undefined, engine);
      expect(dd.stderr).toBe('1+1 records in\n3+0 records out\n');
      expect(ours).toMatchObject({ status: 0, stderr: dd.stderr });
    });
  });

  it('conv=sparse with oflag=append (dd writes only the data, "ab"): oflag=append is refused as a usage error', () => {
    const source = write(dir, 'anb.in', 'a\0\0b');
    const out = write(dir, 'append.out', '');
    expect(shell('dd if="$IN" bs=1 conv=sparse oflag=append status=none > "$OUT"', { IN: source, OUT: out })).toMatchObject({ status: 0 });
    expect(read(out).toString()).toBe('ab');
    fs.writeFileSync(out, '');
    const ours = shell('DEVMOVE if="$IN" bs=1 conv=sparse oflag=append > "$OUT"', { IN: source, OUT: out });
    expect(ours).toMatchObject({ status: 2, stderr: "devmove: oflag=append is not supported by devmove yet\nTry 'devmove --help' for more information.\n" });
    expect(read(out).length).toBe(0);
  });

  it.each(DRIVERS)('conv=sparse onto a pipe writes the zeros, as dd falls back to writing when it cannot seek (%s driver)', (engine) => {
    const source = write(dir, 'anb.in', 'a\0\0b');
    for (const who of ['dd', 'DEVMOVE']) {
      const out = path.join(dir, `sparse-pipe-${who}.out`);
      const r = shell(`${who} if="$IN" bs=1 conv=sparse status=noxfer | cat > "$OUT"`, { IN: source, OUT: out, DEVMOVE_IO_ENGINE: engine });
      expect(r, who).toMatchObject({ status: 0, stderr: '4+0 records in\n4+0 records out\n' });
      expect(read(out).equals(read(source)), who).toBe(true);
    }
  });
});

describe('stats.sh', () => {
  it('the transfer line is dd\'s, checked against lines GNU dd printed', () => {
    for (const size of [0, 1, 999, 1000, 1023, 1024, 1500, 10_000, MiB, 3_000_000]) {
      const source = makeImage(dir, 'stats.in', size);
      const { dd, ours } = both(dir, [], source);
      const ddLine = dd.stderr.trimEnd().split('\n').at(-1) ?? '';
      const m = /^(\d+) bytes? .*copied, (\S+) s, /.exec(ddLine);
      expect(m, ddLine).not.toBeNull();
      // Formatted from dd's own byte count and (printed) seconds, devmove's formatter gives dd's line.
      expect(transferLine(Number(m?.[1]), Number(m?.[2]))).toBe(ddLine);
      const ourLine = ours.stderr.trimEnd().split('\n').at(-1) ?? '';
      expect(ourLine.split(' copied, ')[0]).toBe(ddLine.split(' copied, ')[0]);
      expect(ours.stderr.split('\n').slice(0, 2)).toEqual(dd.stderr.split('\n').slice(0, 2));
    }
  });

  it('status=progress: from the first second, whole seconds, one line over the last; rates under 1 kB/s as dd prints them; the final time not smaller', () => {
    const source = makeImage(dir, 'slow.in', 2000);
    const r = devmove([`if=${source}`, `of=${path.join(dir, 'slow.out')}`, 'bs=100', '--rate=600', 'status=progress']);
    expect(r.status).toBe(0);
    const [progress, ...rest] = r.stderr.split('\n');
    const lines = progress.split('\r');
    expect(lines.shift()).toBe(''); // each line starts with a carriage return
    expect(lines.length).toBeGreaterThanOrEqual(2);
    let lastSeconds = 0;
    for (const line of lines) {
      const m = /^(\d+) bytes? (?:\([^)]*\) )?copied, (\d+) s, (\d+\.\d) kB\/s *$/.exec(line);
      expect(m, line).not.toBeNull();
      const seconds = Number(m?.[2]);
      expect(seconds).toBeGreaterThan(lastSeconds); // never in the first second, at most one a second
      lastSeconds = seconds;
      expect(Number(m?.[3])).toBeLessThan(1); // 600 B/s: '0.6 kB/s', not '600 B/s'
    }
    expect(rest.slice(0, 2)).toEqual(['20+0 records in', '20+0 records out']);
    const final = /^2000 bytes \(2\.0 kB, 2\.0 KiB\) copied, (\S+) s, (.*)$/.exec(rest[2]);
    expect(final, rest[2]).not.toBeNull();
    // The progress line rounds to whole seconds (%.0f, as dd): the final time is at least that less a half.
    expect(Number(final?.[1])).toBeGreaterThanOrEqual(lastSeconds - 0.5);
    expect(final?.[2]).toBe(formatRate(2000, Number(final?.[1])));
  });

  it('"1 byte copied", singular, as dd', () => {
    const source = write(dir, 'one.in', 'x');
    const { dd, ours } = both(dir, [], source);
    expect(dd.stderr).toMatch(/\n1 byte copied, /);
    expect(ours.stderr).toMatch(/^0\+1 records in\n0\+1 records out\n1 byte copied, \S+ s, \d+(\.\d)? [kMG]B\/s\n$/);
  });

  it('a storm of SIGUSR1: statistics each time, the copy goes on, and the final line counts all 250,000,000 bytes', async () => {
    // Upstream starts signalling at once; what devmove does with a SIGUSR1
    // during Node's start-up is README's Security notes (and their test): here
    // the storm starts with the first progress line and lasts until the exit.
    const shm = tempDir();
    const source = path.join(shm, 'zero-250m.in');
    fs.writeFileSync(source, '');
    fs.truncateSync(source, 250_000_000);
    // All hole: --holes=read reads it as dd does, so the rate cap makes the copy last (a hole that is
    // never read costs no I/O and is not paced).
    const child = spawn(process.execPath, [CLI, `if=${source}`, `of=${path.join(shm, 'zero.out')}`, '--rate=100M', 'status=progress', '--holes=read'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let storm: NodeJS.Timeout | undefined;
    let signals = 0;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      storm ??= setInterval(() => {
        if (child.exitCode === null && child.signalCode === null && child.kill('SIGUSR1')) signals++;
      }, 10);
    });
    const exit = await new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('close', (status, signal) => resolve({ status, signal })),
    );
    clearInterval(storm);
    fs.rmSync(shm, { recursive: true, force: true });
    // Signalled up to its very end (upstream: until `kill` fails), it still exits 0.
    expect(exit).toEqual({ status: 0, signal: null });
    expect(signals).toBeGreaterThan(10);
    expect(stderr.trimEnd().split('\n').at(-1)).toMatch(/^250000000 bytes \(250 MB, 238 MiB\) copied, /);
    // Every statistics block is whole: records in, records out, a transfer line.
    const blocks = stderr.match(/\d+\+\d records in\n\d+\+\d records out\n\d+ bytes[^\n]* copied, [^\n]*\n/g) ?? [];
    expect(blocks.length).toBeGreaterThan(1);
  });

  it.each(DRIVERS)('writing to a FIFO while signalled, from the wait for its reader to the exit: every byte reaches the reader (%s driver)', async (engine) => {
    // Upstream's dd reads /dev/zero (a character device: not devmove's); a
    // 250,000,000-byte hole in memory is the same zeros.
    const shm = tempDir();
    const source = path.join(shm, 'zero-250m.in');
    fs.writeFileSync(source, '');
    fs.truncateSync(source, 250_000_000);
    try {
      await withFifo('stats.fifo', async (fifo) => {
        const child = spawn(process.execPath, [CLI, `if=${source}`, `of=${fifo}`], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DEVMOVE_IO_ENGINE: engine } });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const exit = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (status, signal) => resolve({ status, signal })));
        const blocks = (): string[] => stderr.match(/\d+\+\d records in\n\d+\+\d records out\n\d+ bytes?[^\n]* copied, [^\n]*\n/g) ?? [];
        // Past Node's start-up once the addon is mapped: devmove's SIGUSR1
        // handler is installed before it (README, Security notes).
        await until(() => child.exitCode !== null || fs.readFileSync(`/proc/${child.pid}/maps`, 'utf8').includes('devmove.node'));
        let signals = 0;
        const storm = setInterval(() => {
          if (child.exitCode === null && child.signalCode === null && child.kill('SIGUSR1')) signals++;
        }, 10);
        try {
          // Statistics while no reader has come yet: the open is still waiting.
          await until(() => child.exitCode !== null || blocks().length >= 3);
          expect(blocks()[0]).toMatch(/^0\+0 records in\n0\+0 records out\n0 bytes copied, /);
          const reader = shellAsync('wc -c < "$FIFO"', { FIFO: fifo });
          expect((await reader).stdout.trim()).toBe('250000000');
          expect(await exit).toEqual({ status: 0, signal: null });
        } finally {
          clearInterval(storm);
          child.kill('SIGKILL');
        }
        expect(signals).toBeGreaterThan(3);
        expect(stderr.trimEnd().split('\n').at(-1)).toMatch(/^250000000 bytes \(250 MB, 238 MiB\) copied, /);
        expect(stderr.replace(/\d+\+\d records in\n\d+\+\d records out\n\d+ bytes?[^\n]* copied, [^\n]*\n/g, '')).toBe('');
      });
    } finally {
      fs.rmSync(shm, { recursive: true, force: true });
    }
  });
});

describe('stderr.sh', () => {
  it('--help with standard error closed: exit 0 (nothing goes to it)', () => {
    expect(shell('DEVMOVE --help >/dev/null 2>&-')).toMatchObject({ status: 0 });
    expect(shell('dd --help >/dev/null 2>&-').status).toBe(0);
  });

  it('a copy with standard error closed: exit 1, as dd (the statistics are lost); status=none: exit 0', () => {
    const source = write(dir, 'stderr.in', 'data\n');
    const vars = { IN: source, OUT: path.join(dir, 'stderr.out'), DDOUT: path.join(dir, 'stderr.dd') };
    expect(shell('dd if="$IN" of="$DDOUT" 2>&-', vars).status).toBe(1);
    expect(shell('DEVMOVE if="$IN" of="$OUT" 2>&-', vars).status).toBe(1);
    expect(read(vars.OUT).toString()).toBe('data\n');
    expect(shell('dd if="$IN" of="$DDOUT" status=none 2>&-', vars).status).toBe(0);
    expect(shell('DEVMOVE if="$IN" of="$OUT" status=none 2>&-', vars).status).toBe(0);
  });

  it("standard output and error on a parent's read-write /dev/null (Python's DEVNULL, Node's stdio 'ignore') are not closed: exit 0", () => {
    const source = write(dir, 'stderr.in', 'data\n');
    const out = path.join(dir, 'stderr.out');
    const r = shell('DEVMOVE if="$IN" of="$OUT" 1<>/dev/null 2<>/dev/null', { IN: source, OUT: out });
    expect(r.status).toBe(0);
    const child = spawnSync(LAUNCHER, [`if=${source}`, `of=${out}`], { stdio: 'ignore', env: { ...process.env, DEVMOVE_NODE: process.execPath } });
    expect(child.status).toBe(0);
  });

  it('standard error on /dev/full: exit 1, as dd', () => {
    const source = write(dir, 'stderr.in', 'data\n');
    const vars = { IN: source, OUT: path.join(dir, 'stderr.out'), DDOUT: path.join(dir, 'stderr.dd') };
    expect(shell('dd if="$IN" of="$DDOUT" 2>/dev/full', vars).status).toBe(1);
    // The only visible trace is the exit status: no crash on the way (a crash also exits 1, so --json shows it).
    const r = shell('DEVMOVE if="$IN" of="$OUT" --hash=sha256 2>/dev/full', vars);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^SHA256 \(.*\) = [0-9a-f]{64}\n$/);
  });

  it('--help and --version on /dev/full: exit 1 and one line on standard error, no stack trace', () => {
    for (const option of ['--help', '--version']) {
      expect(shell(`dd ${option} >/dev/full`).status).toBe(1);
      const r = shell(`DEVMOVE ${option} >/dev/full`);
      expect(r).toMatchObject({ status: 1, stderr: 'devmove: write error on standard output: no space left on device (ENOSPC)\n' });
    }
  });
});

describe.skipIf(!hasStrace)('fail-ftruncate-fstat.sh', () => {
  it('ftruncate and fstat failing on the target (strace fault injection): exit 1, the target unchanged', () => {
    // dd 9.1 to 9.9 went on copying here; upstream now expects exit 1 and the file as it was.
    const old = 'y'.repeat(2048);
    const out = write(dir, 'ftruncate.out', old);
    const source = makeImage(dir, 'ftruncate.in', 512, 'zero');
    const r = tool('strace', ['-f', '--quiet=all', '-o', '/dev/null', '-e', 'inject=ftruncate:error=EPERM', '-e', 'inject=fstat:error=EPERM', '-P', out, process.execPath, CLI, `if=${source}`, `of=${out}`, 'count=1', 'seek=1', 'status=none']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^devmove: of=${out}: operation not permitted \\(EPERM from (fstat|ftruncate)\\)\\n$`));
    expect(read(out).toString()).toBe(old);
  });
});

describe('nocache.sh', () => {
  it('iflag=nocache oflag=nocache: accepted, the copy made (devmove bypasses the cache anyway); count=0 does nothing', () => {
    const source = makeImage(dir, 'nocache.in', 100 * 512);
    const { ours, ourOut } = both(dir, ['iflag=nocache', 'oflag=nocache', 'status=none'], source);
    expect(ours).toMatchObject({ status: 0, stderr: '' });
    expect(read(ourOut).equals(read(source))).toBe(true);
    expect(devmove([`if=${source}`, `of=${ourOut}`, 'iflag=nocache', 'count=0', 'conv=notrunc', 'status=none'])).toMatchObject({ status: 0, stderr: '' });
    expect(read(ourOut).equals(read(source))).toBe(true);
  });

  it('iflag=nocache,direct: refused (dd: exit 1, devmove: 2, a usage error)', () => {
    const source = makeImage(dir, 'nocache.in', 512);
    expect(gnuDd([`if=${source}`, 'iflag=nocache,direct', 'of=/dev/null']).status).toBe(1);
    const ours = devmove([`if=${source}`, `of=${path.join(dir, 'nocache.out')}`, 'iflag=nocache,direct']);
    expect(ours.status).toBe(2);
    expect(ours.stderr).toMatch(/^devmove: iflag=direct and iflag=nocache cannot be combined/);
  });

  it.each(DRIVERS)('iflag=nocache and oflag=nocache on pipes: dd exits 1 (posix_fadvise on a pipe fails), devmove copies (nothing to drop, on purpose) (%s driver)', (engine) => {
    const vars = { DEVMOVE_IO_ENGINE: engine };
    expect(shell('dd count=0 status=none | dd iflag=nocache count=0 status=none', vars)).toMatchObject({ status: 1, stderr: "dd: failed to discard cache for: 'standard input': Illegal seek\n" });
    expect(shell('dd count=0 status=none | DEVMOVE iflag=nocache count=0 status=none', vars)).toMatchObject({ status: 0, stdout: '', stderr: '' });
    const r = shell('printf data | DEVMOVE iflag=nocache oflag=nocache status=noxfer | cat', vars);
    expect(r).toMatchObject({ status: 0, stdout: 'data', stderr: '0+1 records in\n0+1 records out\n' });
  });

  // nocache_eof.sh and nocache_fail.sh check dd's posix_fadvise calls (strace);
  // devmove never makes them: it reads and writes with O_DIRECT, past the page cache.
});

describe('ascii.sh, conv-case.sh, unblock-sync.sh, unblock.pl (conversions)', () => {
  it.each([['conv=ascii', 'cbs=4'], ['conv=lcase'], ['conv=ucase'], ['conv=unblock,sync', 'cbs=4']])('%s is refused in one line', (...operands) => {
    const source = write(dir, 'conv.in', 'abc\n');
    const ours = devmove([`if=${source}`, `of=${path.join(dir, 'conv.out')}`, ...operands]);
    expect(ours.status).toBe(2);
    expect(ours.stderr).toMatch(/^devmove: (conv=\w+ is not supported by devmove yet|cbs= is not supported by devmove)/);
    expect(ours.stderr.split('\n')).toHaveLength(3);
  });
});

describe.each(DRIVERS)('not-rewound.sh, skip-seek2.sh: processes sharing one standard input and output (%s driver)', (engine) => {
  // Standard input and output redirected from and to files: each process goes
  // on where the last one left the shared descriptors, as dd does.
  const cases: Array<[script: string, input: string, expected: string]> = [
    ['X skip=1 count=1 bs=1; X skip=1 bs=1', 'abcde\n', 'bde\n'],
    ['X bs=1 skip=3 count=0 && X bs=5', 'LA:3456789abcdef\n', '3456789abcdef\n'],
    ['X bs=1 skip=3 count=0 && X bs=5 count=2', 'LA:3456789abcdef\n', '3456789abc'],
  ];
  it.each(cases)('(%s) < in > out', (script, input, expected) => {
    const source = write(dir, 'shared.in', input);
    for (const who of ['dd', 'DEVMOVE']) {
      const out = path.join(dir, `shared-${who}.out`);
      const r = shell(`(${script.replaceAll('X', `${who} status=none`)}) < "$IN" > "$OUT"`, { IN: source, OUT: out, DEVMOVE_IO_ENGINE: engine });
      expect(r, who).toMatchObject({ status: 0, stderr: '' });
      expect(read(out).toString(), who).toBe(expected);
    }
  });
});

describe('conv=noerror (src/dd.c; no upstream script)', () => {
  it('healthy 10,000-byte file with conv=noerror,sync: dd pads the short block to 10,240; devmove copies 10,000 (on purpose)', () => {
    const source = makeImage(dir, 'healthy.in', 10_000);
    const { dd, ours, ddOut, ourOut } = both(dir, ['conv=noerror,sync', 'status=noxfer'], source);
    expect(dd.stderr).toBe('19+1 records in\n20+0 records out\n');
    expect(fs.statSync(ddOut).size).toBe(10_240);
    expect(ours).toMatchObject({ status: 0, stderr: '19+1 records in\n19+1 records out\n' });
    expect(read(ourOut).equals(read(source))).toBe(true);
  });

  it.skipIf(skipWithoutFuse || skipWithoutLoop)('unreadable blocks: dd exits 0, devmove 1 (on purpose); the same bytes on both targets', async () => {
    const bad: Array<[number, number]> = [[MiB + 3 * 512, 1024], [3 * MiB, 4096]];
    const dev = await FaultyDevice.create({ sizeBytes: 4 * MiB, readErrors: bad, seed: 'dd-noerror' });
    const { dd, ours, ddOut, ourOut } = both(dir, ['bs=512', 'conv=noerror,sync', 'iflag=direct', 'status=none'], dev.device);
    expect(dd.status).toBe(0);
    expect(dd.stderr).toBe('');
    expect(ours).toMatchObject({ status: 1, stderr: '' });
    // Each against the truth first (the image with its bad ranges zeroed), so a failure says whose bytes are wrong.
    const expected = read(dev.imagePath);
    for (const [offset, length] of bad) expected.fill(0, offset, offset + length);
    const digest = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
    const firstDifference = (b: Buffer): number => b.findIndex((byte, i) => byte !== expected[i]);
    expect(firstDifference(read(ourOut)), 'devmove: first byte that differs from the truth').toBe(-1);
    expect(firstDifference(read(ddOut)), 'GNU dd: first byte that differs from the truth').toBe(-1);
    expect(digest(read(ourOut))).toBe(digest(expected));
    expect(sha256File(ourOut)).toBe(sha256File(ddOut));
    const loud = devmove([`if=${dev.device}`, `of=${ourOut}`, 'conv=noerror', 'status=noxfer']);
    expect(loud.status).toBe(1);
    expect(loud.stderr).toMatch(/\ndevmove: if=.*: 5120 unreadable bytes zero-filled on the target, at 1050112\+1024, 3145728\+4096\n$/);
    await dev.destroy();
  });
});

describe('operand matrix (seeded; devmove and GNU dd on the same operands)', () => {
  const seed = Number(process.env.DEVMOVE_MATRIX_SEED ?? Date.now() % 1_000_000);
  // A small LCG: the same seed gives the same cases on any machine.
  let state = seed;
  const next = (n: number): number => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % n;
  };
  const pick = <T>(list: readonly T[]): T => list[next(list.length)];

  const cases: Array<[label: string, operands: string[]]> = [];
  for (let i = 0; i < 40; i++) {
    const operands: string[] = [];
    const bs = pick([undefined, '1', '7', '512', '4096', '64K', '1M', '3x1000']);
    if (bs !== undefined) operands.push(`bs=${bs}`);
    else {
      if (next(2)) operands.push(`ibs=${pick(['1', '100', '4096', '1M'])}`);
      if (next(2)) operands.push(`obs=${pick(['3', '512', '8192', '1M'])}`);
    }
    if (next(2)) operands.push(`skip=${pick(['0', '1', '3', '17'])}`);
    if (next(2)) operands.push(`seek=${pick(['0', '1', '2', '9'])}`);
    if (next(2)) operands.push(`count=${pick(['0', '1', '5', '40', '100B'])}`);
    if (next(3) === 0) operands.push(`iflag=${pick(['skip_bytes', 'count_bytes', 'skip_bytes,count_bytes'])}`);
    if (next(3) === 0) operands.push('oflag=seek_bytes');
    const conv = [next(3) === 0 ? 'notrunc' : '', next(4) === 0 ? 'sparse' : ''].filter(Boolean);
    if (conv.length) operands.push(`conv=${conv.join(',')}`);
    // dd's conv=sparse looks at obs= blocks (512 bytes by default), devmove's at
    // its I/O size when neither bs= nor obs= is given (README): say obs=.
    if (conv.includes('sparse') && !operands.some((o) => /^(bs|obs)=/.test(o))) operands.push('obs=4096');
    cases.push([operands.join(' ') || '(no operands)', operands]);
  }

  let source: string;
  beforeAll(() => {
    console.log(`dd operand matrix seed: ${seed} (DEVMOVE_MATRIX_SEED=${seed} repeats it)`);
    // 200 KiB + 77: random, with runs of zeros for conv=sparse.
    source = makeImage(dir, 'matrix.in', 200 * KiB + 77, 'random', `matrix-${seed}`);
    const fd = fs.openSync(source, 'r+');
    for (const [offset, length] of [[4096, 8192], [65_536, 70_000], [150_000, 100]]) fs.writeSync(fd, Buffer.alloc(length), 0, length, offset);
    fs.closeSync(fd);
  });

  it.each(cases)('%s', (_label, operands) => {
    const { dd, ours, ddOut, ourOut } = both(dir, [...operands, 'status=noxfer'], source, Buffer.alloc(100 * KiB + 3, 0xa5));
    const past = /cannot skip to specified offset/.test(dd.stderr);
    if (past) {
      // skip= past the end: devmove refuses on purpose (see misc.sh).
      expect(ours.status).toBe(1);
      return;
    }
    expect({ status: ours.status, stderr: ours.stderr }).toEqual({ status: dd.status, stderr: asDevmove(dd.stderr) });
    expect(read(ourOut).equals(read(ddOut))).toBe(true);
  });
});
