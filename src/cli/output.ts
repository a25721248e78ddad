// What every devmove subcommand shares on the command line: exit codes, where
// output goes, and dd's statistics lines.
import fs from 'node:fs';
import path from 'node:path';

import { formatBytesIEC, formatBytesSI } from '../base/size';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Where the CLI writes; replaceable so the demo and tests can reuse it. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

/**
 * The process's own stdout and stderr, created on first use: Node builds a stream (and loads
 * net/stream) when process.stdout is first read, ~3 ms that a copy can spend after the engine has
 * started, or never (status=none without --json writes nothing on success).
 */
export function processIo(): CliIo {
  return {
    get stdout() {
      return process.stdout;
    },
    get stderr() {
      return process.stderr;
    },
  };
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

/**
 * printf's %.Nf: correctly rounded, and a value exactly halfway goes to the
 * even digit (toFixed rounds those up: 0.25 is '0.3' there, '0.2' in C).
 * toFixed(100) is the double's exact decimal expansion, so a tie is exact.
 */
function fixed(value: number, digits: number): string {
  if (Math.abs(value) >= 1e21) return value.toFixed(digits);
  const exact = value.toFixed(100);
  const cut = exact.indexOf('.') + 1 + digits;
  if (/^50*$/.test(exact.slice(cut))) {
    const kept = exact.slice(0, digits === 0 ? cut - 1 : cut);
    if (Number(kept[kept.length - 1]) % 2 === 0) return kept;
  }
  return value.toFixed(digits);
}

/** printf's %g (6 significant digits): dd prints the final time with it ('0.453834', '4.892e-06', '1.23457e+06'). */
export function formatSeconds(seconds: number): string {
  if (seconds === 0) return '0';
  const [mantissa, exponentText] = seconds.toExponential(5).split('e');
  const exponent = Number(exponentText);
  const strip = (text: string): string => (text.includes('.') ? text.replace(/\.?0+$/, '') : text);
  if (exponent < -4 || exponent >= 6) {
    return `${strip(mantissa)}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
  }
  return strip(fixed(seconds, 5 - exponent));
}

const SI_PREFIXES = 'kMGTPEZYRQ';

/**
 * dd's rate: GNU human_readable() on bytes × 10^9 / elapsed nanoseconds. That
 * quotient is not an integer, so gnulib takes its floating-point path: the
 * scale starts at kilo (213 B/s is '0.2 kB/s', nothing is '0.0 kB/s'), one
 * decimal unless that makes more than 4 characters ('45.5 MB/s', '171 MB/s').
 */
export function formatRate(bytes: number, seconds: number): string {
  if (!(seconds > 0)) return 'Infinity B/s';
  const amount = bytes / seconds;
  let exponent = 1;
  let scale = 1000;
  while (scale * 1000 <= amount && exponent < SI_PREFIXES.length) {
    scale *= 1000;
    exponent++;
  }
  let text = fixed(amount / scale, 1);
  if (text.length > 4) text = fixed(amount / scale, 0);
  return `${text} ${SI_PREFIXES[exponent - 1]}B/s`;
}

/**
 * dd's transfer line: "N bytes (1.1 GB, 1.0 GiB) copied, 0.6 s, 1.8 GB/s".
 * A size that needs no prefix is left out, as dd does: "999 bytes copied",
 * "1000 bytes (1.0 kB) copied". Progress lines (status=progress) show whole
 * seconds, the final line %g.
 */
export function transferLine(bytes: number, seconds: number, progress = false): string {
  const si = formatBytesSI(bytes);
  const iec = formatBytesIEC(bytes);
  const noun = bytes === 1 ? 'byte' : 'bytes';
  const sizes = si.endsWith(' B') ? '' : iec.endsWith(' B') ? ` (${si})` : ` (${si}, ${iec})`;
  const time = progress ? fixed(seconds, 0) : formatSeconds(seconds);
  return `${bytes} ${noun}${sizes} copied, ${time} s, ${formatRate(bytes, seconds)}`;
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
