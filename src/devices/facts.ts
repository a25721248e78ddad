// Two small facts about a device that lsblk shows beside sysfs and libblkid: who may open its
// node (OWNER, GROUP, MODE: stat of the node), and how full the filesystem on it is when mounted
// (FSSIZE, FSAVAIL, FSUSED: statfs of a mount point).
import fs from 'node:fs';

import type { MountEntry } from '../storage/mountinfo';

export interface NodeAccess {
  /** The node's owner, by name (lsblk OWNER); absent when the uid has no name. */
  owner?: string;
  /** The node's group, by name (lsblk GROUP). */
  group?: string;
  /** Type and permissions as `ls -l` prints them: 'brw-rw----' (lsblk MODE). */
  mode?: string;
}

export interface FilesystemUsage {
  /** Size of the mounted filesystem (lsblk FSSIZE). */
  fsSizeBytes?: number;
  /** Space available to unprivileged users (lsblk FSAVAIL). */
  fsAvailableBytes?: number;
  /** Space in use (lsblk FSUSED). */
  fsUsedBytes?: number;
}

const TYPE_CHARS: ReadonlyArray<[number, string]> = [
  [fs.constants.S_IFBLK, 'b'],
  [fs.constants.S_IFCHR, 'c'],
  [fs.constants.S_IFDIR, 'd'],
  [fs.constants.S_IFLNK, 'l'],
  [fs.constants.S_IFIFO, 'p'],
  [fs.constants.S_IFSOCK, 's'],
  [fs.constants.S_IFREG, '-'],
];

// Set-user-ID, set-group-ID and sticky bits (POSIX values; Node's fs.constants lacks them).
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;

/** st_mode as ten characters, like `ls -l` and lsblk's MODE: 0o60660 → 'brw-rw----'. */
export function modeString(mode: number): string {
  const type = TYPE_CHARS.find(([bits]) => (mode & fs.constants.S_IFMT) === bits)?.[1] ?? '?';
  const triple = (shift: number, special: number, specialChar: string): string => {
    const bits = (mode >> shift) & 7;
    const exec = (bits & 1) !== 0;
    const x = (mode & special) !== 0 ? (exec ? specialChar : specialChar.toUpperCase()) : exec ? 'x' : '-';
    return `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${x}`;
  };
  return type + triple(6, S_ISUID, 's') + triple(3, S_ISGID, 's') + triple(0, S_ISVTX, 't');
}

/** Owner, group and mode of a device node; empty when it cannot be stat'ed (no node in this /dev). */
export function nodeAccess(node: string, namesOf: (uid: number, gid: number) => { user?: string; group?: string }): NodeAccess {
  let st: fs.Stats;
  try {
    st = fs.statSync(node);
  } catch {
    return {};
  }
  const names = namesOf(st.uid, st.gid);
  const access: NodeAccess = { mode: modeString(st.mode) };
  if (names.user !== undefined) access.owner = names.user;
  if (names.group !== undefined) access.group = names.group;
  return access;
}

/**
 * Size, available and used bytes of the filesystem on a mounted device: statfs of one of its mount
 * points (every mount of one filesystem reports the same superblock). A mount point that another
 * mount covers (a later mountinfo entry with the same path) would report that one's filesystem, so
 * it is not used. Node's statfs gives f_bsize where lsblk multiplies by f_frsize; Linux fills
 * f_frsize with f_bsize unless the filesystem sets its own (ext4 and vfat do not: the tests
 * compare these figures with lsblk's).
 */
export function filesystemUsage(mounts: readonly MountEntry[], all: readonly MountEntry[]): FilesystemUsage {
  for (const mount of mounts) {
    const at = all.indexOf(mount);
    if (all.slice(at + 1).some((later) => later.mountPoint === mount.mountPoint)) continue;
    let st: fs.BigIntStatsFs;
    try {
      st = fs.statfsSync(mount.mountPoint, { bigint: true });
    } catch {
      continue;
    }
    return {
      fsSizeBytes: Number(st.bsize * st.blocks),
      fsAvailableBytes: Number(st.bsize * st.bavail),
      fsUsedBytes: Number(st.bsize * (st.blocks - st.bfree)),
    };
  }
  return {};
}
