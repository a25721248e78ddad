// Pipes as sources and targets ('-' for standard input/output, or a named
// FIFO): what cannot apply to a stream is refused here, before anything is
// opened, with a message that says why. The engine refuses the same (a
// backstop), but only after opening, and a FIFO's open waits for its peer.
import fs from 'node:fs';

import type { NativePlan } from '../addon/binding';
import { invalidOption } from '../base/errors';
import { STANDARD_STREAM } from '../base/types';


/** Whether a path names a stream: '-', or an existing FIFO or socket. */
export function isStream(path: string): boolean {
  if (path === STANDARD_STREAM) return true;
  try {
    const st = fs.statSync(path);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}

function shown(path: string, role: 'source' | 'target'): string {
  if (path !== STANDARD_STREAM) return `${path} is a pipe`;
  return role === 'source' ? 'the source is standard input' : 'the target is standard output';
}

const O_APPEND = 0o2000;

/**
 * Whether '-' in this role is storage: standard input or output redirected from or to a regular file
 * or a block device, which the engine opens again through /proc/self/fd with random access — unless
 * it is in append mode (`>>`), which keeps it a stream (native/endpoint.cc, OpenStandardStream).
 */
function standardStreamIsStorage(role: 'source' | 'target'): boolean {
  const fd = role === 'source' ? 0 : 1;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() && !st.isBlockDevice()) return false;
    const flags = /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return flags !== null && (parseInt(flags[1], 8) & O_APPEND) === 0;
  } catch {
    return false;
  }
}

/** Throws an invalid-option error for a mapfile or verify on a stream, or standard output given twice. */
export function refuseWhatStreamsCannotDo(plan: NativePlan, mapfile: string | undefined): void {
  if (plan.targets.filter((t) => t.path === STANDARD_STREAM).length > 1) {
    throw invalidOption("standard output ('-') can be a target only once", false);
  }
  const sides: Array<[string, 'source' | 'target']> = [[plan.source.path, 'source'], ...plan.targets.map((t): [string, 'target'] => [t.path, 'target'])];
  for (const [path, role] of sides) {
    if (!isStream(path)) continue;
    if (path === STANDARD_STREAM && standardStreamIsStorage(role)) {
      // Verify can read a redirected file or device again. A mapfile cannot name it for a resume: the
      // shell's `>` that would give it again truncates it.
      if (mapfile === undefined) continue;
      const flag = role === 'source' ? 'if=' : 'of=';
      throw invalidOption(`a mapfile (options.mapfile, --mapfile) cannot be used: ${shown(path, role)} (a file or device given by redirection), which a resume could not name again; give it as ${flag}PATH instead`, false);
    }
    if (mapfile !== undefined) {
      throw invalidOption(`a mapfile (options.mapfile, --mapfile) cannot be used: ${shown(path, role)}, and a mapfile records positions to resume from, which a stream does not have`, false);
    }
    if (plan.verify === true) {
      throw invalidOption(`verify (options.verify, --verify) cannot be used: ${shown(path, role)}, and verify reads source and target again, which a stream cannot be`, false);
    }
  }
}
