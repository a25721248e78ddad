// The pure parts of `devmove devices`: the lsblk-like table, the info text,
// event lines and the natural order of kernel names.
import { describe, expect, it } from 'vitest';

import { formatDeviceEvent, formatDeviceInfo, formatDeviceTable } from '../../src/cli/devices-command';
import { compareNames, type Device, type DeviceEvent } from '../../src/devices/manager';

const GiB = 1024 ** 3;

function device(name: string, over: Partial<Device> = {}): Device {
  return {
    name,
    path: `/dev/${name}`,
    major: 8,
    minor: 0,
    devno: '8:0',
    type: 'disk',
    sizeBytes: 0,
    logicalBlockBytes: 512,
    physicalBlockBytes: 4096,
    readOnly: false,
    removable: false,
    rotational: true,
    links: [],
    partitions: [],
    holders: [],
    slaves: [],
    mounts: [],
    sysPath: `/sys/devices/x/block/${name}`,
    udev: { initialized: false, properties: {} },
    ...over,
  };
}

const sda = device('sda', { sizeBytes: 500 * GiB, model: 'Samsung SSD 870', serial: 'S5Y1NJ0R', partitions: ['sda1', 'sda2'] });
const sda1 = device('sda1', {
  type: 'partition',
  disk: 'sda',
  sizeBytes: 512 * 1024 ** 2,
  partition: { number: 1, startBytes: 1024 ** 2, sizeBytes: 512 * 1024 ** 2 },
  mounts: [
    { mountPoint: '/boot/efi', fsType: 'vfat', readOnly: false },
    { mountPoint: '/mnt/efi copy', fsType: 'vfat', readOnly: true },
  ],
});
const sda2 = device('sda2', { type: 'partition', disk: 'sda', sizeBytes: 499 * GiB, holders: ['dm-0', 'dm-1'] });
const loop10 = device('loop10', { sizeBytes: 64 * 1024 ** 2, readOnly: true, loop: { backingFile: '/var/tmp/a.img', offsetBytes: 0, sizeLimitBytes: 0 } });
const loop2 = device('loop2');

describe('formatDeviceTable', () => {
  it('draws partitions under their disk, extra mountpoints on their own lines, and hides empty devices', () => {
    expect(formatDeviceTable([loop10, loop2, sda, sda1, sda2])).toBe(
      [
        'NAME   SIZE    TYPE RO MODEL           SERIAL   MOUNTPOINTS   HOLDERS',
        'loop10 64 MiB  loop 1',
        'sda    500 GiB disk 0  Samsung SSD 870 S5Y1NJ0R',
        '├─sda1 512 MiB part 0                           /boot/efi',
        '│                                               /mnt/efi copy',
        '└─sda2 499 GiB part 0                                         dm-0,dm-1',
        '',
      ].join('\n'),
    );
  });

  it('shows empty devices with all', () => {
    const text = formatDeviceTable([loop2], { all: true });
    expect(text.split('\n')[1]).toBe('loop2 0 B  loop 0');
  });

  it('prints only the header when there is nothing', () => {
    expect(formatDeviceTable([])).toBe('NAME SIZE TYPE RO MODEL SERIAL MOUNTPOINTS HOLDERS\n');
  });
});

describe('formatDeviceInfo', () => {
  it('lists what is known and leaves out what is not', () => {
    const text = formatDeviceInfo(sda1);
    expect(text).toContain('partition:           number 1, starts at byte 1048576, 512 MiB (536870912 bytes)\n');
    expect(text).toContain('mounted:             /mnt/efi copy (vfat, ro)\n');
    expect(text).not.toMatch(/^(model|serial|wwn|links):/m);
    expect(formatDeviceInfo(loop10)).toContain('loop backing file:   /var/tmp/a.img\n');
  });
});

describe('formatDeviceEvent', () => {
  it('prints one line per event', () => {
    const change: DeviceEvent = { action: 'change', source: 'kernel', seqnum: 7, properties: {}, present: true, device: loop10 };
    expect(formatDeviceEvent(change)).toBe('change loop10 8:0 disk 64 MiB loop=/var/tmp/a.img');
    const remove: DeviceEvent = {
      action: 'remove',
      source: 'kernel',
      properties: {},
      present: false,
      device: { name: 'zram1', path: '/dev/zram1', major: 253, minor: 1, devno: '253:1', type: 'disk', sysPath: '/sys/devices/virtual/block/zram1' },
    };
    expect(formatDeviceEvent(remove)).toBe('remove zram1 253:1 disk');
  });
});

describe('compareNames', () => {
  it('orders kernel names naturally, partitions right after their disk', () => {
    const names = ['sdb', 'loop10', 'nvme0n1p10', 'loop2', 'sda2', 'nvme0n1', 'sda', 'nvme0n1p2', 'sda1', 'dm-0', 'loop0p1', 'loop0'];
    expect([...names].sort(compareNames)).toEqual([
      'dm-0',
      'loop0',
      'loop0p1',
      'loop2',
      'loop10',
      'nvme0n1',
      'nvme0n1p2',
      'nvme0n1p10',
      'sda',
      'sda1',
      'sda2',
      'sdb',
    ]);
  });
});
