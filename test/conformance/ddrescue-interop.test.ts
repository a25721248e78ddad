// GNU ddrescue and devmove continue each other's rescues on a real faulty
// block device (test/helpers/faulty.ts): ddrescue → devmove (devmove resumes
// a map ddrescue left, including `ddrescuelog -A`'s annotated form) and
// devmove → ddrescue (ddrescue resumes devmove's map). Each result is checked
// with ddrescue's own tools (`ddrescuelog --compare-mapfile` against a map
// ddrescue made alone, `ddrescuelog --list-blocks`) and byte for byte against
// the readable source. Debian package: gddrescue (ddrescue, ddrescuelog).
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RescueMap } from '../../src/resume/mapfile';
import { devmove, installed, tool, type Run } from '../helpers/cli';
import { detachAll, readRange } from '../helpers/devices';
import { FaultyDevice, skipWithoutFuse } from '../helpers/faulty';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 4 * MiB;
/** Unreadable ranges, in 512-byte sectors (the loop device's logical block). */
const BAD: ReadonlyArray<[number, number]> = [
  [MiB + 4 * KiB, 1024],
  [2 * MiB + 512 * KiB, 8 * KiB + 512],
  [3 * MiB + 100 * 512, 512],
];
const hasDdrescue = installed('ddrescue') && installed('ddrescuelog');

/** ddrescue with direct access to the device: unreadable sectors found to the sector (buffered reads fail whole pages). */
function ddrescue(args: string[]): Run {
  return tool('ddrescue', ['-d', '-q', ...args], 120_000);
}

/** Sector numbers (512 bytes) of the blocks of the given ddrescue statuses, as ddrescuelog lists them. */
function listed(map: string, statuses: string): number[] {
  const r = tool('ddrescuelog', ['-b', '512', `--list-blocks=${statuses}`, map]);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

function sectorsOf(ranges: ReadonlyArray<readonly [number, number]>): number[] {
  const out: number[] = [];
  for (const [offset, length] of ranges) for (let s = offset / 512; s < (offset + length) / 512; s++) out.push(s);
  return out;
}

describe.skipIf(skipWithoutFuse || !hasDdrescue)('GNU ddrescue mapfiles, both directions', () => {
  let dev: FaultyDevice;
  let dir: string;
  let readable: Buffer;
  /** The map ddrescue makes by itself in one run: what every combination must end with. */
  let reference: string;

  beforeAll(async () => {
    dev = await FaultyDevice.create({ sizeBytes: SIZE, readErrors: BAD, seed: 'ddrescue-interop' });
    dir = fs.mkdtempSync('/var/tmp/devmove-ddrescue-');
    readable = fs.readFileSync(dev.imagePath);
    for (const [offset, length] of BAD) readable.fill(0, offset, offset + length);
    reference = path.join(dir, 'reference.map');
    const r = ddrescue([dev.device, path.join(dir, 'reference.img'), reference]);
    expect(r.status, r.stderr).toBe(0);
    expect(listed(reference, '-')).toEqual(sectorsOf(BAD));
  });
  afterAll(() => {
    FaultyDevice.destroyAll();
    detachAll();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The rescue is complete and agrees with ddrescue's own: no untried, untrimmed or unscraped area, the same bad sectors, the readable bytes. */
  function expectComplete(map: string, image: string): void {
    expect(listed(map, '?*/')).toEqual([]);
    expect(listed(map, '-')).toEqual(sectorsOf(BAD));
    const compared = tool('ddrescuelog', [`--compare-mapfile=${reference}`, map]);
    expect(compared.status, compared.stderr).toBe(0);
    const status = tool('ddrescuelog', ['-t', map]);
    expect(status.status, status.stderr).toBe(0);
    expect(readRange(image, 0, SIZE).equals(readable)).toBe(true);
  }

  it('ddrescue → devmove: devmove finishes a map ddrescue left with untried, untrimmed and unscraped areas (conv=notrunc)', () => {
    const map = path.join(dir, 'a.map');
    const image = path.join(dir, 'a.img');
    // No scraping, and only the first 3 MiB: '+', '-', '/' (or '*') and '?' areas remain.
    const first = ddrescue(['-n', '-s', '3Mi', dev.device, image, map]);
    expect(first.status, first.stderr).toBe(0);
    expect(listed(map, '?').length).toBeGreaterThan(0);
    expect(listed(map, '*/').length).toBeGreaterThan(0);
    const ours = devmove([`if=${dev.device}`, `of=${image}`, 'conv=noerror,notrunc', `--mapfile=${map}`, 'status=none']);
    expect(ours.status).toBe(1); // unreadable sectors: exit 1 (README)
    expectComplete(map, image);
  });

  it("ddrescue → devmove through `ddrescuelog -A` (comments after the data) and a '0X' prefix", () => {
    const map = path.join(dir, 'b.map');
    const image = path.join(dir, 'b.img');
    expect(ddrescue(['-n', '-s', '2Mi', dev.device, image, map]).status).toBe(0);
    const annotated = tool('ddrescuelog', ['-A', map]);
    expect(annotated.status, annotated.stderr).toBe(0);
    expect(annotated.stdout).toMatch(/^0x[0-9A-F]{8}\s+\S+\s+\d+\t# /m);
    fs.writeFileSync(map, annotated.stdout.replace(/^0x/gm, '0X'));
    const ours = devmove([`if=${dev.device}`, `of=${image}`, 'conv=noerror,notrunc', `--mapfile=${map}`, 'status=none']);
    expect(ours.stderr).toBe('');
    expect(ours.status).toBe(1);
    expectComplete(map, image);
  });

  it('devmove → ddrescue: ddrescue finishes the map devmove left when it stopped at the first unreadable sector', () => {
    const map = path.join(dir, 'c.map');
    const image = path.join(dir, 'c.img');
    const ours = devmove([`if=${dev.device}`, `of=${image}`, `--mapfile=${map}`, 'status=none']);
    expect(ours.status).toBe(1);
    expect(ours.stderr).toMatch(new RegExp(`EIO from read at byte ${BAD[0][0]}\\)`));
    expect(listed(map, '?').length).toBeGreaterThan(0);
    const theirs = ddrescue([dev.device, image, map]);
    expect(theirs.status, theirs.stderr).toBe(0);
    expectComplete(map, image);
  });

  it('devmove → ddrescue: after a complete devmove run ddrescue has nothing left to do, and the status line is where ddrescue leaves it', () => {
    const map = path.join(dir, 'd.map');
    const image = path.join(dir, 'd.img');
    expect(devmove([`if=${dev.device}`, `of=${image}`, 'conv=noerror', `--mapfile=${map}`, 'status=none']).status).toBe(1);
    expectComplete(map, image);
    const parsed = RescueMap.parse(fs.readFileSync(map, 'utf8'), map);
    // ddrescue's current_pos after a finished run: where its last read began, inside the domain.
    expect(parsed.currentStatus).toBe('+');
    expect(parsed.currentPos).toBeLessThan(SIZE);
    const ref = RescueMap.parse(fs.readFileSync(reference, 'utf8'), reference);
    expect([ref.currentStatus, ref.currentPos < SIZE]).toEqual(['+', true]);
    const before = fs.readFileSync(map, 'utf8').split('\n').filter((l) => !l.startsWith('#'));
    const again = ddrescue([dev.device, image, map]);
    expect(again.status, again.stderr).toBe(0);
    expect(fs.readFileSync(map, 'utf8').split('\n').filter((l) => !l.startsWith('#'))).toEqual(before);
    expect(readRange(image, 0, SIZE).equals(readable)).toBe(true);
  });
});
