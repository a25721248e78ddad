// --hash=blake3 is devmove's own BLAKE3 (native/blake3*), checked against
// Debian's b3sum over the exact source range a copy read: many lengths
// (empty, around the 64-byte block, the 1 KiB chunk and power-of-two subtree
// boundaries, multi-MiB, seeded random ones), block sizes that cut chunks,
// source offsets, every SIMD kernel this CPU runs (DEVMOVE_BLAKE3_KERNEL),
// and a real block-device pair with O_DIRECT. The native unit test
// (test/native/digest_test.cc, run by npm run test:sanitize) checks the
// kernels, the out-of-order tree and the pool underneath.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { copy } from '../../src/index';
import { attachLoop, detachAll, makeImage, skipWithoutLoop, tempDir } from '../helpers/devices';
import { random } from '../helpers/random';

const KiB = 1024;
const MiB = 1024 * KiB;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

const haveB3sum = spawnSync('b3sum', ['--version']).status === 0;

const SEED = Number(process.env.DEVMOVE_TEST_SEED ?? Date.now() % 1_000_000);

/** A file of `length` pseudo-random bytes fixed by `seed` (AES-128-CTR over zeros: fast for tens of MiB). */
function seededFile(dir: string, name: string, length: number, seed: string): string {
  const key = crypto.createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]));
  return file;
}

function b3sum(data: Buffer): string {
  const run = spawnSync('b3sum', ['--no-names'], { input: data, maxBuffer: 1 << 20 });
  if (run.status !== 0) throw new Error(`b3sum failed: ${run.stderr.toString()}`);
  return run.stdout.toString().trim();
}

// What this CPU offers, read independently of the addon's own probe.
function cpuFlags(): Set<string> {
  const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
  return new Set((line ?? '').split(':')[1]?.trim().split(/\s+/) ?? []);
}
const flags = cpuFlags();
const bestKernel = flags.has('avx512f') && flags.has('avx512vl') ? 'avx512' : flags.has('avx2') ? 'avx2' : 'portable';
const KERNELS = [
  { name: 'portable', runs: true },
  { name: 'avx2', runs: flags.has('avx2') },
  { name: 'avx512', runs: flags.has('avx512f') && flags.has('avx512vl') },
];

describe.skipIf(!haveB3sum)(`--hash=blake3 equals b3sum of the range read (seed ${SEED}; replay with DEVMOVE_TEST_SEED=${SEED})`, () => {
  afterAll(() => detachAll());

  const next = random(SEED);
  const lengths = [0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 8 * KiB + 1, 512 * KiB - 1, 512 * KiB, 512 * KiB + 1, 3 * MiB + 1000, 17 * MiB + 7];
  for (let i = 0; i < 4; i++) lengths.push(Math.floor(next() * 6 * MiB));
  const blockSizes = ['512K', '64K', '4M', '1000', '3K'];

  it.each(lengths.map((length, i) => ({ length, blockSize: blockSizes[i % blockSizes.length] })))(
    'length $length, bs=$blockSize',
    async ({ length, blockSize }) => {
      const dir = tempDir();
      const offset = length % 3 === 0 ? 4096 : 0; // a source range that is not the whole file, now and then
      const src = seededFile(dir, 'src.img', length + offset, `blake3-${SEED}-${length}`);
      const result = await copy({ source: src, target: path.join(dir, 'dst.img'), sourceOffset: offset, blockSize, hash: 'blake3' });
      expect(result.bytesCopied).toBe(length);
      expect(result.hash).toEqual({ algorithm: 'blake3', hex: b3sum(fs.readFileSync(src).subarray(offset)), implementation: bestKernel, threads: os.availableParallelism() });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  );

  // DEVMOVE_HASH_THREADS: '1' one pool worker, 'io' the engine's own thread (the baseline), unset one per CPU.
  const modes = KERNELS.flatMap((k) => [undefined, '1', 'io'].map((threads) => ({ ...k, threads })));
  it.each(modes)('kernel $name (DEVMOVE_BLAKE3_KERNEL), hash threads $threads, through the CLI', ({ name, runs, threads }, ctx) => {
    if (!runs) ctx.skip();
    const dir = tempDir();
    const length = 5 * MiB + Math.floor(next() * MiB);
    const src = seededFile(dir, 'src.img', length, `kernel-${SEED}`);
    const env: NodeJS.ProcessEnv = { ...process.env, DEVMOVE_BLAKE3_KERNEL: name };
    if (threads === undefined) delete env.DEVMOVE_HASH_THREADS;
    else env.DEVMOVE_HASH_THREADS = threads;
    const run = spawnSync(process.execPath, [CLI, `if=${src}`, `of=${path.join(dir, 'dst.img')}`, '--hash=blake3', '--json', 'bs=64K'], { env });
    expect(run.stderr.toString()).toBe('');
    expect(run.status).toBe(0);
    const result = run.stdout.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.type === 'result');
    const workers = threads === 'io' ? 0 : threads === '1' ? 1 : os.availableParallelism();
    expect(result.hash).toEqual({ algorithm: 'blake3', hex: b3sum(fs.readFileSync(src)), implementation: name, threads: workers });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the CLI prints the digest as b3sum does; an unknown kernel is refused (exit 1, EINVAL)', () => {
    const dir = tempDir();
    const src = seededFile(dir, 'src.img', 2 * MiB + 5, `cli-${SEED}`);
    const run = spawnSync(process.execPath, [CLI, `if=${src}`, `of=${path.join(dir, 'dst.img')}`, '--hash=blake3', 'status=none']);
    expect(run.status).toBe(0);
    expect(run.stdout.toString()).toBe(`BLAKE3 (${src}) = ${b3sum(fs.readFileSync(src))}\n`);
    const bad = spawnSync(process.execPath, [CLI, `if=${src}`, `of=${path.join(dir, 'dst2.img')}`, '--hash=blake3'], {
      env: { ...process.env, DEVMOVE_BLAKE3_KERNEL: 'sse9' },
    });
    expect(bad.status).toBe(1);
    expect(bad.stderr.toString()).toMatch(/DEVMOVE_BLAKE3_KERNEL=sse9: not a BLAKE3 kernel this CPU runs.*EINVAL/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a copy cancelled while buffers are in the digest ends, and reports no digest', async () => {
    const dir = tempDir();
    const src = seededFile(dir, 'src.img', 64 * MiB, `cancel-${SEED}`);
    const controller = new AbortController();
    const job = copy({ source: src, target: path.join(dir, 'dst.img'), hash: 'sha256', rate: '32M', blockSize: '64K', signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    const error = await job.then(() => undefined, (e: unknown) => e as { code: string; result?: { hash?: unknown } });
    expect(error?.code).toBe('ABORT_ERR');
    expect(error?.result?.hash).toBeUndefined();
  });

  it.skipIf(skipWithoutLoop)('block device to block device with O_DIRECT: the digest of the source device', async () => {
    const dir = tempDir();
    const size = 48 * MiB;
    const srcImage = seededFile(dir, 'src.img', size, `loop-${SEED}`);
    const src = attachLoop(srcImage);
    const dst = attachLoop(makeImage(dir, 'dst.img', size, 'zero'));
    const result = await copy({ source: src, target: dst, hash: 'blake3' });
    expect(result.source.direct).toBe(true);
    expect(result.hash?.hex).toBe(b3sum(fs.readFileSync(srcImage)));
  });
});
