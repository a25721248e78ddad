// --domain-mapfile (GNU ddrescue's option and format): a copy reads and writes
// only what the domain marks finished. The domain comes from
// `partclone.extfs -D` over a real ext4 filesystem with files written (and
// some deleted) through a real mount; the copy must read only those used
// blocks (counted in /sys/block/<dev>/stat), leave the rest of the target as
// it was, and `e2fsck -fn` plus every file's checksum on the copy must prove
// the filesystem whole — in one run, and resumed from a --mapfile after a
// cancel.
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { copy, CopyAbortError, planCopy, type CopyResult } from '../../src/index';
import { RescueMap } from '../../src/resume/mapfile';
import { attachLoop, detachAll, detachLoop, makeImage, mount, readRange, skipWithoutLoop, tempDir, unmount } from '../helpers/devices';
import { sectorsRead } from '../helpers/outcome';

const KiB = 1024;
const MiB = 1024 * KiB;
const haveTools = ['partclone.extfs', 'mkfs.ext4', 'e2fsck'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);

function settle(): void {
  spawnSync('udevadm', ['settle', '--timeout=10']);
}

/** An image of pseudo-random bytes fixed by `seed` (AES-128-CTR over zeros: fast for 128 MiB). */
function garbageImage(dir: string, name: string, bytes: number, seed: string): string {
  const key = crypto.createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.concat([cipher.update(Buffer.alloc(bytes)), cipher.final()]));
  return file;
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

interface Filesystem {
  image: string;
  domain: string;
  domainBytes: number;
  files: Map<string, string>;
}

/** A 128 MiB ext4 image with ~12 MiB of files written through a mount, some deleted again. */
function makeFilesystem(dir: string): Filesystem {
  const image = makeImage(dir, 'fs.img', 128 * MiB, 'zero');
  const device = attachLoop(image);
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', device]);
  const mnt = mount(device);
  const files = new Map<string, string>();
  try {
    for (let i = 0; i < 24; i++) {
      const name = path.join('d' + (i % 4), `f${i}`);
      fs.mkdirSync(path.join(mnt, path.dirname(name)), { recursive: true });
      const bytes = crypto.createHash('sha256').update(`file-${i}`).digest().readUInt32LE(0) % (1 * MiB) + 1;
      fs.writeFileSync(path.join(mnt, name), crypto.randomBytes(bytes));
      files.set(name, sha256(path.join(mnt, name)));
    }
    // Deleted files leave stale data in free blocks: the domain leaves them out.
    for (const name of ['d0/f0', 'd1/f5', 'd2/f10']) {
      fs.rmSync(path.join(mnt, name));
      files.delete(name);
    }
  } finally {
    unmount(mnt);
  }
  const domain = path.join(dir, 'used.map');
  execFileSync('partclone.extfs', ['-D', '-s', device, '-o', domain], { stdio: 'ignore' });
  detachLoop(device);
  const map = RescueMap.load(domain);
  return { image, domain, domainBytes: map?.bytes('+') ?? 0, files };
}

/** e2fsck finds nothing to fix, and every file reads back with its checksum. */
function expectWhole(device: string, files: Map<string, string>): void {
  const fsck = spawnSync('e2fsck', ['-fn', device], { encoding: 'utf8' });
  expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
  const mnt = mount(device, ['ro']);
  try {
    for (const [name, digest] of files) expect(sha256(path.join(mnt, name)), name).toBe(digest);
  } finally {
    unmount(mnt);
  }
}

describe.skipIf(skipWithoutLoop || !haveTools)('--domain-mapfile from partclone.extfs -D over a real ext4', () => {
  let dir: string;
  let fsys: Filesystem;
  beforeAll(() => {
    dir = tempDir();
    fsys = makeFilesystem(dir);
  });
  afterAll(() => detachAll());

  it('the domain is a small part of the filesystem (else this test proves nothing)', (ctx) => {
    ctx.annotate(`domain: ${fsys.domainBytes} of ${128 * MiB} bytes`);
    expect(fsys.domainBytes).toBeGreaterThan(8 * MiB);
    expect(fsys.domainBytes).toBeLessThan(0.25 * 128 * MiB);
  });

  it('reads only the used blocks, leaves the rest of the target as it was, and the copy is a whole filesystem', async () => {
    const src = attachLoop(fsys.image);
    const dstImage = garbageImage(dir, 'dst.img', 128 * MiB, 'garbage');
    const dst = attachLoop(dstImage);
    settle();
    const before = sectorsRead(src);
    const result: CopyResult = await copy({ source: src, target: dst, domainMapfile: fsys.domain, verify: true });
    const readBytes = (sectorsRead(src) - before) * 512;
    expect(result.domain).toEqual({ path: fsys.domain, bytes: fsys.domainBytes });
    expect(result.bytesCopied).toBe(fsys.domainBytes);
    // Reads: the domain, and (for verify) the domain again; nothing outside it.
    expect(readBytes).toBeGreaterThanOrEqual(fsys.domainBytes);
    expect(readBytes).toBeLessThanOrEqual(2 * fsys.domainBytes + MiB);
    expect(result.verify?.bytesCompared).toBe(fsys.domainBytes);
    // Outside the domain the target still holds its old bytes.
    const outside = RescueMap.load(fsys.domain)!.gaps(['+'], 0, 128 * MiB).find(([, l]) => l >= 64 * KiB)!;
    expect(readRange(dst, outside[0], 64 * KiB).equals(readRange(dstImage, outside[0], 64 * KiB))).toBe(true);
    expect(readRange(dst, outside[0], 64 * KiB).equals(readRange(fsys.image, outside[0], 64 * KiB))).toBe(false);
    expectWhole(dst, fsys.files);
    detachLoop(src);
    detachLoop(dst);
  });

  it('to a new image file: the file gets the whole size, holes outside the domain', async () => {
    const target = path.join(dir, 'copy.img');
    const result = await copy({ source: fsys.image, target, domainMapfile: fsys.domain });
    expect(result.bytesCopied).toBe(fsys.domainBytes);
    expect(fs.statSync(target).size).toBe(128 * MiB);
    const dst = attachLoop(target);
    expectWhole(dst, fsys.files);
    detachLoop(dst);
  });

  it('with --mapfile: cancelled, then resumed; reads stay within the domain; the map finishes the domain only', async () => {
    const src = attachLoop(fsys.image);
    const dst = attachLoop(garbageImage(dir, 'dst2.img', 128 * MiB, 'garbage-2'));
    const map = path.join(dir, 'rescue.map');
    settle();
    const before = sectorsRead(src);
    const controller = new AbortController();
    const first = copy({
      source: src, target: dst, domainMapfile: fsys.domain, mapfile: map, rate: 8 * MiB, checkpointInterval: 100, signal: controller.signal,
      onProgress: (p) => {
        if (p.bytesDone >= fsys.domainBytes / 3) controller.abort();
      },
    });
    await expect(first.promise).rejects.toBeInstanceOf(CopyAbortError);
    const firstDone = RescueMap.load(map)!.bytes('+');
    expect(firstDone).toBeGreaterThan(0);
    expect(firstDone).toBeLessThan(fsys.domainBytes);
    const second = await copy({ source: src, target: dst, domainMapfile: fsys.domain, mapfile: map });
    const readBytes = (sectorsRead(src) - before) * 512;
    expect(second.mapfile).toMatchObject({ resumed: true, previouslyFinished: firstDone, finished: fsys.domainBytes, bad: 0, nonTried: 0 });
    expect(second.bytesCopied).toBe(fsys.domainBytes - firstDone);
    // The first run may have read up to a ring of buffers past its last checkpoint.
    expect(readBytes).toBeLessThanOrEqual(fsys.domainBytes + 16 * MiB);
    const after = RescueMap.load(map)!;
    expect(after.bytes('+')).toBe(fsys.domainBytes);
    expect(after.ranges(['+'])).toEqual(RescueMap.load(fsys.domain)!.ranges(['+']));
    expectWhole(dst, fsys.files);
  });

  it('a domain that is missing or not a mapfile is refused before anything is written; --hash needs every byte', async () => {
    const target = path.join(dir, 'never.img');
    await expect(copy({ source: fsys.image, target, domainMapfile: path.join(dir, 'nope.map') }).promise).rejects.toMatchObject({
      code: 'EMAPFILE', message: expect.stringMatching(/domain mapfile .*nope\.map does not exist/),
    });
    fs.writeFileSync(path.join(dir, 'junk.map'), 'hello\n');
    await expect(copy({ source: fsys.image, target, domainMapfile: path.join(dir, 'junk.map') }).promise).rejects.toMatchObject({ code: 'EMAPFILE' });
    expect(fs.existsSync(target)).toBe(false);
    expect(() => planCopy({ source: fsys.image, target, domainMapfile: fsys.domain, hash: 'sha256' })).toThrow(/options\.hash needs every byte/);
  });
});
