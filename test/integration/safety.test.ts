// copy() refuses, before the first write, every target that would destroy the
// wrong data — on real kernel objects the test makes: a mounted ext4, a
// partitioned loop device, one image file mapped twice. Each test checks that
// the target's bytes are unchanged afterwards.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { copy, DevmoveError } from '../../src/index';
import { attachLoop, detachAll, makeImage, mount, sha256Range, skipWithoutLoop, tempDir, unmount, writeMbr } from '../helpers/devices';

const MiB = 1024 * 1024;

async function refused(promise: Promise<unknown>): Promise<DevmoveError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DevmoveError);
  return error as DevmoveError;
}

const hasMkfs = (() => {
  try {
    execFileSync('mkfs.ext4', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(skipWithoutLoop)('safety checks before the first write', () => {
  let dir: string;
  let source: string;
  beforeAll(() => {
    dir = tempDir();
    source = attachLoop(makeImage(dir, 'source.img', 16 * MiB));
  });
  afterAll(detachAll);

  it.skipIf(!hasMkfs)('a target with a read-write mounted filesystem: refused, even with force', async () => {
    const target = attachLoop(makeImage(dir, 'fs.img', 32 * MiB, 'zero'));
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', target]);
    const mnt = mount(target);
    // Frozen (still mounted read-write): ext4's own journal commits after the mount can no longer
    // change the device while it is compared, so any change would be devmove's (a commit landing
    // between the two reads failed this once in a full run).
    execFileSync('fsfreeze', ['--freeze', mnt]);
    try {
      const before = sha256Range(target, 0, 32 * MiB);
      for (const force of [false, true]) {
        const error = await refused(copy({ source, target, force }).promise);
        expect(error).toMatchObject({ code: 'EBUSY', operation: 'copy', path: target, bytesCopied: 0 });
        expect(error.syscall).toBeUndefined();
        expect(error.detail).toBe(`${target} is mounted at ${mnt} (ext4, read-write); unmount it first`);
      }
      expect(sha256Range(target, 0, 32 * MiB)).toBe(before);
    } finally {
      execFileSync('fsfreeze', ['--unfreeze', mnt]);
      unmount(mnt);
    }
  });

  it.skipIf(!hasMkfs)('a target mounted read-only: refused without force, written with force', async () => {
    const target = attachLoop(makeImage(dir, 'ro-fs.img', 32 * MiB, 'zero'));
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', target]);
    const mnt = mount(target, ['ro']);
    try {
      const before = sha256Range(target, 0, 32 * MiB);
      const error = await refused(copy({ source, target }).promise);
      expect(error.code).toBe('EBUSY');
      expect(error.detail).toBe(`${target} is mounted read-only at ${mnt} (ext4); unmount it, or use --force to write under the mounted filesystem`);
      expect(sha256Range(target, 0, 32 * MiB)).toBe(before);
      // Forced: written (past the filesystem's first 16 MiB would be kinder; this device is the test's own).
      const result = await copy({ source, target, targetOffset: 16 * MiB, force: true });
      expect(result.bytesCopied).toBe(16 * MiB);
      expect(sha256Range(target, 16 * MiB, 16 * MiB)).toBe(sha256Range(source, 0, 16 * MiB));
    } finally {
      unmount(mnt);
    }
  });

  it.skipIf(!hasMkfs)('a whole disk whose partition is mounted: refused', async () => {
    const image = makeImage(dir, 'parted-mnt.img', 64 * MiB, 'zero');
    writeMbr(image, [{ startSector: 2048, sectors: 40960 }]);
    const disk = attachLoop(image, { partscan: true });
    const part = `${disk}p1`;
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', part]);
    const mnt = mount(part);
    try {
      const error = await refused(copy({ source, target: disk, targetOffset: 40 * MiB }).promise);
      expect(error.detail).toBe(`${part} is mounted at ${mnt} (ext4, read-write); unmount it first`);
    } finally {
      unmount(mnt);
    }
  });

  describe('a partitioned loop device', () => {
    let disk: string;
    let p1: string;
    let p2: string;
    let diskHash: string;
    const P1_START = 1 * MiB;
    const P2_START = 9 * MiB;
    beforeAll(() => {
      const image = makeImage(dir, 'parted.img', 24 * MiB, { pattern: 0x44 });
      writeMbr(image, [
        { startSector: P1_START / 512, sectors: (8 * MiB) / 512 },
        { startSector: P2_START / 512, sectors: (8 * MiB) / 512 },
      ]);
      disk = attachLoop(image, { partscan: true });
      p1 = `${disk}p1`;
      p2 = `${disk}p2`;
      expect(fs.existsSync(p1) && fs.existsSync(p2)).toBe(true);
      diskHash = sha256Range(disk, 0, 24 * MiB);
    });

    it('whole disk → its own partition, overlapping: refused', async () => {
      const error = await refused(copy({ source: disk, target: p1, length: 4 * MiB }).promise);
      expect(error).toMatchObject({ code: 'EINVAL', path: p1 });
      expect(error.detail).toMatch(/^target is a partition of the source disk .*, and the byte ranges overlap \(source bytes 0–4194304, target bytes 1048576–5242880/);
      expect(sha256Range(disk, 0, 24 * MiB)).toBe(diskHash);
    });

    it('partition → its whole disk, overlapping: refused', async () => {
      const error = await refused(copy({ source: p2, target: disk, targetOffset: P2_START + MiB, length: 2 * MiB }).promise);
      expect(error.detail).toMatch(/^target is the whole disk holding the source partition/);
      expect(sha256Range(disk, 0, 24 * MiB)).toBe(diskHash);
    });

    it('whole disk → partition, disjoint ranges on the disk: refused only where they overlap', async () => {
      // Disk bytes 8–10 MiB overlap p2, which starts at disk byte 9 MiB.
      const overlapping = await refused(copy({ source: disk, target: p2, sourceOffset: 8 * MiB, length: 2 * MiB }).promise);
      expect(overlapping.detail).toMatch(/^target is a partition of the source disk .*, and the byte ranges overlap \(source bytes 8388608–10485760, target bytes 9437184–11534336/);
      expect(sha256Range(disk, 0, 24 * MiB)).toBe(diskHash);
      const disjoint = await copy({ source: disk, target: p2, sourceOffset: 20 * MiB, length: MiB });
      expect(disjoint.bytesCopied).toBe(MiB);
    });

    it('partition → another partition of the same disk (disjoint by construction): copied', async () => {
      // Partitions that overlap cannot be made here: the kernel refuses them through BLKPG;
      // that case is unit-tested with injected facts (test/unit/safety.test.ts).
      expect(sha256Range(disk, 0, 24 * MiB)).toBe(diskHash);
      const ok = await copy({ source: p1, target: p2, length: 4 * MiB });
      expect(ok.bytesCopied).toBe(4 * MiB);
      expect(sha256Range(p2, 0, 4 * MiB)).toBe(sha256Range(p1, 0, 4 * MiB));
    });
  });

  it('one image file mapped twice: refused when the bytes overlap, allowed when disjoint', async () => {
    const image = makeImage(dir, 'twice.img', 16 * MiB);
    const a = attachLoop(image);
    const b = attachLoop(image);
    const before = sha256Range(image, 0, 16 * MiB);
    const error = await refused(copy({ source: a, target: b }).promise);
    expect(error.detail).toMatch(new RegExp(`^target and source ${a} are the same image file, and the byte ranges overlap`));
    // The file itself against a loop device over it.
    const error2 = await refused(copy({ source: image, target: b, length: MiB, targetOffset: MiB / 2 }).promise);
    expect(error2.detail).toMatch(/same image file, and the byte ranges overlap/);
    expect(sha256Range(image, 0, 16 * MiB)).toBe(before);
    const ok = await copy({ source: a, target: b, length: 4 * MiB, targetOffset: 8 * MiB });
    expect(ok.bytesCopied).toBe(4 * MiB);
  });

  it('the same device under two names (node and symlink): refused', async () => {
    const target = attachLoop(makeImage(dir, 'same.img', 16 * MiB));
    const link = `${dir}/alias`;
    fs.symlinkSync(target, link);
    const error = await refused(copy({ source: link, target }).promise);
    expect(error.detail).toMatch(/^target is the same device as the source/);
  });
});
