// The pure parts of the content probe and the node facts: udev and libblkid results mapped to
// lsblk's fields, udev's \xNN encoding, `ls -l` mode strings and the selected I/O scheduler.
import { describe, expect, it } from 'vitest';

import { contentFromBlkid, contentFromUdev, decodeUdevEnc } from '../../src/devices/content';
import { modeString } from '../../src/devices/facts';
import { parseScheduler } from '../../src/storage/sysfs';

describe('contentFromUdev', () => {
  it('maps the udev database properties of a formatted GPT partition as lsblk reads them', () => {
    expect(
      contentFromUdev({
        ID_FS_TYPE: 'ext4',
        ID_FS_VERSION: '1.0',
        ID_FS_LABEL: 'My_Backup',
        ID_FS_LABEL_ENC: 'My\\x20Backup',
        ID_FS_UUID_ENC: 'da87d749-8ec0-4351-b1b7-f1e45dac5eb7',
        ID_PART_ENTRY_SCHEME: 'gpt',
        ID_PART_ENTRY_NAME: 'backup\\x20data',
        ID_PART_ENTRY_TYPE: '0fc63daf-8483-4772-8e79-3d69d8477de4',
        ID_PART_ENTRY_UUID: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
        ID_PART_ENTRY_FLAGS: '0x1',
        ID_PART_TABLE_TYPE: 'gpt',
        ID_PART_TABLE_UUID: '11111111-2222-3333-4444-555555555555',
      }),
    ).toEqual({
      fsType: 'ext4',
      fsVersion: '1.0',
      label: 'My Backup',
      uuid: 'da87d749-8ec0-4351-b1b7-f1e45dac5eb7',
      ptType: 'gpt',
      ptUuid: '11111111-2222-3333-4444-555555555555',
      partType: '0fc63daf-8483-4772-8e79-3d69d8477de4',
      partLabel: 'backup data',
      partUuid: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
      partFlags: '0x1',
    });
  });

  it('is undefined when udev found nothing or did not probe, so the device is probed instead', () => {
    expect(contentFromUdev({ DEVNAME: '/dev/sdb', DEVTYPE: 'disk', ID_MODEL: 'Disk' })).toBeUndefined();
    expect(contentFromUdev({ ID_FS_TYPE: '' })).toBeUndefined();
    expect(contentFromUdev({ ID_PART_TABLE_TYPE: 'dos' })).toEqual({ ptType: 'dos' });
  });
});

describe('decodeUdevEnc', () => {
  it('decodes \\xNN escapes to UTF-8 and leaves other text alone', () => {
    expect(decodeUdevEnc('Sauv\\x20\\xc3\\xa9t\\xc3\\xa9')).toBe('Sauv été');
    expect(decodeUdevEnc('plain')).toBe('plain');
    expect(decodeUdevEnc('déjà\\x20vu')).toBe('déjà\\x20vu'); // already decoded by udev: not touched
    expect(decodeUdevEnc(undefined)).toBeUndefined();
  });
});

describe('contentFromBlkid', () => {
  it('takes TYPE, VERSION, LABEL, UUID, PTTYPE, PTUUID and a found entry', () => {
    const probe = {
      outcome: 'found' as const,
      values: { TYPE: 'swap', VERSION: '1', LABEL: 'swaplbl', UUID: '8ff54421-abc1-4234-acd7-224675fc7032', LABEL_FATBOOT: 'x' },
      entries: [],
    };
    const entry = { major: 259, minor: 1, found: true, number: 2, scheme: 'gpt', type: '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f', name: 'swap space', uuid: '82e43456-fb98-774b-87e2-110060a0b60a', flags: '0x1' };
    expect(contentFromBlkid(probe, entry)).toEqual({
      fsType: 'swap',
      fsVersion: '1',
      label: 'swaplbl',
      uuid: '8ff54421-abc1-4234-acd7-224675fc7032',
      partType: '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f',
      partLabel: 'swap space',
      partUuid: '82e43456-fb98-774b-87e2-110060a0b60a',
      partFlags: '0x1',
    });
  });

  it('reports nothing for an ambiguous device or an entry the table lacks', () => {
    expect(contentFromBlkid({ outcome: 'ambiguous', values: {}, entries: [] }, { major: 259, minor: 0, found: false })).toEqual({});
    expect(contentFromBlkid(undefined)).toEqual({});
  });
});

describe('modeString', () => {
  it('prints st_mode as ls -l and lsblk MODE do', () => {
    expect(modeString(0o60660)).toBe('brw-rw----');
    expect(modeString(0o60600)).toBe('brw-------');
    expect(modeString(0o20666)).toBe('crw-rw-rw-');
    expect(modeString(0o100644)).toBe('-rw-r--r--');
    expect(modeString(0o41777)).toBe('drwxrwxrwt');
    expect(modeString(0o106755)).toBe('-rwsr-sr-x');
    expect(modeString(0o107644)).toBe('-rwSr-Sr-T');
  });
});

describe('parseScheduler', () => {
  it('takes the selected entry, as lsblk SCHED', () => {
    expect(parseScheduler('[none] mq-deadline kyber bfq')).toBe('none');
    expect(parseScheduler('none [mq-deadline] kyber')).toBe('mq-deadline');
    expect(parseScheduler('none')).toBeUndefined();
    expect(parseScheduler(undefined)).toBeUndefined();
  });
});
