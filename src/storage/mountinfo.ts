// /proc/self/mountinfo, parsed (proc(5)): which block devices are mounted where.
import fs from 'node:fs';

export interface MountEntry {
  mountId: number;
  parentId: number;
  major: number;
  minor: number;
  /** Root of the mount within the filesystem. */
  root: string;
  mountPoint: string;
  /** Per-mount options: 'rw' or 'ro', 'relatime', ... */
  options: string[];
  fsType: string;
  /** Mount source, e.g. '/dev/loop3'. */
  source: string;
  /** Superblock options. */
  superOptions: string[];
  readOnly: boolean;
}

/** mountinfo escapes space, tab, newline and backslash as octal (\040...). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    if (separator < 0 || fields.length < separator + 4) continue; // malformed: skip, never guess
    const [major, minor] = fields[2].split(':').map(Number);
    const options = fields[5].split(',');
    const superOptions = fields[separator + 3].split(',');
    entries.push({
      mountId: Number(fields[0]),
      parentId: Number(fields[1]),
      major,
      minor,
      root: unescape(fields[3]),
      mountPoint: unescape(fields[4]),
      options,
      fsType: fields[separator + 1],
      source: unescape(fields[separator + 2]),
      superOptions,
      readOnly: options.includes('ro') || superOptions.includes('ro'),
    });
  }
  return entries;
}

export function readMountInfo(file = '/proc/self/mountinfo'): MountEntry[] {
  return parseMountInfo(fs.readFileSync(file, 'utf8'));
}

/** Mounts of the filesystem on device major:minor. */
export function mountsOf(major: number, minor: number, entries: readonly MountEntry[] = readMountInfo()): MountEntry[] {
  return entries.filter((e) => e.major === major && e.minor === minor);
}
