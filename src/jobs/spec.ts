// What a job is once read: its pairs with copy() options, the job-file error
// that names a field, and field paths. Shared by the validator (jobfile.ts),
// the conflict check (conflicts.ts) and the runner (job.ts).
import type { DirectMode, Durability, HashAlgorithm, TargetErrorPolicy as OnTargetError, ZeroBlocks } from '../base/types';

export const JOB_FILE_VERSION = 1;


/**
 * One pair's copy() options, as the job file gives them (defaults merged in, sizes in
 * bytes, paths resolved). The names are copy()'s; several of them (targets, rate,
 * background, noError, retries, mapfile, retryBad, verify, hash, zeroBlocks,
 * onTargetError) are being added to CopyOptions by the Migration-jobs engine work.
 */
export interface PairOptions {
  source: string;
  /** Exactly one of target and targets is set. */
  target?: string;
  targets?: string[];
  sourceOffset?: number;
  targetOffset?: number;
  length?: number;
  maxLength?: number;
  blockSize?: number;
  /** What the file asks for; the job's shared budget may lower it (see allocateBudget). */
  queueDepth?: number;
  direct?: DirectMode | { source?: DirectMode; target?: DirectMode };
  durability?: Durability;
  createTarget?: boolean;
  truncateTarget?: boolean | number;
  force?: boolean;
  /** Bytes per second; absent means unlimited (a 0 in the file is left out). */
  rate?: number;
  background?: boolean;
  noError?: boolean;
  retries?: number;
  mapfile?: string;
  domainMapfile?: string;
  retryBad?: boolean;
  verify?: boolean | 'strict' | 'behind';
  onlyChanged?: boolean;
  hash?: HashAlgorithm;
  zeroBlocks?: ZeroBlocks;
  onTargetError?: OnTargetError;
}

export interface JobPair {
  /** Unique in the job; 'pair-<index>' unless the file names it. */
  name: string;
  /** Position in the file's pairs array. */
  index: number;
  options: PairOptions;
}

export interface JobSpec {
  version: 1;
  /** The job file's name as given, for messages; absent for a job built in code. */
  fileName?: string;
  /** Total I/Os in flight over all pairs. */
  maxQueueDepth: number;
  /** Total bytes of buffers over all pairs. */
  maxBufferMemory: number;
  /** Whether the two limits above were given in the file or are defaults. */
  maxQueueDepthIsDefault: boolean;
  maxBufferMemoryIsDefault: boolean;
  pairs: JobPair[];
}

/** A job file that cannot be read as a job; the message names the file and the field. */
export class JobFileError extends Error {
  override name = 'JobFileError';
  readonly code = 'EJOBFILE';
  /** The file name as given, if any. */
  readonly fileName: string | undefined;
  /** The field path ('pairs[1].blockSize'); '' for the whole document; undefined for JSON syntax errors. */
  readonly field: string | undefined;
  /** What is wrong, without the file and field. */
  readonly reason: string;
  /** 1-based position of a JSON syntax error. */
  readonly line: number | undefined;
  readonly column: number | undefined;

  constructor(init: { fileName?: string | undefined; field?: string; reason: string; line?: number; column?: number }) {
    const where =
      init.line !== undefined ? `${init.fileName ?? 'job'}:${init.line}:${init.column ?? 1}: ` : init.fileName !== undefined ? `${init.fileName}: ` : '';
    super(`${where}${init.field ? `${init.field}: ` : ''}${init.reason}`);
    this.fileName = init.fileName;
    this.field = init.field;
    this.reason = init.reason;
    this.line = init.line;
    this.column = init.column;
  }
}

export interface ValidateOptions {
  /** Named in messages, e.g. 'job.json'. */
  fileName?: string;
  /** Relative paths are resolved against it; without it they are left as written (copy() resolves them against the working directory). */
  baseDir?: string;
}

/** Field path of a member: pairs[1].blockSize, or pairs[1]["odd key"]. */
export function fieldPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  const member = /^[A-Za-z_$][\w$]*$/.test(key) ? key : JSON.stringify(key);
  if (parent === '') return member;
  return member.startsWith('"') ? `${parent}[${member}]` : `${parent}.${member}`;
}

