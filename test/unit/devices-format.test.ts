// The pure parts of `devmove devices`: the lsblk-like table, the info text,
// event lines and the natural order of kernel names.
import { describe, expect, it } from 'vitest';

import { cellText, formatDeviceEvent, formatDeviceInfo, formatDeviceTable, formatProbeNotes } from '../../src/cli/devices-command';
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
    contentProbe: { source: 'libblkid' },
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

const sda = device('sda', { sizeBytes: 500 * GiB, model: 'Samsung SSD 870', serial: 'S5Y1NJ0R', partitions: ['sda1', 'sda2'], ptType: 'gpt', ptUuid: '5c1e5a1e-0000-4000-8000-000000000001' });
const sda1 = device('sda1', {
  type: 'partition',
  disk: 'sda',
  sizeBytes: 512 * 1024 ** 2,
  partition: { number: 1, startBytes: 1024 ** 2, sizeBytes: 512 * 1024 ** 2 },
  fsType: 'vfat',
  fsVersion: 'FAT32',
  label: 'EFI',
  uuid: 'EED4-37A7',
  partType: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b',
  partLabel: 'EFI System Partition',
  partUuid: '0b7c8d52-0000-4000-8000-000000000002',
  partFlags: '0x1',
  fsSizeBytes: 535805952,
  fsAvailableBytes: 500000768,
  fsUsedBytes: 35805184,
  mounts: [
    { mountPoint: '/boot/efi', fsType: 'vfat', readOnly: false },
    { mountPoint: '/mnt/efi copy', fsType: 'vfat', readOnly: true },
  ],
});
const sda2 = device('sda2', { type: 'partition', disk: 'sda', sizeBytes: 499 * GiB, holders: ['dm-0', 'dm-1'], fsType: 'LVM2_member', fsVersion: 'LVM2 001' });
const loop10 = device('loop10', {
  sizeBytes: 64 * 1024 ** 2,
  readOnly: true,
  loop: { backingFile: '/var/tmp/a.img', offsetBytes: 0, sizeLimitBytes: 0 },
  fsType: 'ext4',
  label: 'My Backup',
});
const loop2 = device('loop2', { contentProbe: { source: 'none' } });

describe('formatDeviceTable', () => {
  it('draws partitions under their disk, extra mountpoints on their own lines, and hides empty devices', () => {
    expect(formatDeviceTable([loop10, loop2, sda, sda1, sda2])).toBe(
      [
        'NAME   SIZE    TYPE RO FSTYPE      LABEL     MODEL           SERIAL   MOUNTPOINTS   HOLDERS',
        'loop10 64 MiB  loop 1  ext4        My Backup',
        'sda    500 GiB disk 0                        Samsung SSD 870 S5Y1NJ0R',
        '├─sda1 512 MiB part 0  vfat        EFI                                /boot/efi',
        '│                                                                     /mnt/efi copy',
        '└─sda2 499 GiB part 0  LVM2_member                                                  dm-0,dm-1',
        '',
      ].join('\n'),
    );
  });

  it('shows empty devices with all', () => {
    const text = formatDeviceTable([loop2], { all: true });
    expect(text.split('\n')[1]).toBe('loop2 0 B  loop 0');
  });

  it('prints only the header when there is nothing', () => {
    expect(formatDeviceTable([])).toBe('NAME SIZE TYPE RO FSTYPE LABEL MODEL SERIAL MOUNTPOINTS HOLDERS\n');
  });

  it('prints control characters in labels and mount points as \\xNN, one device per line', () => {
    const odd = device('sdb', { sizeBytes: GiB, fsType: 'ext4', label: 'a\nb\tc\x7f', mounts: [{ mountPoint: '/mnt/x\ny', fsType: 'ext4', readOnly: false }] });
    const [, row, extra] = formatDeviceTable([odd]).split('\n');
    expect(row).toBe('sdb  1.0 GiB disk 0  ext4   a\\x0ab\\x09c\\x7f              /mnt/x\\x0ay');
    expect(extra).toBe('');
    expect(cellText('Sauvegarde été')).toBe('Sauvegarde été');
    expect(cellText(undefined)).toBe('');
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

  it('shows the content fields, where they came from, queue facts, access and filesystem usage', () => {
    const text = formatDeviceInfo({
      ...sda1,
      minIoBytes: 4096,
      optIoBytes: 0,
      discardGranularityBytes: 4096,
      discardMaxBytes: 2 * GiB,
      scheduler: 'mq-deadline',
      readAheadBytes: 128 * 1024,
      zoned: 'none',
      owner: 'root',
      group: 'disk',
      mode: 'brw-rw----',
    });
    for (const line of [
      'fstype:              vfat',
      'fs version:          FAT32',
      'label:               EFI',
      'uuid:                EED4-37A7',
      'partition type:      c12a7328-f81f-11d2-ba4b-00a0c93ec93b',
      'partition label:     EFI System Partition',
      'partition uuid:      0b7c8d52-0000-4000-8000-000000000002',
      'partition flags:     0x1',
      'contents from:       libblkid',
      'minimum I/O size:    4.0 KiB (4096 bytes)',
      'optimal I/O size:    0 bytes',
      'discard granularity: 4.0 KiB (4096 bytes)',
      'discard maximum:     2.0 GiB (2147483648 bytes)',
      'scheduler:           mq-deadline',
      'read-ahead:          128 KiB (131072 bytes)',
      'zoned:               none',
      'owner:               root',
      'group:               disk',
      'mode:                brw-rw----',
      'fs size:             511 MiB (535805952 bytes)',
      'fs available:        477 MiB (500000768 bytes)',
      'fs used:             34 MiB (35805184 bytes)',
    ]) {
      expect(text).toContain(`${line}\n`);
    }
    expect(formatDeviceInfo(sda)).toContain('partition table:     gpt, id 5c1e5a1e-0000-4000-8000-000000000001\n');
    expect(formatDeviceInfo(sda)).not.toMatch(/^(fstype|label|uuid|partition type|scheduler|owner|fs size):/m);
  });

  it('says why the content is unknown', () => {
    const error = { code: 'EACCES', errno: -13, syscall: 'open', path: '/dev/sdb', message: "EACCES: permission denied, open '/dev/sdb'" };
    expect(formatDeviceInfo(device('sdb', { contentProbe: { source: 'libblkid', error } }))).toContain(
      "contents from:       unknown: EACCES: permission denied, open '/dev/sdb'\n",
    );
    expect(formatDeviceInfo(loop2)).toContain('contents from:       not probed (empty device)\n');
    expect(formatDeviceInfo(device('sdc', { contentProbe: { source: 'udev' } }))).toContain('contents from:       udev database\n');
    expect(formatDeviceInfo(device('sdd', { contentProbe: { source: 'libblkid', ambiguous: true } }))).toContain(
      'contents from:       libblkid: more than one signature, none reported (see wipefs)\n',
    );
  });
});

describe('formatProbeNotes', () => {
  const failed = (name: string, code: string, message: string): Device =>
    device(name, { contentProbe: { source: 'libblkid', error: { code, errno: -1, syscall: 'open', message } } });

  it('prints nothing when every probe worked', () => {
    expect(formatProbeNotes([sda, sda1, loop2])).toEqual([]);
  });

  it('groups failures by code, names at most six devices, and names no device when the library is missing', () => {
    const denied = ['sda', 'sda1', 'sdb', 'sdb1', 'sdc', 'sdd', 'sde', 'sdf'].map((n) => failed(n, 'EACCES', `EACCES: permission denied, open '/dev/${n}'`));
    expect(formatProbeNotes([...denied, failed('vda', 'EPERM', "EPERM: operation not permitted, open '/dev/vda'"), sda1])).toEqual([
      "devmove: FSTYPE, LABEL and UUID unknown for sda, sda1, sdb, sdb1, sdc, sdd and 2 more: EACCES: permission denied, open '/dev/sda'",
      "devmove: FSTYPE, LABEL and UUID unknown for vda: EPERM: operation not permitted, open '/dev/vda'",
    ]);
    const missing = "ELIBACC: cannot access a needed shared library, dlopen 'libblkid.so.1': libblkid.so.1 is not available: install the libblkid1 package";
    expect(formatProbeNotes([failed('sda', 'ELIBACC', missing), failed('sdb', 'ELIBACC', missing)])).toEqual([`devmove: FSTYPE, LABEL and UUID unknown: ${missing}`]);
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
