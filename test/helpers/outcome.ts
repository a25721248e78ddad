// What a copy did, as the tests read it: the DevmoveError a job rejected
// with, and what the kernel counted on a device.
import fs from 'node:fs';
import path from 'node:path';

import { DevmoveError } from '../../src/index';

/** The DevmoveError the promise rejects with; throws when it resolves or rejects with anything else. */
export async function rejection(promise: PromiseLike<unknown>): Promise<DevmoveError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DevmoveError) return error;
    throw error;
  }
  throw new Error('the copy did not fail');
}

/** 512-byte sectors the block device has read since boot (/sys/block/NAME/stat, field 3). */
export function sectorsRead(device: string): number {
  const fields = fs.readFileSync(`/sys/block/${path.basename(device)}/stat`, 'utf8').trim().split(/\s+/);
  return Number(fields[2]);
}
