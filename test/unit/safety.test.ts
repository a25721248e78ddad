// assessCopy() on injected kernel facts: the cases a test kernel cannot be
// made to show on demand (holders need device-mapper or md, which this CI
// kernel lacks; overlapping partitions are refused by BLKPG).
import { describe, expect, it } from 'vitest';

import type { MountEntry } from '../../src/storage/mountinfo';
import { assessCopy, type SideFacts } from '../../src/storage/safety';
import type { BlockInfo } from '../../src/storage/sysfs';

const MiB = 1024 * 1024;

function block(name: string, minor: number, extra: Partial<BlockInfo> = {}): BlockInfo {
  return {
    name,
    devnode: `/dev/${name}`,
    major: 8,
    minor,
    devno: `8:${minor}`,
    type: 'disk',
    sizeBytes: 100 * MiB,
    logicalBlockBytes: 512,
    physicalBlockBytes: 4096,
    readOnly: false,
    removable: false,
    rotational: false,
    partitions: [],
    holders: [],
    slaves: [],
    sysPath: `/sys/devices/virtual/block/${name}`,
    ...extra,
  };
}

const sda = block('sda', 0, { partitions: ['sda1', 'sda2'] });
const sda1 = block('sda1', 1, { type: 'partition', disk: 'sda', partition: { number: 1, startBytes: 1 * MiB, sizeBytes: 40 * MiB } });
// Overlapping partitions, as a hand-edited table can have them:
const sda2 = block('sda2', 2, { type: 'partition', disk: 'sda', partition: { number: 2, startBytes: 30 * MiB, sizeBytes: 40 * MiB } });
const sdb = block('sdb', 16);

function side(b: BlockInfo, disk: BlockInfo = b, partitions: BlockInfo[] = []): SideFacts {
  return { path: b.devnode, kind: 'block', block: b, disk, partitions, sizeBytes: b.sizeBytes };
}

function mountOf(b: BlockInfo, readOnly: boolean): MountEntry {
  return {
    mountId: 1,
    parentId: 0,
    major: b.major,
    minor: b.minor,
    root: '/',
    mountPoint: '/mnt/data',
    options: [readOnly ? 'ro' : 'rw'],
    fsType: 'xfs',
    source: b.devnode,
    superOptions: [],
    readOnly,
  };
}

describe('assessCopy', () => {
  it('allows a plain device-to-device copy', () => {
    expect(assessCopy(side(sdb), 0, side(sda, sda, [sda1, sda2]), 0, 10 * MiB, [], false)).toBeUndefined();
  });

  it('refuses overlapping partitions of one disk, and allows their disjoint parts', () => {
    // sda1 bytes 29–31 MiB are disk bytes 30–32 MiB = sda2 bytes 0–2 MiB.
    const r = assessCopy(side(sda1, sda), 29 * MiB, side(sda2, sda), 0, 2 * MiB, [], true);
    expect(r).toMatchObject({ errno: 22, path: '/dev/sda2' });
    expect(r?.detail).toMatch(/^target and source \/dev\/sda1 are partitions of one disk, and the byte ranges overlap/);
    expect(assessCopy(side(sda1, sda), 0, side(sda2, sda), 20 * MiB, 2 * MiB, [], false)).toBeUndefined();
  });

  it('refuses a target held by device-mapper (holders), unless forced', () => {
    const held = block('sdc', 32, { holders: ['dm-0', 'dm-1'] });
    expect(assessCopy(side(sdb), 0, side(held), 0, MiB, [], false)).toEqual({
      errno: 16,
      path: '/dev/sdc',
      detail: 'the device is in use by dm-0 (on sdc), dm-1 (on sdc): LVM, md or device-mapper hold it; stop them, or use --force',
    });
    expect(assessCopy(side(sdb), 0, side(held), 0, MiB, [], true)).toBeUndefined();
  });

  it("refuses a disk whose partition is held by md (the partition's holders count)", () => {
    const part = block('sdd1', 49, { type: 'partition', disk: 'sdd', holders: ['md0'], partition: { number: 1, startBytes: MiB, sizeBytes: MiB } });
    const disk = block('sdd', 48, { partitions: ['sdd1'] });
    expect(assessCopy(side(sdb), 0, side(disk, disk, [part]), 0, MiB, [], false)?.detail).toMatch(/^the device is in use by md0 \(on sdd1\)/);
  });

  it('a read-write mount is never overridable; a read-only one is with force', () => {
    expect(assessCopy(side(sdb), 0, side(sda, sda, [sda1, sda2]), 0, MiB, [mountOf(sda1, false)], true)?.detail).toBe(
      '/dev/sda1 is mounted at /mnt/data (xfs, read-write); unmount it first',
    );
    expect(assessCopy(side(sdb), 0, side(sda, sda, [sda1, sda2]), 0, MiB, [mountOf(sda1, true)], false)?.detail).toMatch(
      /^\/dev\/sda1 is mounted read-only at \/mnt\/data \(xfs\); unmount it, or use --force/,
    );
    expect(assessCopy(side(sdb), 0, side(sda, sda, [sda1, sda2]), 0, MiB, [mountOf(sda1, true)], true)).toBeUndefined();
  });

  it('a partition whose whole disk is mounted is refused', () => {
    expect(assessCopy(side(sdb), 0, side(sda1, sda), 0, MiB, [mountOf(sda, false)], false)?.detail).toBe(
      '/dev/sda is mounted at /mnt/data (xfs, read-write); unmount it first',
    );
  });

  it('a read-only device is refused even with force', () => {
    const ro = block('sde', 64, { readOnly: true });
    expect(assessCopy(side(sdb), 0, side(ro), 0, MiB, [], true)).toMatchObject({ errno: 30 });
  });

  it('the same device is refused even for an empty copy; regular files that are not the same pass', () => {
    expect(assessCopy(side(sdb), 0, side(sdb), 0, 0, [], true)?.detail).toMatch(/^target is the same device as the source/);
    const a: SideFacts = { path: 'a.img', kind: 'file', fileId: '1:2', sizeBytes: MiB };
    const b: SideFacts = { path: 'b.img', kind: 'file', fileId: '1:3', sizeBytes: MiB };
    expect(assessCopy(a, 0, b, 0, MiB, [], false)).toBeUndefined();
    expect(assessCopy(a, 0, { ...a, path: './a.img' }, MiB / 2, MiB, [], true)?.detail).toMatch(/^target is the same file as the source a\.img, and the byte ranges overlap/);
  });
});
