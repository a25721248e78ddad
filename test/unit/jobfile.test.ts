// Job files: every bad job file is one JobFileError naming the file and the field
// (or the line and column of a JSON syntax error); good ones become plain copy() options.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { allocateBudget, JobFileError, parseJobFile, validateJob, type JobSpec } from '../../src/jobs/jobfile';
import { pairLine, summaryLine } from '../../src/cli/run-command';

const MiB = 1024 * 1024;
const FILE = '/jobs/nightly/job.json';

/** A job file's text with one pair (or the given pairs) and extra top-level fields. */
function job(pairs: unknown[] = [{ source: '/dev/sdb', target: '/dev/sdc' }], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ version: 1, ...extra, pairs }, null, 2);
}
const pair = (extra: Record<string, unknown>): Record<string, unknown> => ({ source: '/dev/sdb', target: '/dev/sdc', ...extra });
const two = (a: Record<string, unknown>, b: Record<string, unknown>): string => job([pair(a), { source: '/dev/sdd', target: '/dev/sde', ...b }]);

function errorOf(text: string, fileName = 'job.json'): JobFileError {
  try {
    parseJobFile(text, fileName);
  } catch (error) {
    if (error instanceof JobFileError) return error;
    throw error;
  }
  throw new Error('the job file was accepted');
}

describe('bad job files', () => {
  // [what, text, expected start of the message (exact), rest of the message]
  const cases: Array<[string, string, string, RegExp]> = [
    ['JSON syntax error: missing comma', '{\n  "version": 1\n  "pairs": []\n}', 'job.json:3:3: invalid JSON: ', /^unexpected '"': expected ',' or '}' after a property value$/],
    ['JSON syntax error: trailing comma', '{"version": 1, "pairs": [{"source": "a", "target": "b"},]}', 'job.json:1:57: invalid JSON: ', /^trailing comma before \]$/],
    ['JSON syntax error: a comment', '{\n  // nightly\n  "version": 1 }', 'job.json:2:3: invalid JSON: ', /JSON has no comments/],
    ['JSON syntax error: single quotes', "{'version': 1}", 'job.json:1:2: invalid JSON: ', /double quotes/],
    ['JSON syntax error: unterminated string', '{"version": 1, "pairs": [{"source": "/dev/sdb', 'job.json:1:37: invalid JSON: ', /^unterminated string$/],
    ['JSON syntax error: text after the value', '{"version": 1} x', 'job.json:1:16: invalid JSON: ', /after the end of the JSON value/],
    ['an empty file', '  \n', 'job.json: ', /^the file is empty/],
    ['not an object', '[1, 2]', 'job.json: ', /^must be a JSON object .* \(got an array\)$/],
    ['a key given twice', '{"version": 1, "pairs": [{"source": "a", "source": "b", "target": "c"}]}', 'job.json: pairs[0].source: ', /^given twice in one object/],
    ['missing version', JSON.stringify({ pairs: [pair({})] }), 'job.json: version: ', /^is missing; add "version": 1$/],
    ['wrong version', job(undefined, { version: 2 }), 'job.json: version: ', /^must be 1, .* \(got 2\)$/],
    ['version as a string', job(undefined, { version: '1' }), 'job.json: version: ', /\(got '1'\)$/],
    ['missing pairs', JSON.stringify({ version: 1 }), 'job.json: pairs: ', /^is missing/],
    ['pairs not a list', JSON.stringify({ version: 1, pairs: { source: 'a', target: 'b' } }), 'job.json: pairs: ', /^must be a list of pairs \(got an object\)$/],
    ['empty pairs', job([]), 'job.json: pairs: ', /^is empty: a job needs at least one pair$/],
    ['a pair that is not an object', job([pair({}), '/dev/sdd']), 'job.json: pairs[1]: ', /^must be an object .* \(got '\/dev\/sdd'\)$/],
    ['pair without source', job([pair({}), { target: '/dev/sde' }]), 'job.json: pairs[1].source: ', /^is missing: every pair needs a source/],
    ['pair without target', job([{ source: '/dev/sdb' }]), 'job.json: pairs[0].target: ', /^is missing: every pair needs a target/],
    ['both target and targets', job([pair({ targets: ['/dev/sdd'] })]), 'job.json: pairs[0].targets: ', /^excludes pairs\[0\]\.target: give one target, or a list of targets, not both$/],
    ['empty targets', job([{ source: '/dev/sdb', targets: [] }]), 'job.json: pairs[0].targets: ', /^must list at least one target$/],
    ['a target listed twice', job([{ source: '/dev/sdb', targets: ['/dev/sdc', '/dev/sdd', '/dev/sdc'] }]), 'job.json: pairs[0].targets[2]: ', /^'\/dev\/sdc' is already pairs\[0\]\.targets\[0\]$/],
    ['a target that is not a string', job([{ source: '/dev/sdb', targets: ['/dev/sdc', 7] }]), 'job.json: pairs[0].targets[1]: ', /^must be a device or file path .* \(got 7\)$/],
    ['an empty source', job([pair({ source: '' })]), 'job.json: pairs[0].source: ', /^must not be empty/],
    ['unknown pair key, with a suggestion', two({}, { blocksize: '1M' }), 'job.json: pairs[1].blocksize: ', /^is not a pair option; did you mean 'blockSize'\?$/],
    ['a dd operand as a key', job([pair({ bs: '1M' })]), 'job.json: pairs[0].bs: ', /^is not a pair option; did you mean 'blockSize'\?$/],
    ['unknown key without a suggestion', job([pair({ colour: 'blue' })]), 'job.json: pairs[0].colour: ', /^is not a pair option; the pair options are name, source, target, targets, sourceOffset, /],
    ['a __proto__ key', '{"version": 1, "pairs": [{"source": "a", "target": "b", "__proto__": {"force": true}}]}', 'job.json: pairs[0].__proto__: ', /^is not a pair option/],
    ['unknown top-level key', job(undefined, { maxQueuedepth: 4 }), 'job.json: maxQueuedepth: ', /^is not a job field; did you mean 'maxQueueDepth'\?$/],
    ['a pair option at the top level', job(undefined, { blockSize: '1M' }), 'job.json: blockSize: ', /^is a pair option: put it in a pair, or in defaults for every pair$/],
    ['a top-level field in a pair', job([pair({ maxQueueDepth: 4 })]), 'job.json: pairs[0].maxQueueDepth: ', /^belongs at the top level of the job, not in a pair$/],
    ['a size that is not one', two({}, { blockSize: 'lots' }), 'job.json: pairs[1].blockSize: ', /^must be a size such as '512K' or '4M' \(got 'lots'\)$/],
    ['a size with a wrong suffix', job([pair({ sourceOffset: '4mb' })]), 'job.json: pairs[0].sourceOffset: ', /\(got '4mb'\): unknown size suffix 'mb'; suffixes are case-sensitive, did you mean 'MB'\?/],
    ['a fractional size', job([pair({ length: '1.5G' })]), 'job.json: pairs[0].length: ', /fractions are not allowed/],
    ['a negative size', job([pair({ targetOffset: -512 })]), 'job.json: pairs[0].targetOffset: ', /^must be a size .* \(got -512\): negative$/],
    ['a size as a boolean', job([pair({ maxLength: true })]), 'job.json: pairs[0].maxLength: ', /\(got true\)$/],
    ['blockSize 0', job([pair({ blockSize: 0 })]), 'job.json: pairs[0].blockSize: ', /^must be from 1 byte to 1 GiB/],
    ['blockSize above 1G', job([pair({ blockSize: '2G' })]), 'job.json: pairs[0].blockSize: ', /^must be from 1 byte to 1 GiB/],
    ['length and maxLength', job([pair({ length: '1M', maxLength: '2M' })]), 'job.json: pairs[0].maxLength: ', /^excludes pairs\[0\]\.length/],
    ['queueDepth 0', job([pair({ queueDepth: 0 })]), 'job.json: pairs[0].queueDepth: ', /^must be an integer from 1 to 1024 \(got 0\)$/],
    ['queueDepth 2000', job([pair({ queueDepth: 2000 })]), 'job.json: pairs[0].queueDepth: ', /^must be an integer from 1 to 1024 \(got 2000\)$/],
    ['queueDepth 1.5', job([pair({ queueDepth: 1.5 })]), 'job.json: pairs[0].queueDepth: ', /^must be an integer from 1 to 1024 \(got 1\.5\)$/],
    ['queueDepth as a string', job([pair({ queueDepth: '8' })]), 'job.json: pairs[0].queueDepth: ', /\(got '8'\)$/],
    ['durability misspelt', job([pair({ durability: 'fsyncc' })]), 'job.json: pairs[0].durability: ', /^must be one of 'fdatasync', 'fsync', 'dsync', 'sync' or 'none' \(got 'fsyncc'\); did you mean 'fsync'\?$/],
    ['direct mode unknown', job([pair({ direct: 'sometimes' })]), 'job.json: pairs[0].direct: ', /^must be one of 'auto', 'always' or 'never' \(got 'sometimes'\)$/],
    ['direct per side, bad side', job([pair({ direct: { input: 'never' } })]), 'job.json: pairs[0].direct.input: ', /^is not a side of direct; the sides are source, target$/],
    ['direct per side, bad mode', job([pair({ direct: { target: 'yes' } })]), 'job.json: pairs[0].direct.target: ', /^must be one of 'auto', 'always' or 'never'/],
    ['zeroBlocks unknown', job([pair({ zeroBlocks: 'zero' })]), 'job.json: pairs[0].zeroBlocks: ', /^must be one of 'write', 'skip', 'discard' or 'sparse' \(got 'zero'\)$/],
    ['onTargetError unknown', job([pair({ onTargetError: 'ignore' })]), 'job.json: pairs[0].onTargetError: ', /^must be one of 'stop' or 'drop' \(got 'ignore'\)$/],
    ['hash unknown', job([pair({ hash: 'crc32' })]), 'job.json: pairs[0].hash: ', /^must be one of 'blake3', 'sha256', 'sha512', 'sha1', 'md5', 'blake2b512' or 'sha3-256' \(got 'crc32'\)$/],
    ['hash in capitals', job([pair({ hash: 'SHA256' })]), 'job.json: pairs[0].hash: ', /did you mean 'sha256'\?$/],
    ['negative retries', job([pair({ retries: -1 })]), 'job.json: pairs[0].retries: ', /^must be an integer from 0 to 1000 \(got -1\)$/],
    ['too many retries', job([pair({ retries: 1001 })]), 'job.json: pairs[0].retries: ', /^must be an integer from 0 to 1000 \(got 1001\)$/],
    ["rate 'fast'", job([pair({ rate: 'fast' })]), 'job.json: pairs[0].rate: ', /^must be a rate in bytes per second such as '50M' or '1G\/s', or 0 for unlimited \(got 'fast'\)$/],
    ['negative rate', job([pair({ rate: -5 })]), 'job.json: pairs[0].rate: ', /\(got -5\)$/],
    ["force 'yes'", job([pair({ force: 'yes' })]), 'job.json: pairs[0].force: ', /^must be true or false \(got 'yes'\)$/],
    ['verify 1', job([pair({ verify: 1 })]), 'job.json: pairs[0].verify: ', /^must be true, false, 'strict' or 'behind' \(got 1\)$/],
    ["verify 'full'", job([pair({ verify: 'full' })]), 'job.json: pairs[0].verify: ', /^must be true, false, 'strict' or 'behind' \(got 'full'\)$/],
    ['null instead of leaving a field out', job([pair({ noError: null })]), 'job.json: pairs[0].noError: ', /^must be true or false \(got null\)$/],
    ['truncateTarget neither boolean nor size', job([pair({ truncateTarget: 'yes' })]), 'job.json: pairs[0].truncateTarget: ', /^must be true, false or a size/],
    ['an empty mapfile', job([pair({ mapfile: '' })]), 'job.json: pairs[0].mapfile: ', /^must not be empty/],
    ['a name that is not a string', job([pair({ name: 42 })]), 'job.json: pairs[0].name: ', /^must be a name of 1 to 100 printable characters .* \(got 42\)$/],
    ['duplicate names', job([pair({ name: 'db' }), { name: 'logs', source: '/dev/sdd', target: '/dev/sde' }, { name: 'db', source: '/dev/sdf', target: '/dev/sdg' }]), 'job.json: pairs[2].name: ', /^'db' is already the name of pairs\[0\]; names must be unique$/],
    ['a name equal to a default name', two({ name: 'pair-1' }, {}), 'job.json: pairs[1].name: ', /^'pair-1' is already the name of pairs\[0\]/],
    ['same target twice', job([pair({ name: 'db' }), { name: 'logs', source: '/dev/sdd', target: '/dev/sdc' }]), 'job.json: pairs[1].target: ', /^'\/dev\/sdc' of pair 'logs' is also the target of pair 'db' \(pairs\[0\]\.target\); two pairs must not write to one target$/],
    ['same target twice, once in targets', job([pair({ name: 'db' }), { name: 'logs', source: '/dev/sdd', targets: ['/dev/sde', '/dev/sdc'] }]), 'job.json: pairs[1].targets[1]: ', /is also the target of pair 'db' \(pairs\[0\]\.target\)/],
    ['target is another pair\'s source', job([pair({ name: 'db' }), { name: 'logs', source: '/dev/sdd', target: '/dev/sdb' }]), 'job.json: pairs[1].target: ', /^'\/dev\/sdb' of pair 'logs' is also the source of pair 'db' \(pairs\[0\]\.source\); a pair must not write to what another pair reads$/],
    ['source is a later pair\'s target', job([pair({ name: 'db' }), { name: 'logs', source: '/dev/sdc', target: '/dev/sde' }]), 'job.json: pairs[0].target: ', /^'\/dev\/sdc' of pair 'db' is also the source of pair 'logs' \(pairs\[1\]\.source\)/],
    ['same target through a relative path', job([pair({ target: 'disk.img' }), { source: '/dev/sdd', target: './sub/../disk.img' }]), 'job.json: pairs[1].target: ', /is also the target of pair 'pair-0'/],
    ['a mapfile shared through defaults', job([pair({}), { source: '/dev/sdd', target: '/dev/sde' }], { defaults: { mapfile: 'rescue.map' } }), 'job.json: pairs[1].mapfile: ', /is also the mapfile of pair 'pair-0' \(pairs\[0\]\.mapfile\); each pair needs its own mapfile$/],
    ['a mapfile that is a target', job([pair({ mapfile: '/dev/sde' }), { source: '/dev/sdd', target: '/dev/sde' }]), 'job.json: pairs[0].mapfile: ', /is also the target of pair 'pair-1' \(pairs\[1\]\.target\); a mapfile must not be a source or target$/],
    ['a pair\'s mapfile that is its own target', job([pair({ mapfile: '/dev/sdc' })]), 'job.json: pairs[0].mapfile: ', /^'\/dev\/sdc' is also this pair's target \(pairs\[0\]\.target\)/],
    ['maxBufferMemory (default) too small for one buffer', two({ name: 'big', blockSize: '8M' }, {}), 'job.json: maxBufferMemory: ', /^the default of 8\.0 MiB \(maxQueueDepth 16 × 512 KiB\) shared by 2 pairs leaves 4\.0 MiB per pair, less than one 8\.0 MiB buffer of pair 'big' \(its blockSize\); raise maxBufferMemory or lower the blockSize$/],
    ['maxBufferMemory not a size', job(undefined, { maxBufferMemory: 'plenty' }), 'job.json: maxBufferMemory: ', /^must be a size such as '512K' or '4M' \(got 'plenty'\)$/],
    ['maxQueueDepth 0', job(undefined, { maxQueueDepth: 0 }), 'job.json: maxQueueDepth: ', /^must be an integer from 1 to 1024 \(got 0\)$/],
    ['maxQueueDepth below the number of pairs', job([pair({}), { source: '/dev/sdd', target: '/dev/sde' }, { source: '/dev/sdf', target: '/dev/sdg' }], { maxQueueDepth: 2 }), 'job.json: maxQueueDepth: ', /^must be at least the number of pairs \(3\), so that every pair has an I\/O in flight \(got 2\)$/],
    ['defaults with an unknown key', job(undefined, { defaults: { blockSise: '1M' } }), 'job.json: defaults.blockSise: ', /^is not a pair option; did you mean 'blockSize'\?$/],
    ['defaults with a per-pair key', job(undefined, { defaults: { source: '/dev/sdb' } }), 'job.json: defaults.source: ', /^is set per pair, not in defaults$/],
    ['defaults not an object', job(undefined, { defaults: ['blockSize'] }), 'job.json: defaults: ', /^must be an object of pair options .* \(got an array\)$/],
    ['defaults with a bad value', job(undefined, { defaults: { durability: 'always' } }), 'job.json: defaults.durability: ', /^must be one of/],
  ];

  it('has a table of at least 20 bad job files', () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  it.each(cases)('%s', (_what, text, start, rest) => {
    const error = errorOf(text);
    expect(error).toBeInstanceOf(JobFileError);
    expect(error.code).toBe('EJOBFILE');
    expect(error.message.startsWith(start), `${error.message}\n  does not start with\n${start}`).toBe(true);
    expect(error.message.slice(start.length)).toMatch(rest);
    expect(error.message).not.toContain('\n');
  });

  it('names the field path and the file separately too', () => {
    const error = errorOf(two({}, { blockSize: 'lots' }));
    expect(error).toMatchObject({ fileName: 'job.json', field: 'pairs[1].blockSize', reason: "must be a size such as '512K' or '4M' (got 'lots')" });
    expect(error.message).toBe("job.json: pairs[1].blockSize: must be a size such as '512K' or '4M' (got 'lots')");
    const syntax = errorOf('{\n  "version": 1,\n  "pairs": [\n}');
    expect(syntax).toMatchObject({ line: 4, column: 1, field: undefined });
  });

  it('validateJob without a file name leaves the prefix out', () => {
    expect(() => validateJob({ version: 1, pairs: [] })).toThrow(/^pairs: is empty/);
    expect(() => validateJob(null)).toThrow(/^must be a JSON object .* \(got null\)$/);
  });

  it('given too small a maxBufferMemory, names the pair and its block size', () => {
    const error = errorOf(job([pair({ name: 'big', blockSize: '1M' }), { source: '/dev/sdd', target: '/dev/sde' }], { maxBufferMemory: '1M' }));
    expect(error.message).toBe(
      "job.json: maxBufferMemory: 1.0 MiB shared by 2 pairs leaves 512 KiB per pair, less than one 1.0 MiB buffer of pair 'big' (its blockSize); raise maxBufferMemory or lower the blockSize",
    );
  });
});

describe('device names and relative paths', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('resolves relative paths against the job file, keeps MAJ:MIN and absolute paths', () => {
    const spec = parseJobFile(job([{ source: 'images/disk.img', target: '../out/copy.img', mapfile: 'copy.map' }, { source: '8:16', target: '/dev//sdc' }]), FILE);
    expect(spec.pairs[0].options).toStrictEqual({ source: '/jobs/nightly/images/disk.img', target: '/jobs/out/copy.img', mapfile: '/jobs/nightly/copy.map' });
    expect(spec.pairs[1].options).toStrictEqual({ source: '8:16', target: '/dev/sdc' });
  });

  it('leaves relative paths alone without a base directory', () => {
    expect(validateJob({ version: 1, pairs: [{ source: 'a.img', target: 'b.img' }] }).pairs[0].options).toStrictEqual({ source: 'a.img', target: 'b.img' });
  });

  const someDevice = fs.existsSync('/sys/class/block') ? fs.readdirSync('/sys/class/block')[0] : undefined;
  it.skipIf(someDevice === undefined)('keeps a bare kernel name as a device name, and refuses one that is also a file next to the job', () => {
    const name = someDevice as string;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmove-jobfile-'));
    dirs.push(dir);
    const file = path.join(dir, 'job.json');
    expect(parseJobFile(job([{ source: name, target: 'copy.img' }]), file).pairs[0].options.source).toBe(name);
    fs.writeFileSync(path.join(dir, name), '');
    expect(() => parseJobFile(job([{ source: name, target: 'copy.img' }]), file)).toThrow(
      `${file}: pairs[0].source: '${name}' is both a block device and a file next to the job file; write '/dev/${name}' or './${name}'`,
    );
    expect(parseJobFile(job([{ source: `./${name}`, target: 'copy.img' }]), file).pairs[0].options.source).toBe(path.join(dir, name));
    // The path-level check sees the device name and its node as one.
    fs.rmSync(path.join(dir, name));
    expect(() => parseJobFile(job([{ source: '/dev/sdx', target: name }, { source: `/dev/${name}`, target: 'x.img' }]), file)).toThrow(/pairs\[0\]\.target: .* is also the source of pair 'pair-1'/);
  });
});

describe('good job files', () => {
  it('a minimal job: defaults for names and budget', () => {
    const spec = parseJobFile(job(), FILE);
    expect(spec).toStrictEqual<JobSpec>({
      version: 1,
      fileName: FILE,
      maxQueueDepth: 8,
      maxBufferMemory: 8 * 512 * 1024,
      maxQueueDepthIsDefault: true,
      maxBufferMemoryIsDefault: true,
      pairs: [{ name: 'pair-0', index: 0, options: { source: '/dev/sdb', target: '/dev/sdc' } }],
    });
  });

  it('every pair option, normalized to copy() options', () => {
    const spec = parseJobFile(
      job([
        {
          name: 'db',
          source: '/dev/sdb',
          targets: ['/dev/sdc', 'backup/db.img'],
          sourceOffset: '1M',
          targetOffset: 4096,
          length: '2x512',
          blockSize: '4M',
          queueDepth: 4,
          direct: { source: 'always', target: 'never' },
          durability: 'fsync',
          createTarget: false,
          truncateTarget: '10M',
          force: true,
          rate: '50M/s',
          background: true,
          noError: true,
          retries: 3,
          mapfile: 'db.map',
          retryBad: true,
          verify: true,
          hash: 'blake2b512',
          zeroBlocks: 'discard',
          onTargetError: 'drop',
        },
      ], { maxQueueDepth: 16, maxBufferMemory: '256M' }),
      FILE,
    );
    expect(spec).toMatchObject({ maxQueueDepth: 16, maxBufferMemory: 256 * MiB, maxQueueDepthIsDefault: false, maxBufferMemoryIsDefault: false });
    expect(spec.pairs[0]).toStrictEqual({
      name: 'db',
      index: 0,
      options: {
        source: '/dev/sdb',
        targets: ['/dev/sdc', '/jobs/nightly/backup/db.img'],
        sourceOffset: MiB,
        targetOffset: 4096,
        length: 1024,
        blockSize: 4 * MiB,
        queueDepth: 4,
        direct: { source: 'always', target: 'never' },
        durability: 'fsync',
        createTarget: false,
        truncateTarget: 10 * MiB,
        force: true,
        rate: 50 * MiB,
        background: true,
        noError: true,
        retries: 3,
        mapfile: '/jobs/nightly/db.map',
        retryBad: true,
        verify: true,
        hash: 'blake2b512',
        zeroBlocks: 'discard',
        onTargetError: 'drop',
      },
    });
  });

  it('defaults are merged under each pair; a pair overrides them, and its maxLength replaces a default length', () => {
    const spec = parseJobFile(
      job(
        [
          { name: 'a', source: '/dev/sdb', target: '/dev/sdc' },
          { name: 'b', source: '/dev/sdd', target: '/dev/sde', blockSize: '64K', maxLength: '1G', direct: 'never' },
        ],
        { defaults: { blockSize: '1M', length: '2G', durability: 'dsync', direct: { target: 'always' }, rate: 0, truncateTarget: true } },
      ),
      FILE,
    );
    expect(spec.pairs.map((p) => p.options)).toStrictEqual([
      { source: '/dev/sdb', target: '/dev/sdc', blockSize: MiB, length: 2 * 1024 * MiB, durability: 'dsync', direct: { target: 'always' }, truncateTarget: true },
      { source: '/dev/sdd', target: '/dev/sde', blockSize: 64 * 1024, maxLength: 1024 * MiB, durability: 'dsync', direct: 'never', truncateTarget: true },
    ]);
  });

  it('rates: sizes per second, numbers, and 0 for unlimited', () => {
    const rate = (value: unknown): number | undefined => parseJobFile(job([pair({ rate: value })]), FILE).pairs[0].options.rate;
    expect(rate('10M')).toBe(10 * MiB);
    expect(rate('1G/s')).toBe(1024 * MiB);
    expect(rate(1_000_000)).toBe(1_000_000);
    expect(rate(0)).toBeUndefined();
    expect(rate('0')).toBeUndefined();
  });

  it('reads several pairs that share a source, with a byte-order mark and CRLF line ends', () => {
    const text = `\ufeff${job([pair({ name: 'one' }), { name: 'two', source: '/dev/sdb', target: '/dev/sdd' }]).replace(/\n/g, '\r\n')}`;
    expect(parseJobFile(text, FILE).pairs.map((p) => p.name)).toStrictEqual(['one', 'two']);
  });
});

describe('the shared budget', () => {
  const spec = (pairs: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}): JobSpec =>
    parseJobFile(job(pairs.map((p, i) => ({ source: `/dev/src${i}`, target: `/dev/dst${i}`, ...p })), extra), FILE);

  it('by default every pair gets its 8 I/Os of 512 KiB', () => {
    // And may grow to the whole job's 24 once the others have finished.
    expect(allocateBudget(spec([{}, {}, {}]))).toStrictEqual(Array(3).fill({ queueDepth: 8, blockSize: 512 * 1024, bufferBytes: 4 * MiB, queueDepthMax: 24 }));
  });

  it('a pair grows only to its own queueDepth when it gives one, and a background pair not at all', () => {
    const a = allocateBudget(spec([{}, { queueDepth: 12 }, { background: true }], { maxQueueDepth: 12 }));
    expect(a.map((x) => [x.queueDepth, x.queueDepthMax])).toStrictEqual([[4, 12], [4, 12], [4, 8]]);
    // Without a queueDepth of its own, never deeper than 32, however large the job's budget.
    expect(allocateBudget(spec([{}, {}], { maxQueueDepth: 200 })).map((x) => x.queueDepthMax)).toStrictEqual([32, 32]);
  });

  it('splits maxQueueDepth evenly, keeping a smaller queueDepth of a pair', () => {
    expect(allocateBudget(spec([{}, { queueDepth: 2 }, { queueDepth: 64 }], { maxQueueDepth: 10 })).map((a) => a.queueDepth)).toStrictEqual([3, 2, 3]);
  });

  it('limits queueDepth × blockSize by each pair\'s share of maxBufferMemory', () => {
    const a = allocateBudget(spec([{ blockSize: '1M', queueDepth: 100 }, { blockSize: '64K', queueDepth: 100 }], { maxQueueDepth: 256, maxBufferMemory: '8M' }));
    expect(a).toStrictEqual([
      { queueDepth: 4, blockSize: MiB, bufferBytes: 4 * MiB, queueDepthMax: 8 },
      { queueDepth: 64, blockSize: 64 * 1024, bufferBytes: 4 * MiB, queueDepthMax: 100 },
    ]);
    // Never more than 1 GiB of buffers for one pair (copy()'s own limit).
    expect(allocateBudget(spec([{ blockSize: '512M', queueDepth: 8 }], { maxBufferMemory: '4G' }))[0].queueDepth).toBe(2);
  });
});

describe('run output lines', () => {
  it('one line per pair and a summary', () => {
    expect(pairLine({ name: 'db', status: 'done', bytesCopied: 64 * MiB, seconds: 0.5, bytesPerSecond: 128 * MiB })).toBe('db: 67108864 bytes (64 MiB) copied in 0.5 s, 134 MB/s');
    expect(pairLine({ name: 'logs', status: 'cancelled', bytesCopied: 512 })).toBe('logs: cancelled after 512 bytes; what was written has been flushed');
    expect(pairLine({ name: 'x', status: 'failed', bytesCopied: 0, error: new Error('boom') })).toBe('x: failed after 0 bytes: boom');
    const outcome = { source: 's', targets: ['t'], queueDepth: 8, blockSize: 512, seconds: 1, bytesPerSecond: 1 };
    expect(
      summaryLine({
        ok: false,
        cancelled: false,
        seconds: 1.25,
        bytesCopied: 2048,
        pairs: [
          { ...outcome, name: 'a', status: 'done', bytesCopied: 2048 },
          { ...outcome, name: 'b', status: 'failed', bytesCopied: 0 },
        ],
      }),
    ).toBe('2 pairs: 1 done, 1 failed; 2048 bytes (2.0 KiB) in 1.25 s');
  });
});
