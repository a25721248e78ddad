// copy() option validation: every bad option is a TypeError or RangeError
// naming the option and the accepted form; good options become a clean plan.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { planCopy } from '../../src/api/plan';
import type { CopyOptions } from '../../src/base/types';

const base = { source: '/dev/sdb', target: '/dev/sdc' } as const;

// The suite may run with DEVMOVE_IO_ENGINE=threads; these tests state the defaults without it.
beforeEach(() => vi.stubEnv('DEVMOVE_IO_ENGINE', ''));
afterEach(() => vi.unstubAllEnvs());

describe('planCopy: valid options', () => {
  it('fills in the defaults', () => {
    expect(planCopy(base)).toStrictEqual({
      source: { path: '/dev/sdb', offset: 0, direct: 'auto', noatime: false },
      targets: [{ path: '/dev/sdc', offset: 0, direct: 'auto', create: true, exclusiveCreate: false, exclusive: true }],
      lengthIsMax: false,
      durability: 'fdatasync',
      blockBytes: 512 * 1024,
      queueDepth: 8,
      fixedBuffers: true,
      fixedFiles: true,
      sqpoll: false,
      linkReadWrite: true,
      batchSubmissions: true,
      progressIntervalMs: 200,
      noError: false,
      retries: 0,
      verify: false,
      zeroBlocks: 'write',
      onTargetError: 'stop',
      rate: 0,
      checkpointIntervalMs: 0,
    });
  });

  it.each<[string, CopyOptions, Record<string, unknown>]>([
    ['sizes as strings', { ...base, sourceOffset: '1M', targetOffset: '2x512', length: '1GiB', blockSize: '4M' }, { blockBytes: 4 * 1024 * 1024, length: 1024 ** 3 }],
    ['sizes as bigints', { ...base, length: 4096n, blockSize: 65536n }, { length: 4096, blockBytes: 65536 }],
    ['maxLength', { ...base, maxLength: '10M' }, { length: 10 * 1024 * 1024, lengthIsMax: true }],
    ['one direct mode for both sides', { ...base, direct: 'never' }, { source: expect.objectContaining({ direct: 'never' }) }],
    ['durability', { ...base, durability: 'dsync' }, { durability: 'dsync' }],
    ['queue depth bounds', { ...base, queueDepth: 1024, blockSize: '1M' }, { queueDepth: 1024 }],
    ['engine switches', { ...base, engine: { linkReadWrite: false, sqpoll: true, fixedBuffers: false } }, { linkReadWrite: false, sqpoll: true, fixedBuffers: false }],
    ['block size of one byte', { ...base, blockSize: 1 }, { blockBytes: 1 }],
    ['fan-out', { source: '/dev/sdb', targets: ['/dev/sdc', '/dev/sdd'], onTargetError: 'drop' }, { targets: [expect.objectContaining({ path: '/dev/sdc' }), expect.objectContaining({ path: '/dev/sdd' })], onTargetError: 'drop' }],
    ['background mode', { ...base, background: true }, { blockBytes: 128 * 1024, queueDepth: 2 }],
    ['background mode with an explicit block size', { ...base, background: true, blockSize: '1M' }, { blockBytes: 1024 * 1024, queueDepth: 2 }],
    ['rate as a size', { ...base, rate: '200M' }, { rate: 200 * 1024 * 1024 }],
    ['reliability', { ...base, noError: true, retries: 3, mapfile: 'x.map', verify: true, hash: 'sha256' }, { noError: true, retries: 3, verify: true, hash: 'sha256', checkpointIntervalMs: 1000 }],
    ['verify with one read', { ...base, verify: true }, { verify: true }],
    ['verify strict', { ...base, verify: 'strict' }, { verify: true, verifyStrict: true }],
    ['checkpoint interval', { ...base, mapfile: 'x.map', checkpointInterval: 250 }, { checkpointIntervalMs: 250 }],
    ['zero blocks', { ...base, zeroBlocks: 'discard' }, { zeroBlocks: 'discard' }],
    ['I/O engine', { ...base, ioEngine: 'threads' }, { ioEngine: 'threads' }],
    ['I/O engine io_uring', { ...base, ioEngine: 'io_uring' }, { ioEngine: 'io_uring' }],
  ])('%s', (_name, options, expected) => {
    expect(planCopy(options)).toMatchObject(expected);
  });

  it('verify: true is the one-read pass (no verifyStrict), false no verify at all', () => {
    expect(planCopy({ ...base, verify: true }).verifyStrict).toBeUndefined();
    expect(planCopy({ ...base, verify: false })).toMatchObject({ verify: false });
    expect(planCopy({ ...base, verify: false }).verifyStrict).toBeUndefined();
  });

  it('per-side direct modes and truncation', () => {
    const plan = planCopy({ ...base, direct: { source: 'always' }, targetOffset: 4096, truncateTarget: true });
    expect(plan.source.direct).toBe('always');
    expect(plan.targets[0]).toMatchObject({ direct: 'auto', truncateTo: 4096 });
    expect(planCopy({ ...base, truncateTarget: '1M' }).targets[0].truncateTo).toBe(1024 * 1024);
    expect(planCopy({ ...base, truncateTarget: 0 }).targets[0].truncateTo).toBe(0);
    expect(planCopy({ ...base, truncateTarget: false }).targets[0].truncateTo).toBeUndefined();
  });
});

describe('planCopy: invalid options', () => {
  it.each<[string, unknown, ErrorConstructor, RegExp]>([
    ['no options', undefined, TypeError, /copy\(\) needs an options object/],
    ['a string', '/dev/sdb', TypeError, /copy\(\) needs an options object/],
    ['missing source', { target: '/dev/sdc' }, TypeError, /^options\.source must be a path string/],
    ['numeric target', { source: 'a', target: 3 }, TypeError, /^options\.target must be a path string .* \(got 3\)$/],
    ['empty source', { source: '', target: 'b' }, RangeError, /^options\.source must not be empty$/],
    ["verify 'full'", { ...base, verify: 'full' }, RangeError, /^options\.verify must be true, false, 'strict' or 'behind' \(got 'full'\)$/],
    ['verify 1', { ...base, verify: 1 }, TypeError, /^options\.verify must be true, false, 'strict' or 'behind' \(got 1\)$/],
    ['NUL in a path', { source: 'a\0b', target: 'b' }, RangeError, /NUL/],
    ['unknown option', { ...base, bs: '1M' }, TypeError, /^options\.bs is not a copy\(\) option$/],
    ['bad size suffix', { ...base, blockSize: '12Q3' }, RangeError, /^options\.blockSize must be a size such as '512K' or '4M' \(got '12Q3'\): unknown size suffix 'Q3'/],
    ['negative offset', { ...base, sourceOffset: -1 }, RangeError, /^options\.sourceOffset/],
    ['fractional length', { ...base, length: 1.5 }, RangeError, /^options\.length/],
    ['size as boolean', { ...base, length: true }, TypeError, /^options\.length/],
    ['unsafe integer', { ...base, targetOffset: 2 ** 53 }, RangeError, /^options\.targetOffset/],
    ['zero block size', { ...base, blockSize: 0 }, RangeError, /^options\.blockSize must be from 1 byte to 1 GiB/],
    ['block size over 1 GiB', { ...base, blockSize: '2G' }, RangeError, /^options\.blockSize must be from 1 byte to 1 GiB/],
    ['queue depth 0', { ...base, queueDepth: 0 }, RangeError, /^options\.queueDepth must be an integer from 1 to 1024 \(got 0\)$/],
    ['queue depth as string', { ...base, queueDepth: '8' }, TypeError, /^options\.queueDepth must be an integer from 1 to 1024 \(got '8'\)$/],
    ['ring over 1 GiB', { ...base, queueDepth: 512, blockSize: '4M' }, RangeError, /within 1 GiB of buffers/],
    ['length and maxLength', { ...base, length: 1, maxLength: 1 }, TypeError, /exclude each other/],
    ['bad direct mode', { ...base, direct: 'yes' }, RangeError, /^options\.direct must be one of 'auto', 'always' or 'never' \(got 'yes'\)$/],
    ['bad direct side', { ...base, direct: { src: 'auto' } }, TypeError, /^options\.direct\.src is not a side/],
    ['target and targets', { ...base, targets: ['/dev/sdd'] }, TypeError, /^options\.target and options\.targets exclude each other/],
    ['targets not an array', { source: 'a', targets: 'b' }, TypeError, /^options\.targets must be an array/],
    ['empty targets', { source: 'a', targets: [] }, RangeError, /^options\.targets must list 1 to 64 targets \(got 0\)$/],
    ['65 targets', { source: 'a', targets: Array.from({ length: 65 }, (_, i) => `t${i}`) }, RangeError, /must list 1 to 64 targets \(got 65\)/],
    ['empty target in targets', { source: 'a', targets: ['b', ''] }, RangeError, /^options\.targets\[1\] must not be empty$/],
    ['bad failure policy', { ...base, onTargetError: 'ignore' }, RangeError, /^options\.onTargetError must be one of 'stop' or 'drop' \(got 'ignore'\)$/],
    ['negative retries', { ...base, retries: -1 }, RangeError, /^options\.retries must be an integer from 0 to 1000/],
    ['unknown hash', { ...base, hash: 'crc32' }, RangeError, /^options\.hash must be one of 'blake3', 'sha256'/],
    ['bad zero mode', { ...base, zeroBlocks: 'trim' }, RangeError, /^options\.zeroBlocks must be one of 'write', 'skip', 'discard' or 'sparse'/],
    ['bad rate', { ...base, rate: 'fast' }, RangeError, /^options\.rate/],
    ['mapfile without durability', { ...base, mapfile: 'x.map', durability: 'none' }, TypeError, /^options\.mapfile needs durable writes/],
    ['checkpoint interval without mapfile', { ...base, checkpointInterval: 500 }, TypeError, /^options\.checkpointInterval needs options\.mapfile$/],
    ['checkpoint interval too short', { ...base, mapfile: 'x.map', checkpointInterval: 10 }, RangeError, /^options\.checkpointInterval must be an integer from 100/],
    ['retryBad without mapfile', { ...base, retryBad: true }, TypeError, /^options\.retryBad needs options\.mapfile/],
    ['bad durability', { ...base, durability: 'eventually' }, RangeError, /^options\.durability must be one of 'fdatasync', 'fsync', 'dsync', 'sync' or 'none'/],
    ['non-boolean createTarget', { ...base, createTarget: 'yes' }, TypeError, /^options\.createTarget must be true or false/],
    ['exclusiveCreate without createTarget', { ...base, exclusiveCreate: true, createTarget: false }, TypeError, /exclusiveCreate needs options\.createTarget/],
    ['progress interval too fast', { ...base, progressInterval: 10 }, RangeError, /^options\.progressInterval must be an integer from 100/],
    ['signal not an AbortSignal', { ...base, signal: { aborted: false } }, TypeError, /^options\.signal must be an AbortSignal/],
    ['onProgress not a function', { ...base, onProgress: 1 }, TypeError, /^options\.onProgress must be a function/],
    ['unknown engine switch', { ...base, engine: { turbo: true } }, TypeError, /^options\.engine\.turbo is not an engine option/],
    ['engine not an object', { ...base, engine: 1 }, TypeError, /^options\.engine must be an object/],
  ])('%s', (_name, options, type, message) => {
    expect(() => planCopy(options as CopyOptions)).toThrow(type);
    expect(() => planCopy(options as CopyOptions)).toThrow(message);
  });
});

describe('planCopy: the I/O engine', () => {
  it("'auto' is the default and stays out of the plan", () => {
    expect(planCopy({ ...base, ioEngine: 'auto' })).not.toHaveProperty('ioEngine');
  });

  it('DEVMOVE_IO_ENGINE sets the default; an explicit option wins', () => {
    vi.stubEnv('DEVMOVE_IO_ENGINE', 'threads');
    expect(planCopy(base).ioEngine).toBe('threads');
    expect(planCopy({ ...base, ioEngine: 'io_uring' }).ioEngine).toBe('io_uring');
    vi.stubEnv('DEVMOVE_IO_ENGINE', 'iouring');
    expect(() => planCopy(base)).toThrow(/DEVMOVE_IO_ENGINE must be one of 'auto', 'io_uring', 'threads' \(got 'iouring'\)/);
  });

  it('a bad ioEngine names the option', () => {
    expect(() => planCopy({ ...base, ioEngine: 'aio' as 'auto' })).toThrow(RangeError);
    expect(() => planCopy({ ...base, ioEngine: 'aio' as 'auto' })).toThrow(/options\.ioEngine must be one of 'auto', 'io_uring' or 'threads'/);
    expect(() => planCopy({ ...base, ioEngine: 1 as unknown as 'auto' })).toThrow(TypeError);
  });
});

describe('planCopy: dd truncation and the zero check', () => {
  it('a cut to 0 is an open with O_TRUNC; a cut elsewhere is ftruncate', () => {
    const zero = planCopy({ source: 'a', target: 'b', truncateTarget: true });
    expect(zero.targets[0]).toMatchObject({ truncateTo: 0, truncateAtOpen: true });
    const at = planCopy({ source: 'a', target: 'b', targetOffset: 4096, truncateTarget: true });
    expect(at.targets[0].truncateTo).toBe(4096);
    expect(at.targets[0].truncateAtOpen).toBeUndefined();
  });

  it('zeroBlockSize must divide the block size', () => {
    expect(planCopy({ source: 'a', target: 'b', blockSize: '1M', zeroBlockSize: '256K' }).zeroBlockBytes).toBe(256 * 1024);
    expect(() => planCopy({ source: 'a', target: 'b', blockSize: '1M', zeroBlockSize: '3K' })).toThrow(/options\.zeroBlockSize must divide options\.blockSize/);
  });
});
