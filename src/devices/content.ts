// What a block device holds: the signature on it (filesystem, swap, LVM2_member, crypto_LUKS, …)
// with its label, UUID and version, the partition table on it, and for a partition its entry in
// the disk's table: lsblk's FSTYPE, FSVER, LABEL, UUID, PTTYPE, PTUUID, PARTTYPE, PARTLABEL,
// PARTUUID and PARTFLAGS, with their meanings.
//
// Where from: the udev database when a udev daemon has probed the device (the ID_FS_* / ID_PART_*
// properties of its blkid builtin; no device is opened), else a read-only libblkid probe of the
// node (native/blkid_library.h). lsblk 2.38 stops at udev even when udev has no database and then
// shows nothing for these columns (util-linux issue #2459; `--properties-by` came in 2.41);
// devmove probes instead. A whole disk is probed once, with its partition list; its partitions'
// entries come from that list, so the table is parsed once per disk, not once per partition.
import { DevmoveError } from '../base/errors';
import type { NativeBinding, NativeBlkidPartitionEntry, NativeBlkidProbe, NativeErrorInfo, NativeUdevDevice } from '../addon/binding';
import type { BlockInfo } from '../storage/sysfs';

export interface DeviceContent {
  /** The signature's type: 'ext4', 'vfat', 'swap', 'LVM2_member', 'crypto_LUKS', … (lsblk FSTYPE). */
  fsType?: string;
  /** The signature's version: '1.0' (ext4), 'FAT32', '1' (swap) (lsblk FSVER). */
  fsVersion?: string;
  /** Filesystem label (lsblk LABEL). */
  label?: string;
  /** Filesystem UUID (or vfat's serial, 'EED4-37A7') (lsblk UUID). */
  uuid?: string;
  /** Partition table on this device: 'gpt', 'dos', … (lsblk PTTYPE). */
  ptType?: string;
  /** Its identifier: the GPT disk GUID, or the DOS disk id ('5f1b3c2a') (lsblk PTUUID). */
  ptUuid?: string;
  /** Partitions: type in the disk's table, a GPT type GUID or '0x83' (lsblk PARTTYPE). */
  partType?: string;
  /** Partitions: name in the disk's table (GPT) (lsblk PARTLABEL). */
  partLabel?: string;
  /** Partitions: GUID (GPT) or '<disk id>-<number>' (DOS) (lsblk PARTUUID). */
  partUuid?: string;
  /** Partitions: attribute bits ('0x1': GPT "required", '0x80': DOS bootable); absent when none (lsblk PARTFLAGS). */
  partFlags?: string;
}

/** A failed probe as plain data (JSON-friendly), shaped like a DevmoveError. */
export interface DeviceProbeError {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  message: string;
}

/** How the content fields were found, or why they are unknown. */
export interface DeviceContentProbe {
  /**
   * 'udev': the udev database (a udev daemon probed the device); 'libblkid': a read-only probe of
   * the node by devmove; 'none': not read, for an empty device (size 0), and in watch events, which
   * never open a device (devices.lookup(name) reads it).
   */
  source: 'udev' | 'libblkid' | 'none';
  /** More than one signature (two filesystems, say): no type, label or UUID is reported, as lsblk and `blkid -p` (exit 8) report none; `wipefs` lists them. */
  ambiguous?: true;
  /** Why the fields are unknown: ELIBACC without libblkid, EACCES without read permission, EIO, … */
  error?: DeviceProbeError;
}

export function probeErrorOf(info: NativeErrorInfo): DeviceProbeError {
  const error = new DevmoveError(info);
  // Native probe errors always name their system call (open, blkid_do_safeprobe, dlopen).
  const out: DeviceProbeError = { code: error.code, errno: error.errno, syscall: error.syscall ?? error.operation ?? 'probe', message: error.message };
  if (error.path !== undefined) out.path = error.path;
  return out;
}

/** udev's *_ENC values escape unsafe bytes as \xNN (lsblk's unhexmangle). */
export function decodeUdevEnc(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (/[^\x00-\x7f]/.test(value)) return value;
  const latin1 = value.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  return Buffer.from(latin1, 'latin1').toString('utf8');
}

function assign(content: DeviceContent, key: keyof DeviceContent, value: string | undefined): void {
  if (value !== undefined && value !== '') content[key] = value;
}

/**
 * The content fields from a udev database record's properties, read as lsblk reads them; undefined
 * when the record shows that udev's blkid builtin found nothing or did not run for this device
 * (udev's rules skip some device types), so the caller probes instead.
 */
export function contentFromUdev(properties: Readonly<Record<string, string>>): DeviceContent | undefined {
  const p = properties;
  if (!p.ID_FS_TYPE && !p.ID_PART_TABLE_TYPE && !p.ID_PART_ENTRY_SCHEME) return undefined;
  const content: DeviceContent = {};
  assign(content, 'fsType', p.ID_FS_TYPE);
  assign(content, 'fsVersion', p.ID_FS_VERSION);
  assign(content, 'label', decodeUdevEnc(p.ID_FS_LABEL_ENC));
  assign(content, 'uuid', decodeUdevEnc(p.ID_FS_UUID_ENC));
  assign(content, 'ptType', p.ID_PART_TABLE_TYPE);
  assign(content, 'ptUuid', p.ID_PART_TABLE_UUID);
  assign(content, 'partType', p.ID_PART_ENTRY_TYPE);
  assign(content, 'partLabel', decodeUdevEnc(p.ID_PART_ENTRY_NAME));
  assign(content, 'partUuid', p.ID_PART_ENTRY_UUID);
  assign(content, 'partFlags', p.ID_PART_ENTRY_FLAGS);
  return content;
}

/** The content fields from a libblkid probe of the device and, for a partition, its entry in the disk's table. */
export function contentFromBlkid(probe: NativeBlkidProbe | undefined, entry?: NativeBlkidPartitionEntry): DeviceContent {
  const content: DeviceContent = {};
  const v = probe?.values ?? {};
  assign(content, 'fsType', v.TYPE);
  assign(content, 'fsVersion', v.VERSION);
  assign(content, 'label', v.LABEL);
  assign(content, 'uuid', v.UUID);
  assign(content, 'ptType', v.PTTYPE);
  assign(content, 'ptUuid', v.PTUUID);
  if (entry?.found) {
    assign(content, 'partType', entry.type);
    assign(content, 'partLabel', entry.name);
    assign(content, 'partUuid', entry.uuid);
    assign(content, 'partFlags', entry.flags);
  }
  return content;
}

type ProbeOutcome = { probe: NativeBlkidProbe; error?: undefined } | { probe?: undefined; error: DeviceProbeError };

/** Whether a device's content comes from the udev database (no probe needed). */
function udevContent(record: NativeUdevDevice | undefined): DeviceContent | undefined {
  return record?.initialized === true ? contentFromUdev(record.properties) : undefined;
}

/**
 * Content probes for one listing: libblkid's availability is checked once, and every device that
 * needs a probe is probed in one native call (in parallel), each at most once; a whole disk's probe
 * brings its partitions' table entries.
 */
export class ContentProber {
  readonly #native: NativeBinding;
  readonly #infoOf: (name: string) => BlockInfo | undefined;
  #libraryError: DeviceProbeError | null | undefined; // undefined: not checked yet; null: loaded
  readonly #outcomes = new Map<string, ProbeOutcome>(); // by kernel name
  readonly #read: boolean;

  /**
   * `infoOf`: sysfs facts by kernel name (a partition's disk, a disk's partitions). `read: false`:
   * take only what the udev database says, open no device.
   */
  constructor(native: NativeBinding, infoOf: (name: string) => BlockInfo | undefined, options: { read?: boolean } = {}) {
    this.#native = native;
    this.#infoOf = infoOf;
    this.#read = options.read ?? true;
  }

  /** Probes, in one batch, every device of `devices` whose content the udev database does not give. */
  probeAll(devices: ReadonlyArray<readonly [BlockInfo, NativeUdevDevice | undefined]>): void {
    if (!this.#read) return;
    const wanted = new Map<string, BlockInfo>();
    for (const [info, record] of devices) {
      if (info.sizeBytes === 0 || udevContent(record) !== undefined || this.#outcomes.has(info.name)) continue;
      wanted.set(info.name, info);
      const disk = info.disk === undefined ? undefined : this.#infoOf(info.disk);
      // The partition's entry comes from its disk's partition list.
      if (disk !== undefined && !this.#outcomes.has(disk.name)) wanted.set(disk.name, disk);
    }
    if (wanted.size === 0 || this.#checkLibrary() !== null) return;
    const infos = [...wanted.values()];
    const requests = infos.map((info) => ({ path: info.devnode, partitions: this.#partitionNumbers(info) }));
    let results: ReturnType<NativeBinding['blkidProbe']>;
    try {
      results = this.#native.blkidProbe(requests);
    } catch (error) {
      const info = (error as { sysError?: NativeErrorInfo } | undefined)?.sysError;
      if (info === undefined) throw error;
      const failed: ProbeOutcome = { error: probeErrorOf(info) };
      for (const device of infos) this.#outcomes.set(device.name, failed);
      return;
    }
    infos.forEach((info, i) => {
      const result = results[i];
      this.#outcomes.set(info.name, 'error' in result ? { error: probeErrorOf(result.error) } : { probe: result });
    });
  }

  /** The content fields of one device, and where they came from (probing it now if probeAll() did not). */
  content(info: BlockInfo, record: NativeUdevDevice | undefined): DeviceContent & { contentProbe: DeviceContentProbe } {
    const fromUdev = udevContent(record);
    if (fromUdev !== undefined) return { ...fromUdev, contentProbe: { source: 'udev' } };
    // An empty device (unattached loop, unused zram) has nothing to read: lsblk skips it too.
    if (info.sizeBytes === 0 || !this.#read) return { contentProbe: { source: 'none' } };
    const libraryError = this.#checkLibrary();
    if (libraryError !== null) return { contentProbe: { source: 'libblkid', error: libraryError } };
    this.probeAll([[info, record]]);
    const own = this.#outcomes.get(info.name);
    if (own === undefined) throw new Error(`devmove: ${info.name} was not probed`); // probeAll() probes it: a bug
    if (own.error !== undefined) return { contentProbe: { source: 'libblkid', error: own.error } };
    const contentProbe: DeviceContentProbe = { source: 'libblkid' };
    if (own.probe.outcome === 'ambiguous') contentProbe.ambiguous = true;
    return { ...contentFromBlkid(own.probe, this.#entryOf(info)), contentProbe };
  }

  #checkLibrary(): DeviceProbeError | null {
    if (this.#libraryError === undefined) {
      const status = this.#native.blkidStatus();
      this.#libraryError = status.available
        ? null
        : probeErrorOf(
            status.error ?? { errno: 79, syscall: 'dlopen', path: status.library, detail: `${status.library} is not available: install the libblkid1 package` },
          );
    }
    return this.#libraryError;
  }

  /** A whole disk's kernel partitions, [major, minor], whose table entries its probe should bring. */
  #partitionNumbers(info: BlockInfo): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const name of info.partitions) {
      const partition = this.#infoOf(name);
      if (partition !== undefined) out.push([partition.major, partition.minor]);
    }
    return out;
  }

  #entryOf(partition: BlockInfo): NativeBlkidPartitionEntry | undefined {
    if (partition.type !== 'partition' || partition.disk === undefined) return undefined;
    // A disk that cannot be read leaves the entry unknown; the partition's own probe still counts.
    const entries = this.#outcomes.get(partition.disk)?.probe?.entries ?? [];
    return entries.find((e) => e.major === partition.major && e.minor === partition.minor);
  }
}
