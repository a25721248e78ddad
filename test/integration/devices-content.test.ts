// What lsblk shows, without a udev daemon: filesystem type, label and UUID, partition table and
// entries (libblkid), queue facts (sysfs), owner/group/mode (stat) and filesystem usage (statfs),
// proven on real kernel objects this file makes (loop devices over image files, a GPT and a DOS
// table written by sfdisk, ext4, vfat and swap made by their mkfs tools, a mount) against the tools
// people trust: `blkid -p -o export` and `lsblk -J -b -O`. Nothing is mocked; no other device is
// touched beyond reading it.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runDevicesCommand } from '../../src/cli/devices-command';
import { list, lookup, watch, type Device, type DeviceEvent } from '../../src/devices/manager';
import { attachLoop, detachAll, makeImage, mount, skipWithoutLoop, tempDir } from '../helpers/devices';

const MiB = 1024 * 1024;
const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const MISSING_LIBBLKID = 'libblkid-devmove-missing.so.1';

const has = (tool: string, args = ['--version']): boolean => spawnSync(tool, args, { stdio: 'ignore' }).status === 0;
const toolsMissing = !(has('blkid') && has('lsblk') && has('sfdisk') && has('mkswap') && has('mkfs.ext4', ['-V']) && has('mkfs.vfat', ['--help']));

// Labels with a space and UTF-8, as people name their backup drives.
const EXT4_LABEL = 'Backup été';
const VFAT_LABEL = 'BACKUP 2024';
const SWAP_LABEL = 'swap space 1';
const GPT_ID = '5c1e5a1e-7e57-4d3e-9a1b-0123456789ab';
const GPT_P1_UUID = '0b7c8d52-1f2e-4a3b-8c4d-5e6f7a8b9c0d';
const LINUX_FS_GUID = '0fc63daf-8483-4772-8e79-3d69d8477de4';
const LINUX_SWAP_GUID = '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f';
const BASIC_DATA_GUID = 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7';
const GPT_SCRIPT = `label: gpt
label-id: ${GPT_ID.toUpperCase()}

start=2048, size=20480, type=${LINUX_FS_GUID.toUpperCase()}, name="backup data", uuid=${GPT_P1_UUID.toUpperCase()}
start=22528, size=16384, type=${LINUX_SWAP_GUID.toUpperCase()}, name="swap", attrs="RequiredPartition"
start=38912, size=16384, type=${BASIC_DATA_GUID.toUpperCase()}, name="données brutes"
`;
const DOS_ID = '5f1b3c2a';
const DOS_SCRIPT = `label: dos
label-id: 0x${DOS_ID}

start=2048, size=8192, type=83, bootable
start=10240, size=20480, type=c
`;

/** The content fields and the NAME libblkid gives each in `blkid -p -o export`. */
const BLKID_FIELDS: ReadonlyArray<[keyof Device, string]> = [
  ['fsType', 'TYPE'],
  ['fsVersion', 'VERSION'],
  ['label', 'LABEL'],
  ['uuid', 'UUID'],
  ['ptType', 'PTTYPE'],
  ['ptUuid', 'PTUUID'],
  ['partType', 'PART_ENTRY_TYPE'],
  ['partLabel', 'PART_ENTRY_NAME'],
  ['partUuid', 'PART_ENTRY_UUID'],
  ['partFlags', 'PART_ENTRY_FLAGS'],
];

/**
 * `blkid -p -o export -d NODE`: status 0 (found), 2 (nothing) or 8 (ambiguous), and the values.
 * -d prints bytes as they are (UTF-8 labels intact); export mode then only puts a backslash before
 * shell-special characters.
 */
function blkidExport(node: string): { status: number | null; values: Record<string, string> } {
  const run = spawnSync('blkid', ['-p', '-o', 'export', '-d', node], { encoding: 'utf8' });
  const values: Record<string, string> = {};
  for (const line of run.stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values[line.slice(0, eq)] = line.slice(eq + 1).replace(/\\(.)/g, '$1');
  }
  return { status: run.status, values };
}

type LsblkRow = Record<string, string | number | boolean | null | Array<string | null>> & { kname: string; children?: LsblkRow[] };

/** `lsblk -J -b -O NODE`: the device and its partitions, by kernel name. */
function lsblk(node: string): Map<string, LsblkRow> {
  const parsed = JSON.parse(execFileSync('lsblk', ['-J', '-b', '-O', node], { encoding: 'utf8' })) as { blockdevices: LsblkRow[] };
  const rows = new Map<string, LsblkRow>();
  const add = (row: LsblkRow): void => {
    rows.set(row.kname, row);
    for (const child of row.children ?? []) add(child);
  };
  parsed.blockdevices.forEach(add);
  return rows;
}

/** lsblk's column → the same fact in a Device (lsblk -b prints RA in KiB and START in sectors). */
const LSBLK_COLUMNS: ReadonlyArray<[string, (d: Device) => unknown]> = [
  ['name', (d) => d.name],
  ['path', (d) => d.path],
  ['maj:min', (d) => d.devno],
  ['size', (d) => d.sizeBytes],
  ['type', (d) => (d.type === 'partition' ? 'part' : 'loop')],
  ['pkname', (d) => d.disk ?? null],
  ['start', (d) => (d.partition === undefined ? null : d.partition.startBytes / 512)],
  ['ro', (d) => d.readOnly],
  ['rm', (d) => d.removable],
  ['rota', (d) => d.rotational],
  ['log-sec', (d) => d.logicalBlockBytes],
  ['phy-sec', (d) => d.physicalBlockBytes],
  ['model', (d) => d.model ?? null],
  ['serial', (d) => d.serial ?? null],
  ['wwn', (d) => d.wwn ?? null],
  ['mountpoints', (d) => (d.mounts.length === 0 ? [null] : d.mounts.map((m) => m.mountPoint))],
  ['alignment', (d) => d.alignmentOffsetBytes],
  ['min-io', (d) => d.minIoBytes],
  ['opt-io', (d) => d.optIoBytes],
  ['disc-aln', (d) => d.discardAlignmentBytes],
  ['disc-gran', (d) => d.discardGranularityBytes],
  ['disc-max', (d) => d.discardMaxBytes],
  ['sched', (d) => d.scheduler ?? null],
  ['ra', (d) => (d.readAheadBytes === undefined ? undefined : d.readAheadBytes / 1024)],
  ['zoned', (d) => d.zoned],
  ['owner', (d) => d.owner ?? null],
  ['group', (d) => d.group ?? null],
  ['mode', (d) => d.mode ?? null],
  ['fssize', (d) => d.fsSizeBytes ?? null],
  ['fsavail', (d) => d.fsAvailableBytes ?? null],
  ['fsused', (d) => d.fsUsedBytes ?? null],
];

/** lsblk's content columns: compared where lsblk knows them (2.38 reads them only from a udev database). */
const LSBLK_CONTENT_COLUMNS: ReadonlyArray<[string, keyof Device]> = [
  ['fstype', 'fsType'],
  ['fsver', 'fsVersion'],
  ['label', 'label'],
  ['uuid', 'uuid'],
  ['pttype', 'ptType'],
  ['ptuuid', 'ptUuid'],
  ['parttype', 'partType'],
  ['partlabel', 'partLabel'],
  ['partuuid', 'partUuid'],
  ['partflags', 'partFlags'],
];

function capture(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      callback();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

/** Runs a script in a fresh node process against dist/ (`npx tsc` must have run). */
function nodeScript(script: string, env: NodeJS.ProcessEnv = {}, prefix: string[] = []) {
  const command = prefix.length > 0 ? prefix[0] : process.execPath;
  const args = prefix.length > 0 ? [...prefix.slice(1), process.execPath, '-e', script] : ['-e', script];
  const run = spawnSync(command, args, { cwd: ROOT, env: { ...process.env, ...env, DEVMOVE_DIST: path.join(ROOT, 'dist') }, encoding: 'utf8', timeout: 30_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe.skipIf(skipWithoutLoop || toolsMissing)('device content: filesystems, labels, partition tables', () => {
  const nodes: Record<string, string> = {};
  let mountPoint = '';
  const restoreQueue: Array<[string, string]> = [];

  /** Sets a queue attribute of a loop device this file attached; put back before detaching (loop queues outlive detach). */
  function setQueue(node: string, attribute: string, value: string): void {
    const file = `/sys/block/${path.basename(node)}/queue/${attribute}`;
    const before = fs.readFileSync(file, 'utf8').trim();
    restoreQueue.push([file, /\[([^\]]+)\]/.exec(before)?.[1] ?? before]);
    fs.writeFileSync(file, value);
  }

  beforeAll(() => {
    const dir = tempDir();
    const mkfs = (tool: string, args: string[]): void => void execFileSync(tool, args, { stdio: 'pipe' });

    nodes.ext4 = attachLoop(makeImage(dir, 'ext4.img', 32 * MiB, 'zero'));
    mkfs('mkfs.ext4', ['-q', '-F', '-L', EXT4_LABEL, nodes.ext4]);
    const vfatImage = makeImage(dir, 'vfat.img', 16 * MiB, 'zero');
    mkfs('mkfs.vfat', ['-n', VFAT_LABEL, vfatImage]);
    nodes.vfat = attachLoop(vfatImage, { readOnly: true }); // a probe that opened it for writing would fail
    nodes.swap = attachLoop(makeImage(dir, 'swap.img', 16 * MiB, 'zero'));
    mkfs('mkswap', ['-q', '-L', SWAP_LABEL, nodes.swap]);
    nodes.blank = attachLoop(makeImage(dir, 'blank.img', 8 * MiB, 'zero'));

    const gptImage = makeImage(dir, 'gpt.img', 32 * MiB, 'zero');
    execFileSync('sfdisk', ['-q', gptImage], { input: GPT_SCRIPT, stdio: ['pipe', 'pipe', 'pipe'] });
    nodes.gpt = attachLoop(gptImage, { partscan: true });
    mkfs('mkfs.ext4', ['-q', '-F', '-L', 'gpt-root', `${nodes.gpt}p1`]);
    mkfs('mkswap', ['-q', '-L', 'gpt-swap', `${nodes.gpt}p2`]); // p3 stays unformatted
    const dosImage = makeImage(dir, 'dos.img', 16 * MiB, 'zero');
    execFileSync('sfdisk', ['-q', dosImage], { input: DOS_SCRIPT, stdio: ['pipe', 'pipe', 'pipe'] });
    nodes.dos = attachLoop(dosImage, { partscan: true });
    mkfs('mkfs.vfat', ['-n', 'DOSDATA', `${nodes.dos}p2`]);

    // Two signatures: an ext4 with a FAT boot sector written over its (unused) first sector.
    const ambiguousImage = makeImage(dir, 'ambiguous.img', 16 * MiB, 'zero');
    mkfs('mkfs.ext4', ['-q', '-F', ambiguousImage]);
    const fd = fs.openSync(ambiguousImage, 'r+');
    fs.writeSync(fd, fs.readFileSync(vfatImage).subarray(0, 512), 0, 512, 0);
    fs.closeSync(fd);
    nodes.ambiguous = attachLoop(ambiguousImage);

    nodes.mounted = attachLoop(makeImage(dir, 'mounted.img', 32 * MiB, 'zero'));
    mkfs('mkfs.ext4', ['-q', '-F', '-L', 'mounted', nodes.mounted]);
    mountPoint = mount(nodes.mounted);
    fs.writeFileSync(path.join(mountPoint, 'data'), Buffer.alloc(3 * MiB, 1)); // some space in use
    execFileSync('sync', ['-f', mountPoint]);

    // Queue settings other than the loop driver's defaults, so the comparison can tell them apart.
    const schedulers = fs.readFileSync(`/sys/block/${path.basename(nodes.ext4)}/queue/scheduler`, 'utf8');
    if (schedulers.includes('mq-deadline')) setQueue(nodes.ext4, 'scheduler', 'mq-deadline');
    setQueue(nodes.ext4, 'read_ahead_kb', '384');
  });

  afterAll(() => {
    for (const [file, value] of restoreQueue.reverse()) {
      try {
        fs.writeFileSync(file, value);
      } catch {
        // the device is already gone
      }
    }
    detachAll(); // unmounts first
  });

  /** Every node this file made: the loop devices and their partitions. */
  function allNodes(): string[] {
    const out: string[] = [];
    for (const node of Object.values(nodes)) {
      out.push(node);
      const name = path.basename(node);
      for (const entry of fs.readdirSync(`/sys/block/${name}`)) if (entry.startsWith(`${name}p`)) out.push(`/dev/${entry}`);
    }
    return out;
  }

  it('every content field is what `blkid -p -o export` says, for found, empty and ambiguous devices', () => {
    const listed = new Map(list().map((d) => [d.name, d]));
    const statuses = new Set<number | null>();
    for (const node of allNodes()) {
      const oracle = blkidExport(node);
      statuses.add(oracle.status);
      const device = lookup(node);
      expect([0, 2, 8], `${node}: blkid exit ${oracle.status}`).toContain(oracle.status);
      for (const [field, key] of BLKID_FIELDS) {
        expect(device[field], `${node} ${field} (${key})`).toBe(oracle.values[key]);
      }
      expect(device.contentProbe, node).toEqual(oracle.status === 8 ? { source: 'libblkid', ambiguous: true } : { source: 'libblkid' });
      const fromList = listed.get(device.name);
      for (const [field] of BLKID_FIELDS) expect(fromList?.[field], `list() ${node} ${field}`).toBe(device[field]);
      expect(fromList?.contentProbe).toEqual(device.contentProbe);
    }
    expect([...statuses].sort()).toEqual([0, 2, 8]); // found, nothing and ambiguous were all seen
  });

  it('reads back what the devices were made with', () => {
    expect(lookup(nodes.ext4)).toMatchObject({ fsType: 'ext4', label: EXT4_LABEL, fsVersion: '1.0' });
    expect(lookup(nodes.vfat)).toMatchObject({ fsType: 'vfat', label: VFAT_LABEL, readOnly: true });
    expect(lookup(nodes.swap)).toMatchObject({ fsType: 'swap', label: SWAP_LABEL });
    const blank = lookup(nodes.blank);
    for (const [field] of BLKID_FIELDS) expect(blank[field], field).toBeUndefined();
    expect(lookup(nodes.gpt)).toMatchObject({ ptType: 'gpt', ptUuid: GPT_ID });
    expect(lookup(`${nodes.gpt}p1`)).toMatchObject({ fsType: 'ext4', label: 'gpt-root', partType: LINUX_FS_GUID, partLabel: 'backup data', partUuid: GPT_P1_UUID });
    expect(lookup(`${nodes.gpt}p2`)).toMatchObject({ fsType: 'swap', label: 'gpt-swap', partType: LINUX_SWAP_GUID, partLabel: 'swap', partFlags: '0x1' });
    const raw = lookup(`${nodes.gpt}p3`);
    expect(raw).toMatchObject({ partType: BASIC_DATA_GUID, partLabel: 'données brutes' });
    expect(raw.fsType).toBeUndefined();
    expect(lookup(nodes.dos)).toMatchObject({ ptType: 'dos', ptUuid: DOS_ID });
    expect(lookup(`${nodes.dos}p1`)).toMatchObject({ partType: '0x83', partUuid: `${DOS_ID}-01`, partFlags: '0x80' });
    expect(lookup(`${nodes.dos}p2`)).toMatchObject({ fsType: 'vfat', label: 'DOSDATA', partType: '0xc', partUuid: `${DOS_ID}-02` });
    expect(lookup(`${nodes.dos}p2`).partFlags).toBeUndefined();
    expect(lookup(nodes.ambiguous).fsType).toBeUndefined();
  });

  it('every lsblk column devmove has agrees with `lsblk -J -b -O`', () => {
    let contentCompared = 0;
    let contentLsblkLacks = 0;
    for (const disk of Object.values(nodes)) {
      const rows = lsblk(disk);
      expect(rows.size, disk).toBe(1 + lookup(disk).partitions.length);
      for (const [name, row] of rows) {
        const device = lookup(name);
        for (const [column, ours] of LSBLK_COLUMNS) expect(ours(device), `${name} ${column}`).toEqual(row[column]);
        for (const [column, field] of LSBLK_CONTENT_COLUMNS) {
          if (row[column] === null) {
            contentLsblkLacks++;
          } else {
            expect(device[field], `${name} ${column}`).toBe(row[column]);
            contentCompared++;
          }
        }
      }
    }
    // lsblk 2.38 takes these columns from the udev database only; with one it must agree with us.
    if (fs.existsSync('/run/udev/data')) expect(contentCompared).toBeGreaterThan(0);
    expect(contentCompared + contentLsblkLacks).toBeGreaterThan(0);
  });

  it('the queue settings and filesystem usage differ from the defaults, so the lsblk comparison tells them apart', () => {
    const ext4 = lookup(nodes.ext4);
    expect(ext4.readAheadBytes).toBe(384 * 1024);
    if (restoreQueue.some(([file]) => file.endsWith('/scheduler'))) expect(ext4.scheduler).toBe('mq-deadline');
    const mounted = lookup(nodes.mounted);
    expect(mounted.fsUsedBytes).toBeGreaterThanOrEqual(3 * MiB);
    expect(mounted.fsAvailableBytes).toBeLessThan(mounted.fsSizeBytes ?? 0);
    expect(mounted.fsSizeBytes).toBeLessThanOrEqual(32 * MiB);
    expect(mounted.mounts).toEqual([{ mountPoint, fsType: 'ext4', readOnly: false }]);
    expect(ext4.fsSizeBytes).toBeUndefined(); // not mounted
    expect(ext4.mode).toMatch(/^b[-r][-w]/);
  });

  it('devmove devices shows FSTYPE and LABEL; --json and info show every field', async () => {
    const out = capture();
    const err = capture();
    expect(await runDevicesCommand([], { stdout: out.stream, stderr: err.stream })).toBe(0);
    const rows = out.text().split('\n');
    expect(rows[0]).toMatch(/^NAME +SIZE +TYPE +RO +FSTYPE +LABEL +MODEL +SERIAL +MOUNTPOINTS +HOLDERS$/);
    const row = (node: string): string | undefined => rows.find((r) => r.replace(/^[├└│─ ]+/, '').startsWith(`${path.basename(node)} `));
    expect(row(nodes.vfat)).toMatch(new RegExp(`^${path.basename(nodes.vfat)} +16 MiB +loop +1 +vfat +${VFAT_LABEL}$`));
    expect(row(nodes.ext4)).toMatch(new RegExp(`ext4 +${EXT4_LABEL}$`));
    expect(row(`${nodes.gpt}p2`)).toMatch(/part +0 +swap +gpt-swap$/);
    expect(row(nodes.blank)).toMatch(/loop +0$/);
    // Probe notes name only devices this file did not make (it made every one of its own readable).
    const mine = new Set(allNodes().map((n) => path.basename(n)));
    for (const note of err.text().split('\n').filter(Boolean)) {
      expect(note).toMatch(/^devmove: FSTYPE, LABEL and UUID unknown for /);
      for (const name of mine) expect(note).not.toMatch(new RegExp(`\\b${name}\\b`));
    }

    const json = capture();
    expect(await runDevicesCommand(['--json'], { stdout: json.stream, stderr: capture().stream })).toBe(0);
    const parsed = (JSON.parse(json.text()) as { devices: Device[] }).devices.find((d) => d.name === `${path.basename(nodes.gpt)}p1`);
    expect(parsed).toEqual(JSON.parse(JSON.stringify(lookup(`${nodes.gpt}p1`))));

    const info = capture();
    expect(await runDevicesCommand(['info', `${nodes.gpt}p2`], { stdout: info.stream, stderr: capture().stream })).toBe(0);
    for (const line of ['fstype:              swap', 'label:               gpt-swap', `partition type:      ${LINUX_SWAP_GUID}`, 'partition label:     swap', 'partition flags:     0x1', 'contents from:       libblkid']) {
      expect(info.text()).toContain(`${line}\n`);
    }
    expect(info.text()).toMatch(/^mode: +b[-rwx]{9}$/m);
  });

  it('without libblkid the content fields say ELIBACC and everything else still works', () => {
    const run = nodeScript(
      `
      const { devices } = require(process.env.DEVMOVE_DIST);
      const mine = ${JSON.stringify(allNodes())}.map((n) => devices.lookup(n));
      const listed = devices.list().filter((d) => mine.some((m) => m.name === d.name));
      const status = require(process.env.DEVMOVE_DIST).deviceManagerStatus();
      console.log(JSON.stringify({ mine, listed: listed.length, status: { ...status.libblkid, code: status.libblkid.error?.code } }));
      `,
      { DEVMOVE_LIBBLKID: MISSING_LIBBLKID },
    );
    expect(run.stderr).toBe('');
    const out = JSON.parse(run.stdout) as { mine: Device[]; listed: number; status: { available: boolean; library: string; code?: string } };
    expect(out.listed).toBe(out.mine.length);
    expect(out.status).toMatchObject({ available: false, library: MISSING_LIBBLKID, code: 'ELIBACC' });
    for (const d of out.mine) {
      expect(d.contentProbe.source, d.name).toBe('libblkid');
      expect(d.contentProbe.error, d.name).toMatchObject({ code: 'ELIBACC', errno: -79, syscall: 'dlopen', path: MISSING_LIBBLKID });
      expect(d.contentProbe.error?.message).toContain(`${MISSING_LIBBLKID} is not available: install the libblkid1 package`);
      for (const [field] of BLKID_FIELDS) expect(d[field], `${d.name} ${field}`).toBeUndefined();
      expect(d.sizeBytes).toBeGreaterThan(0);
      expect(d.mode).toMatch(/^b/);
      expect(d.minIoBytes).toBeGreaterThan(0);
    }
    const cli = spawnSync(process.execPath, [CLI, 'devices'], { env: { ...process.env, DEVMOVE_LIBBLKID: MISSING_LIBBLKID }, encoding: 'utf8' });
    expect(cli.status).toBe(0);
    expect(cli.stdout).toMatch(new RegExp(`^${path.basename(nodes.vfat)} +16 MiB +loop +1$`, 'm'));
    expect(cli.stderr).toBe(
      `devmove: FSTYPE, LABEL and UUID unknown: ELIBACC: cannot access a needed shared library, dlopen '${MISSING_LIBBLKID}': ${MISSING_LIBBLKID} is not available: install the libblkid1 package (${MISSING_LIBBLKID}: cannot open shared object file: No such file or directory)\n`,
    );
    const info = spawnSync(process.execPath, [CLI, 'devices', 'info', nodes.ext4], { env: { ...process.env, DEVMOVE_LIBBLKID: MISSING_LIBBLKID }, encoding: 'utf8' });
    expect(info.status).toBe(0);
    expect(info.stdout).toMatch(/^contents from: +unknown: ELIBACC: /m);
    expect(info.stdout).not.toMatch(/^(fstype|label):/m);
  });

  it('without read permission on a device the fields say EACCES, per device', () => {
    const run = nodeScript(
      `const d = require(process.env.DEVMOVE_DIST).devices.lookup(${JSON.stringify(nodes.ext4)}); console.log(JSON.stringify(d));`,
      {},
      ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'],
    );
    expect(run.stderr).toBe('');
    const d = JSON.parse(run.stdout) as Device;
    expect(fs.statSync(nodes.ext4).mode & 0o004).toBe(0); // the node is not world-readable
    expect(d.contentProbe).toEqual({
      source: 'libblkid',
      error: { code: 'EACCES', errno: -13, syscall: 'open', path: nodes.ext4, message: `EACCES: permission denied, open '${nodes.ext4}'` },
    });
    expect(d.fsType).toBeUndefined();
    expect(d.readAheadBytes).toBe(384 * 1024); // sysfs needs no permission
  });

  it('watch events open no device: content only from a udev database; lookup() reads it', async () => {
    const dir = tempDir();
    const image = makeImage(dir, 'watched.img', 16 * MiB, 'zero');
    execFileSync('mkfs.vfat', ['-n', 'WATCHED', image], { stdio: 'pipe' });
    const watcher = watch();
    try {
      const seen = new Promise<DeviceEvent>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no attach event within 10 s')), 10_000);
        watcher.on('event', (event) => {
          if (event.present && event.device.loop?.backingFile === image) {
            clearTimeout(timer);
            resolve(event);
          }
        });
      });
      const node = attachLoop(image, { readOnly: true });
      const event = await seen;
      if (!fs.existsSync('/run/udev/data')) {
        expect(event.device).toMatchObject({ name: path.basename(node), contentProbe: { source: 'none' } });
        expect((event.device as Device).fsType).toBeUndefined();
      }
      expect(lookup(node)).toMatchObject({ fsType: 'vfat', label: 'WATCHED', contentProbe: { source: 'libblkid' } });
    } finally {
      watcher.close();
    }
  });

  it('a copy never loads libblkid; the device manager does', () => {
    const dir = tempDir();
    const source = makeImage(dir, 'source.img', 1 * MiB);
    const run = nodeScript(`
      const fs = require('node:fs');
      const { copy, devices } = require(process.env.DEVMOVE_DIST);
      const loaded = () => fs.readFileSync('/proc/self/maps', 'utf8').includes('libblkid');
      (async () => {
        await copy({ source: ${JSON.stringify(source)}, target: ${JSON.stringify(path.join(dir, 'target.img'))} });
        const afterCopy = loaded();
        devices.lookup(${JSON.stringify(nodes.ext4)});
        console.log(JSON.stringify({ afterCopy, afterLookup: loaded() }));
      })();
    `);
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({ afterCopy: false, afterLookup: true });
  });
});
