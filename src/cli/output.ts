// What every devmove subcommand shares on the command line: exit codes, where
// output goes, and dd's statistics lines.
import fs from 'node:fs';
import path from 'node:path';

import { formatBytesIEC, formatBytesSI } from '../base/size';
import type { CopyProgress } from '../base/types';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Where the CLI writes; replaceable so the demo and tests can reuse it. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}


/** dd's "N+M records" counts for a byte total and a block size. */
export function records(bytes: number, blockSize: number): string {
  const full = Math.floor(bytes / blockSize);
  const partial = bytes % blockSize === 0 ? 0 : 1;
  return `${full}+${partial} records`;
}

function formatSeconds(seconds: number): string {
  // like printf's %g with dd's precision
  if (seconds === 0) return '0';
  return String(Number(seconds.toPrecision(6)));
}

/** dd's transfer line: "N bytes (1.1 GB, 1.0 GiB) copied, 0.6 s, 1.8 GB/s". */
export function transferLine(bytes: number, seconds: number): string {
  const rate = seconds > 0 ? `${formatBytesSI(bytes / seconds)}/s` : 'Infinity B/s';
  const si = formatBytesSI(bytes);
  const sizes = bytes < 1000 ? '' : ` (${si}, ${formatBytesIEC(bytes)})`;
  const noun = bytes === 1 ? 'byte' : 'bytes';
  return `${bytes} ${noun}${sizes} copied, ${formatSeconds(seconds)} s, ${rate}`;
}

function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export function liveLine(p: CopyProgress): string {
  return `${formatBytesIEC(p.bytesDone)} / ${formatBytesIEC(p.bytesTotal)} (${p.percent.toFixed(1)}%)  ${formatBytesSI(p.bytesPerSecond)}/s  ETA ${formatEta(p.etaSeconds)}`;
}


/**
 * The parenthesis every error line ends with: which system call failed and where, or that devmove
 * refused before writing anything.
 */
export function errorClause(error: { code: string; syscall?: string; operation?: string; offset?: number }): string {
  const where = error.offset !== undefined ? ` at byte ${error.offset}` : '';
  if (error.syscall !== undefined) return `(${error.code} from ${error.syscall}${where})`;
  return error.operation === 'copy' || error.operation === undefined ? `(${error.code}; nothing was written)` : `(${error.code} from ${error.operation})`;
}
