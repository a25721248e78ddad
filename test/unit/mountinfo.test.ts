import { describe, expect, it } from 'vitest';

import { mountsOf, parseMountInfo } from '../../src/storage/mountinfo';

// Lines in the format of proc(5), including optional fields and escaped spaces.
const SAMPLE = [
  '22 27 0:21 / /proc rw,relatime - proc proc rw',
  '36 27 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard',
  '97 36 7:3 / /mnt/my\\040disk ro,nosuid master:4 propagation_from:2 - ext4 /dev/loop3 ro,errors=remount-ro',
  '98 36 7:4 /sub /srv rw - xfs /dev/loop4 ro',
  'garbage line without separator',
].join('\n');

describe('parseMountInfo', () => {
  const entries = parseMountInfo(SAMPLE);

  it('parses every well-formed line and skips malformed ones', () => {
    expect(entries).toHaveLength(4);
  });

  it('reads device numbers, mount point, fs type, source and options', () => {
    expect(entries[1]).toMatchObject({ mountId: 36, parentId: 27, major: 254, minor: 0, mountPoint: '/', fsType: 'ext4', source: '/dev/vda', readOnly: false });
  });

  it('unescapes octal sequences and skips optional fields', () => {
    expect(entries[2]).toMatchObject({ mountPoint: '/mnt/my disk', fsType: 'ext4', source: '/dev/loop3', readOnly: true, options: ['ro', 'nosuid'] });
  });

  it('treats a read-only superblock as read-only even when the mount says rw', () => {
    expect(entries[3]).toMatchObject({ root: '/sub', readOnly: true });
  });

  it('mountsOf selects by device number', () => {
    expect(mountsOf(7, 3, entries).map((e) => e.mountPoint)).toEqual(['/mnt/my disk']);
    expect(mountsOf(9, 9, entries)).toEqual([]);
  });
});
