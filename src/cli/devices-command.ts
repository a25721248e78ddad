// `devmove devices …`: the device manager on the command line.
//
//   devmove devices [--all] [--json]      an lsblk-like table (or JSON)
//   devmove devices info NAME [--json]    everything known about one device
//   devmove devices watch [--json]        hot-plug events until Ctrl-C (JSON lines with --json)
//
// Exit status: 0 ok, 1 runtime failure (no such device, libudev missing), 2 usage error.
import { DevmoveError } from '../base/errors';
import { list, lookup, watch, type Device, type DeviceEvent, type DeviceIdentity } from '../devices/manager';
import { formatBytesIEC } from '../base/size';

export interface DevicesIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export interface DevicesCommandOptions {
  /** Stops `watch` (the CLI stops it on SIGINT/SIGTERM). */
  signal?: AbortSignal;
  /** Handle SIGINT/SIGTERM during `watch` (default true). */
  handleSignals?: boolean;
}

export function devicesHelpText(): string {
  return `Usage: devmove devices [--all] [--json]
  or:  devmove devices info NAME [--json]
  or:  devmove devices watch [--json]
List block devices, show one, or watch them come and go.

  (no command)  a table like lsblk: NAME SIZE TYPE RO FSTYPE LABEL MODEL SERIAL
                MOUNTPOINTS HOLDERS, partitions under their disk; empty devices
                (unattached loop devices, unused zram) only with --all
  info NAME     everything known about one device: identity, filesystem type,
                label and UUID, partition table and entry, I/O limits, discard,
                scheduler, read-ahead, owner and mode, mounts and filesystem
                usage. NAME is a kernel name (sdb, loop3, nvme0n1p2), a path or
                symlink to a device node (/dev/sdb, /dev/disk/by-id/...), or
                MAJ:MIN (7:3)
  watch         print add/remove/change events as they come, until Ctrl-C
  --json        JSON: {"devices": [...]} for the table, one object for info
                (every field), one object per line for watch
  --all         also list empty devices

Model, vendor, serial, WWN and /dev/disk/by-* links come from the udev
database when a udev daemon runs, else from what the kernel publishes in sysfs.
FSTYPE, LABEL, UUID and the partition table fields come from the udev database
when a udev daemon has probed the device, else from reading the device with
libblkid (read-only; root or read permission on the device is needed). Unknown
fields are left empty. Needs libudev.so.1 (Debian/Ubuntu: libudev1); without
libblkid.so.1 (libblkid1) everything but the content fields still works.

Exit status: 0 ok, 1 failure (no such device, libudev missing), 2 usage error.
`;
}

class DevicesUsageError extends Error {}

interface ParsedArgs {
  command: 'list' | 'info' | 'watch' | 'help';
  name?: string;
  json: boolean;
  all: boolean;
}

function parseArgs(args: readonly string[]): ParsedArgs {
  const positional: string[] = [];
  const parsed: ParsedArgs = { command: 'list', json: false, all: false };
  let optionsEnded = false;
  for (const arg of args) {
    if (!optionsEnded && arg === '--') optionsEnded = true;
    else if (!optionsEnded && arg === '--json') parsed.json = true;
    else if (!optionsEnded && (arg === '--all' || arg === '-a')) parsed.all = true;
    else if (!optionsEnded && (arg === '--help' || arg === '-h')) parsed.command = 'help';
    else if (!optionsEnded && arg.startsWith('-') && arg !== '-') throw new DevicesUsageError(`unknown option '${arg}'`);
    else positional.push(arg);
  }
  if (parsed.command === 'help') return parsed;
  const [command, ...rest] = positional;
  if (command === undefined || command === 'list') {
    if (rest.length > 0) throw new DevicesUsageError(`unexpected argument '${rest[0]}'`);
    parsed.command = 'list';
  } else if (command === 'info') {
    if (rest.length === 0) throw new DevicesUsageError('info needs a device NAME');
    if (rest.length > 1) throw new DevicesUsageError(`info takes one NAME, not also '${rest[1]}'`);
    parsed.command = 'info';
    parsed.name = rest[0];
    if (parsed.all) throw new DevicesUsageError('--all applies to the list, not to info');
  } else if (command === 'watch') {
    if (rest.length > 0) throw new DevicesUsageError(`unexpected argument '${rest[0]}'`);
    parsed.command = 'watch';
    if (parsed.all) throw new DevicesUsageError('--all applies to the list, not to watch');
  } else {
    throw new DevicesUsageError(`unknown command '${command}'; the commands are info NAME and watch`);
  }
  return parsed;
}

// ---- the table -------------------------------------------------------------------

const COLUMNS = ['NAME', 'SIZE', 'TYPE', 'RO', 'FSTYPE', 'LABEL', 'MODEL', 'SERIAL', 'MOUNTPOINTS', 'HOLDERS'] as const;

/** A value as one table cell: control characters (a label can hold any byte) as \xNN, as lsblk prints them. */
export function cellText(value: string | undefined): string {
  return (value ?? '').replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function lines(rows: string[][]): string {
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]))
        .join(' ')
        .trimEnd(),
    )
    .join('\n');
}

/**
 * lsblk-style table: disks in name order, each followed by its partitions drawn as a tree;
 * a device with several mountpoints gets one line per extra mountpoint. Empty devices
 * (size 0: unattached loop devices, unused zram) only with `all`.
 */
export function formatDeviceTable(devices: readonly Device[], options: { all?: boolean } = {}): string {
  const shown = devices.filter((d) => options.all === true || d.sizeBytes > 0);
  const byName = new Map(shown.map((d) => [d.name, d]));
  const children = new Map<string, Device[]>();
  const roots: Device[] = [];
  for (const d of shown) {
    if (d.disk !== undefined && byName.has(d.disk)) {
      const list = children.get(d.disk) ?? [];
      list.push(d);
      children.set(d.disk, list);
    } else {
      roots.push(d);
    }
  }
  const rows: string[][] = [[...COLUMNS]];
  const add = (d: Device, prefix: string, continuation: string): void => {
    const mountPoints = d.mounts.map((m) => cellText(m.mountPoint));
    rows.push([
      `${prefix}${d.name}`,
      formatBytesIEC(d.sizeBytes),
      d.type === 'partition' ? 'part' : d.loop !== undefined || /^loop\d+$/.test(d.name) ? 'loop' : 'disk',
      d.readOnly ? '1' : '0',
      cellText(d.fsType),
      cellText(d.label),
      cellText(d.model),
      cellText(d.serial),
      mountPoints[0] ?? '',
      d.holders.join(','),
    ]);
    for (const mountPoint of mountPoints.slice(1)) rows.push([continuation, ...COLUMNS.slice(1, -2).map(() => ''), mountPoint, '']);
  };
  for (const root of roots) {
    const kids = children.get(root.name) ?? [];
    add(root, '', kids.length > 0 ? '│ ' : '');
    kids.forEach((kid, i) => {
      const last = i === kids.length - 1;
      add(kid, last ? '└─' : '├─', last ? '  ' : '│ ');
    });
  }
  return `${lines(rows)}\n`;
}

// ---- info --------------------------------------------------------------------------

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

function sizeText(bytes: number): string {
  return bytes >= 1024 ? `${formatBytesIEC(bytes)} (${bytes} bytes)` : `${bytes} bytes`;
}

type InfoLine = [key: string, value: string];

function optional(key: string, value: string | undefined): InfoLine[] {
  return value === undefined ? [] : [[key, value]];
}

/** How the content fields were found, or why they are unknown. */
export function contentProbeText(d: Pick<Device, 'contentProbe' | 'sizeBytes'>): string {
  const probe = d.contentProbe;
  if (probe.error !== undefined) return `unknown: ${probe.error.message}`;
  if (probe.source === 'none') return d.sizeBytes === 0 ? 'not probed (empty device)' : 'not probed';
  if (probe.source === 'udev') return 'udev database';
  return probe.ambiguous === true ? 'libblkid: more than one signature, none reported (see wipefs)' : 'libblkid';
}

/** FSTYPE … PARTFLAGS, and where they came from. */
function contentLines(d: Device): InfoLine[] {
  return [
    ...optional('fstype', d.fsType),
    ...optional('fs version', d.fsVersion),
    ...optional('label', d.label),
    ...optional('uuid', d.uuid),
    ...optional('partition table', d.ptType === undefined ? undefined : `${d.ptType}${d.ptUuid === undefined ? '' : `, id ${d.ptUuid}`}`),
    ...optional('partition type', d.partType),
    ...optional('partition label', d.partLabel),
    ...optional('partition uuid', d.partUuid),
    ...optional('partition flags', d.partFlags),
    ['contents from', contentProbeText(d)],
  ];
}

function bytesLine(key: string, bytes: number | undefined): InfoLine[] {
  return bytes === undefined ? [] : [[key, sizeText(bytes)]];
}

/** Queue limits and settings (sysfs), and who may open the node. */
function queueAndAccessLines(d: Device): InfoLine[] {
  return [
    ...bytesLine('alignment offset', d.alignmentOffsetBytes),
    ...bytesLine('minimum I/O size', d.minIoBytes),
    ...bytesLine('optimal I/O size', d.optIoBytes),
    ...bytesLine('discard granularity', d.discardGranularityBytes),
    ...bytesLine('discard maximum', d.discardMaxBytes),
    ...bytesLine('discard alignment', d.discardAlignmentBytes),
    ...optional('scheduler', d.scheduler),
    ...bytesLine('read-ahead', d.readAheadBytes),
    ...optional('zoned', d.zoned),
    ...optional('owner', d.owner),
    ...optional('group', d.group),
    ...optional('mode', d.mode),
  ];
}

function placementLines(d: Device): InfoLine[] {
  const out: InfoLine[] = [...optional('links', d.links.length > 0 ? d.links.join(' ') : undefined), ...optional('disk', d.disk)];
  if (d.partition !== undefined) {
    out.push(['partition', `number ${d.partition.number}, starts at byte ${d.partition.startBytes}, ${sizeText(d.partition.sizeBytes)}`]);
  }
  if (d.partitions.length > 0) out.push(['partitions', d.partitions.join(' ')]);
  if (d.holders.length > 0) out.push(['holders', d.holders.join(' ')]);
  if (d.slaves.length > 0) out.push(['slaves', d.slaves.join(' ')]);
  if (d.loop !== undefined) {
    out.push(['loop backing file', d.loop.backingFile]);
    out.push(['loop offset', `${d.loop.offsetBytes} bytes`]);
    out.push(['loop size limit', d.loop.sizeLimitBytes === 0 ? 'none' : `${d.loop.sizeLimitBytes} bytes`]);
  }
  for (const m of d.mounts) out.push(['mounted', `${m.mountPoint} (${m.fsType}, ${m.readOnly ? 'ro' : 'rw'})`]);
  out.push(...bytesLine('fs size', d.fsSizeBytes), ...bytesLine('fs available', d.fsAvailableBytes), ...bytesLine('fs used', d.fsUsedBytes));
  return out;
}

/** `devices info NAME` as text: one "key: value" line per known fact; unknown ones are left out. */
export function formatDeviceInfo(d: Device): string {
  const out: InfoLine[] = [
    ['name', d.name],
    ['path', d.path],
    ['devno', d.devno],
    ['type', d.type],
    ['size', sizeText(d.sizeBytes)],
    ['logical block size', `${d.logicalBlockBytes} bytes`],
    ['physical block size', `${d.physicalBlockBytes} bytes`],
    ['read-only', yesNo(d.readOnly)],
    ['removable', yesNo(d.removable)],
    ['rotational', yesNo(d.rotational)],
    ...optional('model', d.model),
    ...optional('vendor', d.vendor),
    ...optional('serial', d.serial),
    ...optional('wwn', d.wwn),
    ...contentLines(d),
    ...queueAndAccessLines(d),
    ...placementLines(d),
    ['sysfs', d.sysPath],
    ['udev database', d.udev.initialized ? 'yes' : 'no (no udev daemon has processed this device)'],
  ];
  const width = Math.max(...out.map(([k]) => k.length)) + 1;
  let text = out.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n');
  const properties = Object.entries(d.udev.properties).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (properties.length > 0) text += `\nudev properties:\n${properties.map(([k, v]) => `  ${k}=${v}`).join('\n')}`;
  return `${text}\n`;
}

const NOTE_NAMES_MAX = 6;

/**
 * One stderr line per kind of content-probe failure: whose FSTYPE, LABEL and UUID are unknown, and
 * why. Without libblkid that is one line for every device.
 */
export function formatProbeNotes(devices: readonly Device[]): string[] {
  const byCode = new Map<string, Device[]>();
  for (const d of devices) {
    const error = d.contentProbe.error;
    if (error !== undefined) byCode.set(error.code, [...(byCode.get(error.code) ?? []), d]);
  }
  return [...byCode.entries()].map(([code, failed]) => {
    const message = failed[0].contentProbe.error?.message ?? code;
    if (code === 'ELIBACC') return `devmove: FSTYPE, LABEL and UUID unknown: ${message}`;
    const names = failed.slice(0, NOTE_NAMES_MAX).map((d) => d.name);
    const more = failed.length > NOTE_NAMES_MAX ? ` and ${failed.length - NOTE_NAMES_MAX} more` : '';
    return `devmove: FSTYPE, LABEL and UUID unknown for ${names.join(', ')}${more}: ${message}`;
  });
}

// ---- watch -------------------------------------------------------------------------

function isDevice(device: Device | DeviceIdentity): device is Device {
  return 'sizeBytes' in device;
}

/** One text line per event: "change loop3 7:3 disk 64 MiB loop=/var/tmp/a.img". */
export function formatDeviceEvent(event: DeviceEvent): string {
  const d = event.device;
  const parts: string[] = [event.action.padEnd(6), d.name, d.devno, d.type];
  if (isDevice(d)) {
    parts.push(formatBytesIEC(d.sizeBytes));
    if (d.loop !== undefined) parts.push(`loop=${d.loop.backingFile}`);
    if (d.model !== undefined) parts.push(`model=${JSON.stringify(d.model)}`);
  } else if (event.action !== 'remove') {
    parts.push('(gone)');
  }
  if (event.properties.DISK_MEDIA_CHANGE === '1') parts.push('media-change');
  return parts.join(' ');
}

async function runWatch(json: boolean, io: DevicesIo, options: DevicesCommandOptions): Promise<number> {
  const watcher = watch();
  let failure: Error | undefined;
  const stopped = new Promise<void>((resolve) => {
    watcher.on('close', resolve);
  });
  watcher.on('error', (error) => {
    failure = error;
  });
  watcher.on('event', (event) => {
    const line = json ? JSON.stringify({ time: new Date().toISOString(), ...event }) : formatDeviceEvent(event);
    io.stdout.write(`${line}\n`);
  });
  // A reader that went away (`| head`): stop quietly.
  const onStdoutError = (): void => watcher.close();
  io.stdout.on('error', onStdoutError);
  const stop = (): void => watcher.close();
  const handleSignals = options.handleSignals ?? true;
  if (handleSignals) {
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  }
  if (options.signal !== undefined) {
    if (options.signal.aborted) stop();
    else options.signal.addEventListener('abort', stop, { once: true });
  }
  if (!json) io.stderr.write('devmove: watching block devices (Ctrl-C to stop)\n');
  try {
    await stopped;
  } finally {
    if (handleSignals) {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    options.signal?.removeEventListener('abort', stop);
    io.stdout.off('error', onStdoutError);
  }
  if (failure !== undefined) {
    io.stderr.write(`devmove: devices watch: ${failure.message}\n`);
    return 1;
  }
  return 0;
}

// ---- entry ---------------------------------------------------------------------------

/** `devmove devices ARGS…`; resolves to the exit status. */
export async function runDevicesCommand(args: readonly string[], io: DevicesIo, options: DevicesCommandOptions = {}): Promise<number> {
  let parsed: ParsedArgs;
  try {
    parsed = parseArgs(args);
  } catch (error) {
    if (error instanceof DevicesUsageError) {
      io.stderr.write(`devmove devices: ${error.message} (see 'devmove devices --help')\n`);
      return 2;
    }
    throw error;
  }
  try {
    switch (parsed.command) {
      case 'help':
        io.stdout.write(devicesHelpText());
        return 0;
      case 'list': {
        const devices = list().filter((d) => parsed.all || d.sizeBytes > 0);
        io.stdout.write(parsed.json ? `${JSON.stringify({ devices }, null, 2)}\n` : formatDeviceTable(devices, { all: true }));
        for (const note of formatProbeNotes(devices)) io.stderr.write(`${note}\n`);
        return 0;
      }
      case 'info': {
        const device = lookup(parsed.name ?? '');
        io.stdout.write(parsed.json ? `${JSON.stringify(device, null, 2)}\n` : formatDeviceInfo(device));
        return 0;
      }
      case 'watch':
        return await runWatch(parsed.json, io, options);
    }
  } catch (error) {
    // DevmoveError (ENODEV, ENOTBLK, ELIBACC, …) or the addon failing to load.
    const message = error instanceof DevmoveError || error instanceof Error ? error.message : String(error);
    io.stderr.write(`devmove: ${message}\n`);
    return 1;
  }
}
