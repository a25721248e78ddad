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

/** Throws an invalid-option error for a mapfile or verify on a stream, or standard output given twice. */
export function refuseWhatStreamsCannotDo(plan: NativePlan, mapfile: string | undefined): void {
  if (plan.targets.filter((t) => t.path === STANDARD_STREAM).length > 1) {
    throw invalidOption("standard output ('-') can be a target only once", false);
  }
  const sides: Array<[string, 'source' | 'target']> = [[plan.source.path, 'source'], ...plan.targets.map((t): [string, 'target'] => [t.path, 'target'])];
  for (const [path, role] of sides) {
    if (!isStream(path)) continue;
    if (mapfile !== undefined) {
      throw invalidOption(`a mapfile (options.mapfile, --mapfile) cannot be used: ${shown(path, role)}, and a mapfile records positions to resume from, which a stream does not have`, false);
    }
    if (plan.verify === true) {
      throw invalidOption(`verify (options.verify, --verify) cannot be used: ${shown(path, role)}, and verify reads source and target again, which a stream cannot be`, false);
    }
  }
}
