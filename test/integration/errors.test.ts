// Each failure is a clear, fs-style error, and nothing is written to the
// target beyond what the error reports.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { copy, CopyAbortError, DevmoveError } from '../../src/index';
import { attachLoop, detachAll, makeImage, sha256Range, skipWithoutLoop, tempDir } from '../helpers/devices';

const MiB = 1024 * 1024;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

describe.skipIf(skipWithoutLoop)('copy() errors on real devices', () => {
  let dir: string;
  let source: string;
  let target: string;
  let targetHash: string;

  beforeAll(() => {
    dir = tempDir();
    source = attachLoop(makeImage(dir, 'source.img', 8 * MiB));
    target = attachLoop(makeImage(dir, 'target.img', 8 * MiB, { pattern: 0x5a }));
    targetHash = sha256Range(target, 0, 8 * MiB);
  });
  afterAll(detachAll);

  async function failure(promise: Promise<unknown>): Promise<DevmoveError> {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DevmoveError);
    return error as DevmoveError;
  }

  it('missing source: ENOENT from open, naming the path; the target is not created', async () => {
    const missingTarget = path.join(dir, 'never-created.img');
    const error = await failure(copy({ source: path.join(dir, 'nope.img'), target: missingTarget }).promise);
    expect(error).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'open', path: path.join(dir, 'nope.img'), bytesCopied: 0 });
    expect(error.message).toBe(`ENOENT: no such file or directory, open '${path.join(dir, 'nope.img')}'`);
    expect(fs.existsSync(missingTarget)).toBe(false);
  });

  it('a directory as source: EISDIR', async () => {
    const error = await failure(copy({ source: dir, target }).promise);
    expect(error).toMatchObject({ code: 'EISDIR', path: dir });
    expect(error.detail).toMatch(/is a directory; devmove copies block devices, regular files and pipes/);
  });

  it('a character device as target: refused before any write', async () => {
    const error = await failure(copy({ source, target: '/dev/null' }).promise);
    expect(error).toMatchObject({ code: 'EINVAL', path: '/dev/null' });
    expect(error.detail).toMatch(/character device/);
  });

  it('a mistyped device name is not created as a file in /dev', async () => {
    const error = await failure(copy({ source, target: '/dev/devmove-no-such-disk' }).promise);
    expect(error).toMatchObject({ code: 'ENOENT', path: '/dev/devmove-no-such-disk' });
    expect(fs.existsSync('/dev/devmove-no-such-disk')).toBe(false);
  });

  it('read-only target device: refused before open with "read-only" in the message, target unchanged', async () => {
    const readOnly = attachLoop(makeImage(dir, 'ro.img', 8 * MiB, { pattern: 0x11 }), { readOnly: true });
    const before = sha256Range(readOnly, 0, 8 * MiB);
    const error = await failure(copy({ source, target: readOnly }).promise);
    expect(error.code).toBe('EROFS');
    // devmove refuses it itself (no system call failed), before anything is opened for writing.
    expect(error).toMatchObject({ operation: 'copy', path: readOnly });
    expect(error.syscall).toBeUndefined();
    expect(error.detail).toMatch(/^the device is read-only/);
    expect(sha256Range(readOnly, 0, 8 * MiB)).toBe(before);
  });

  it('target too small: ENOSPC before the first write, with both sizes in the message', async () => {
    const small = attachLoop(makeImage(dir, 'small.img', 4 * MiB, { pattern: 0x22 }));
    const before = sha256Range(small, 0, 4 * MiB);
    const error = await failure(copy({ source, target: small }).promise);
    expect(error).toMatchObject({ code: 'ENOSPC', syscall: 'write', path: small, bytesCopied: 0 });
    expect(error.detail).toBe(`target too small: the copy needs ${8 * MiB} bytes (offset 0 + length ${8 * MiB}) but the device has ${4 * MiB} bytes`);
    expect(sha256Range(small, 0, 4 * MiB)).toBe(before);
    // The same with a target offset that pushes the end past the device.
    const error2 = await failure(copy({ source, target, length: MiB, targetOffset: 7.5 * MiB }).promise);
    expect(error2.code).toBe('ENOSPC');
    expect(sha256Range(target, 0, 8 * MiB)).toBe(targetHash);
  });

  it('block size not a multiple of the logical block size under required O_DIRECT: EINVAL, nothing written', async () => {
    const fourK = attachLoop(makeImage(dir, '4k.img', 8 * MiB, { pattern: 0x33 }), { sectorSize: 4096 });
    const before = sha256Range(fourK, 0, 8 * MiB);
    const error = await failure(copy({ source, target: fourK, blockSize: 2048, direct: 'always' }).promise);
    expect(error).toMatchObject({ code: 'EINVAL', path: fourK });
    expect(error.detail).toBe('direct I/O needs the block size (2048) to be a multiple of the logical block size (4096)');
    expect(sha256Range(fourK, 0, 8 * MiB)).toBe(before);

    const error2 = await failure(copy({ source, target, blockSize: 1000, direct: { source: 'always' } }).promise);
    expect(error2.detail).toMatch(/block size \(1000\) to be a multiple of the logical block size \(512\)/);
    const error3 = await failure(copy({ source, target, sourceOffset: 100, direct: 'always' }).promise);
    expect(error3.detail).toMatch(/source offset \(100\)/);
    expect(sha256Range(target, 0, 8 * MiB)).toBe(targetHash);
  });

  it('the same block size works without required O_DIRECT, through the page cache on that side', async () => {
    const fourK = attachLoop(makeImage(dir, '4k-b.img', 8 * MiB, 'zero'), { sectorSize: 4096 });
    const result = await copy({ source, target: fourK, blockSize: 2048, length: MiB });
    expect(result.target.logicalBlockBytes).toBe(4096);
    expect(sha256Range(fourK, 0, MiB)).toBe(sha256Range(source, 0, MiB));
  });

  it('the same image file as source and target: overlapping ranges and destructive truncation are refused', async () => {
    const file = makeImage(dir, 'self.img', 4 * MiB);
    const before = sha256Range(file, 0, 4 * MiB);
    const overlap = await failure(copy({ source: file, target: file, length: MiB, targetOffset: MiB / 2 }).promise);
    expect(overlap.detail).toBe(
      `target is the same file as the source ${file}, and the byte ranges overlap (source bytes 0–1048576, target bytes 524288–1572864 of the same storage)`,
    );
    const cut = await failure(copy({ source: file, target: path.join(dir, '.', 'self.img'), sourceOffset: 2 * MiB, length: MiB, truncateTarget: true }).promise);
    expect(cut.detail).toMatch(/truncating it at byte 0 would destroy source data/);
    expect(sha256Range(file, 0, 4 * MiB)).toBe(before);
    // Disjoint ranges of one file are fine.
    const ok = await copy({ source: file, target: file, length: MiB, targetOffset: 2 * MiB });
    expect(ok.bytesCopied).toBe(MiB);
    expect(sha256Range(file, 2 * MiB, MiB)).toBe(sha256Range(file, 0, MiB));
  });

  it('source offset past the end: EINVAL naming the source size', async () => {
    const error = await failure(copy({ source, target, sourceOffset: 9 * MiB }).promise);
    expect(error.detail).toBe(`source offset ${9 * MiB} bytes is past the end of the source (${8 * MiB} bytes)`);
    expect(sha256Range(target, 0, 8 * MiB)).toBe(targetHash);
  });

  it('a busy (exclusively claimed) target device: EBUSY', async () => {
    // A second exclusive open while a copy holds the device: dm/md/mount behave the same way.
    const busy = attachLoop(makeImage(dir, 'busy.img', 64 * MiB, 'zero'));
    const bigSource = attachLoop(makeImage(dir, 'big.img', 64 * MiB));
    // Slow enough to still hold the device after the second copy's bounded retry (3 s).
    const first = copy({ source: bigSource, target: busy, blockSize: 4096, queueDepth: 1, rate: '2M' });
    await new Promise<void>((resolve) => first.once('progress', () => resolve()));
    // Held, not finished: the second open retries EBUSY for 3 s (a crashed
    // process's claim is released late) and must still find it busy.
    first.pause();
    const error = await failure(copy({ source, target: busy }).promise);
    expect(error).toMatchObject({ code: 'EBUSY', syscall: 'open', path: busy });
    expect(error.detail).toMatch(/mounted, or in use by LVM\/md\/dm or another exclusive opener \(still after 3000 ms\); open in node \(pid \d+, this process\)$/);
    first.cancel();
    await expect(first).rejects.toBeInstanceOf(CopyAbortError);
  });

  it.skipIf(spawnSync('setpriv', ['--version']).status !== 0)('an unreadable source for an unprivileged user: EACCES from the CLI, exit 1, one line', () => {
    const secretDir = tempDir('/var/tmp');
    fs.chmodSync(secretDir, 0o755);
    const secret = makeImage(secretDir, 'secret.img', MiB);
    fs.chmodSync(secret, 0o600);
    const out = path.join(secretDir, 'out.img');
    const run = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, `if=${secret}`, `of=${out}`], {
      encoding: 'utf8',
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(`devmove: if=${secret}: permission denied (EACCES from open)\n`);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('rejects bad options synchronously with TypeError/RangeError naming the option', () => {
    expect(() => copy({ source, target, blockSize: '12Q' })).toThrow(RangeError);
    expect(() => copy({ source, target, blockSize: '12Q' })).toThrow(/options\.blockSize/);
    expect(() => copy({ source, target, queueDepth: 0 })).toThrow(/options\.queueDepth must be an integer from 1 to 1024 \(got 0\)/);
    expect(() => copy({ source, target, queueDepth: 1.5 })).toThrow(RangeError);
    expect(() => copy({ source: 42 as unknown as string, target })).toThrow(TypeError);
    expect(() => copy({ source, target, durability: 'maybe' as 'none' })).toThrow(/options\.durability must be one of/);
    expect(() => copy({ source, target, length: 1, maxLength: 2 })).toThrow(/exclude each other/);
    expect(() => copy({ source, target, queueDepth: 1024, blockSize: '4M' })).toThrow(/within 1 GiB/);
    expect(() => copy({ source, target, direct: 'sometimes' as 'auto' })).toThrow(/'auto', 'always' or 'never'/);
    expect(() => copy({ source, target, bogus: 1 } as never)).toThrow(/options\.bogus is not a copy\(\) option/);
    expect(() => copy({ source, target, signal: {} as AbortSignal })).toThrow(/AbortSignal/);
    expect(() => copy({ source, target, sourceOffset: -1 })).toThrow(RangeError);
  });

  it('io_uring setup failures are explained (seccomp / sysctl / memlock)', async () => {
    const { loadNative } = await import('../../src/addon/binding');
    const native = loadNative();
    expect(native.explainIoUringSetupFailure(38)).toMatch(/seccomp|Linux >= 5\.6/); // ENOSYS
    expect(native.explainIoUringSetupFailure(12)).toMatch(/RLIMIT_MEMLOCK/); // ENOMEM
    expect(native.explainIoUringSetupFailure(1)).toMatch(/io_uring_disabled|seccomp/); // EPERM
  });

  const knob = '/proc/sys/kernel/io_uring_disabled';
  const noKnobOrSetpriv = !fs.existsSync(knob) || spawnSync('setpriv', ['--version']).status !== 0;
  it.skipIf(noKnobOrSetpriv)('io_uring forbidden (kernel.io_uring_disabled=1, no CAP_SYS_ADMIN): auto falls back to threads and says why; --io-engine=io_uring fails with the reason', () => {
    const target = path.join(dir, 'forbidden.img');
    // =1 forbids io_uring only to processes without CAP_SYS_ADMIN, so other
    // root processes on this machine (other test runs) keep it; the copies
    // run without that capability.
    const withoutSysAdmin = (...args: string[]): ReturnType<typeof spawnSync> =>
      spawnSync('setpriv', ['--inh-caps=-sys_admin', '--ambient-caps=-sys_admin', '--bounding-set=-sys_admin', process.execPath, CLI, ...args], {
        encoding: 'utf8',
        env: { ...process.env, DEVMOVE_IO_ENGINE: '' },
      });
    const saved = fs.readFileSync(knob, 'utf8').trim();
    const runs: Record<string, ReturnType<typeof spawnSync>> = {};
    fs.writeFileSync(knob, '1');
    try {
      runs.auto = withoutSysAdmin(`if=${source}`, `of=${target}`, 'bs=1M');
      runs.json = withoutSysAdmin(`if=${source}`, `of=${target}-json`, 'count=1M', 'iflag=count_bytes', '--json');
      runs.uring = withoutSysAdmin(`if=${source}`, `of=${target}-uring`, '--io-engine=io_uring');
      runs.threads = withoutSysAdmin(`if=${source}`, `of=${target}-threads`, '--io-engine=threads', 'count=1M', 'iflag=count_bytes');
    } finally {
      fs.writeFileSync(knob, saved);
    }
    const reason = 'io_uring is restricted: sysctl kernel.io_uring_disabled=1 allows it only to CAP_SYS_ADMIN';
    expect(runs.auto.status).toBe(0);
    expect(runs.auto.stderr).toMatch(/^8\+0 records in\n8\+0 records out\n8388608 bytes .* copied/);
    expect(runs.auto.stderr).toContain(`devmove: I/O engine: threads, because ${reason}`);
    expect(sha256Range(target, 0, 8 * MiB)).toBe(sha256Range(source, 0, 8 * MiB));
    const result = JSON.parse(String(runs.json.stdout).trim().split('\n').at(-1) ?? '{}') as { type: string; ioEngine: string; ioEngineNote: string };
    expect(result).toMatchObject({ type: 'result', ioEngine: 'threads' });
    expect(result.ioEngineNote).toContain(reason);
    // Asked for io_uring: no fallback, the reason in the error.
    expect(runs.uring.status).toBe(1);
    expect(runs.uring.stderr).toMatch(/^devmove: io_uring is restricted: sysctl kernel\.io_uring_disabled=1 .*\(EPERM from io_uring_setup\)\n$/);
    // Asked for threads: nothing to explain.
    expect(runs.threads.status).toBe(0);
    expect(runs.threads.stderr).not.toContain('I/O engine');
  });
});
