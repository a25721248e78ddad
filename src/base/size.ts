/**
 * Byte counts in GNU dd's grammar, and dd-style human formatting.
 *
 * Grammar (GNU coreutils dd, as of coreutils 9.x):
 *
 *   value  := factor ('x' factor)*          e.g. 2x512, 2x3x4K
 *   factor := digits [unit] | unit          a bare unit means 1 of it: 'M' = 1M
 *   unit   := 'c' (1) | 'w' (2) | 'b' (512)
 *           | 'B' (1; only right after digits: '14B')
 *           | L | L 'iB'                     1024^n  (K, KiB, M, MiB, ...)
 *           | L 'B'                          1000^n  (kB, KB, MB, ...)
 *   L      := 'K' | 'k' | 'M' | 'G' | 'T' | 'P' | 'E' | 'Z' | 'Y' | 'R' | 'Q'  (n = 1..10)
 *
 * Digits are ASCII decimal only. Signs, whitespace, fractions and hexadecimal
 * are rejected (dd itself would read '0x10' as 0 × 10 = 0, which is never what
 * anybody means). Every value must fit in Number.MAX_SAFE_INTEGER; all
 * arithmetic is done with BigInt so overflow is detected exactly.
 */

/** Thrown by {@link parseDdNumber} for any text that is not a valid byte count. */
export class SizeSyntaxError extends Error {
  /** The text that was parsed, verbatim. */
  readonly text: string;
  /** What is wrong with it, without the text itself (e.g. "unknown size suffix 'Q3'"). */
  readonly reason: string;

  constructor(text: string, reason: string) {
    super(`invalid size ${quote(text)}: ${reason}`);
    this.name = 'SizeSyntaxError';
    this.text = text;
    this.reason = reason;
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Power letters in order of exponent: K=1, M=2, ... Q=10. */
const POWER_LETTERS = 'KMGTPEZYRQ';

const SUFFIX_HELP =
  "valid suffixes: c=1, w=2, b=512, kB/KB=1000, K/k/KiB=1024, MB, M/MiB, " +
  'and likewise G, T, P, E, Z, Y, R, Q';

/** Quote a user string for an error message: 'text', or a JSON string if it holds odd characters. */
function quote(text: string): string {
  return /^[\x20-\x7e]*$/.test(text) && !text.includes("'") ? `'${text}'` : JSON.stringify(text);
}

/** Multiplier for a unit string, or undefined if it is not a unit. `afterDigits` allows plain 'B'. */
function unitMultiplier(unit: string, afterDigits: boolean): bigint | undefined {
  switch (unit) {
    case 'c':
      return 1n;
    case 'w':
      return 2n;
    case 'b':
      return 512n;
    case 'B':
      return afterDigits ? 1n : undefined;
    default:
      break;
  }
  const letter = unit[0] === 'k' ? 'K' : unit[0];
  if (letter === undefined) return undefined;
  const exponent = POWER_LETTERS.indexOf(letter) + 1;
  if (exponent === 0) return undefined;
  const rest = unit.slice(1);
  if (rest === '' || rest === 'iB') return 1024n ** BigInt(exponent);
  if (rest === 'B') return 1000n ** BigInt(exponent);
  return undefined;
}

/** A short hint for a few common mistakes in a suffix. */
function suffixHint(unit: string): string {
  const lower = unit.toLowerCase();
  const fixes: Record<string, string> = {
    m: 'M', g: 'G', t: 'T', p: 'P', e: 'E',
    mb: 'MB', gb: 'GB', tb: 'TB', pb: 'PB', eb: 'EB',
    mib: 'MiB', gib: 'GiB', tib: 'TiB', pib: 'PiB', eib: 'EiB',
    ki: 'KiB', mi: 'MiB', gi: 'GiB', ti: 'TiB', pi: 'PiB', ei: 'EiB',
  };
  const fix = fixes[lower];
  if (fix !== undefined && fix !== unit) return `; suffixes are case-sensitive, did you mean '${fix}'?`;
  if (unit.startsWith('X')) return "; products use a lower-case 'x', e.g. '2x512'";
  return '';
}

function parseFactor(text: string, factor: string): bigint {
  if (factor === '') {
    throw new SizeSyntaxError(
      text,
      text.includes('x') ? "missing number before or after 'x' (products look like '2x512')" : 'empty size',
    );
  }
  const match = /^([0-9]*)(.*)$/.exec(factor);
  const digits = match?.[1] ?? '';
  const unit = match?.[2] ?? '';
  if (unit === '') return BigInt(digits);
  const multiplier = unitMultiplier(unit, digits !== '');
  if (multiplier === undefined) {
    if (digits === '') {
      throw new SizeSyntaxError(text, `expected a decimal number, got ${quote(factor)}`);
    }
    throw new SizeSyntaxError(text, `unknown size suffix ${quote(unit)}${suffixHint(unit)} (${SUFFIX_HELP})`);
  }
  return (digits === '' ? 1n : BigInt(digits)) * multiplier;
}

/** Parse `text` in dd's grammar to an exact BigInt (no range check). */
function parseToBigInt(text: string): bigint {
  if (text === '') throw new SizeSyntaxError(text, 'empty size');
  if (/\s/.test(text)) throw new SizeSyntaxError(text, 'sizes must not contain whitespace');
  if (/^[+-]/.test(text)) {
    throw new SizeSyntaxError(text, 'sizes must not have a sign; they are non-negative decimal integers');
  }
  if (/^0x/i.test(text)) {
    throw new SizeSyntaxError(
      text,
      "hexadecimal is not accepted; write the size in decimal (GNU dd would read '0x' as 'zero times')",
    );
  }
  if (/[0-9][.,][0-9]/.test(text) || text.startsWith('.')) {
    throw new SizeSyntaxError(
      text,
      "fractions are not allowed; use a smaller unit instead (e.g. '1536K' rather than '1.5M')",
    );
  }
  let product = 1n;
  for (const factor of text.split('x')) {
    product *= parseFactor(text, factor);
  }
  return product;
}

/**
 * Parse a byte count in GNU dd's grammar ('4096', '512K', '1GiB', '2x512', '14B', 'M').
 * Returns a non-negative safe integer; throws {@link SizeSyntaxError} for bad syntax
 * or a value above Number.MAX_SAFE_INTEGER.
 */
export function parseDdNumber(text: string): number {
  if (typeof text !== 'string') {
    throw new TypeError(`parseDdNumber expects a string (got ${typeof text})`);
  }
  const value = parseToBigInt(text);
  if (value > MAX_SAFE) {
    throw new SizeSyntaxError(
      text,
      `value is too large: ${value} exceeds the maximum of ${Number.MAX_SAFE_INTEGER} bytes (2^53-1, about 8 PiB)`,
    );
  }
  return Number(value);
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number') return String(value);
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'boolean') return `boolean ${String(value)}`;
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * Library-facing size validation. Accepts a non-negative safe integer number, a
 * bigint, or a dd-grammar string. `what` names the option in messages
 * (e.g. 'options.blockSize'). Throws TypeError for a wrong type and RangeError
 * for a negative, fractional, too large or unparsable value.
 */
export function toByteCount(value: unknown, what: string): number {
  const base =
    `${what} must be a size in bytes: a non-negative integer or a string such as ` +
    `'512K', '1GiB', '2x512' (got ${describeValue(value)})`;
  if (typeof value === 'number') {
    if (Number.isNaN(value) || !Number.isFinite(value)) throw new RangeError(`${base}: not a finite number`);
    if (!Number.isInteger(value)) throw new RangeError(`${base}: not an integer`);
    if (value < 0) throw new RangeError(`${base}: negative`);
    if (value > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(`${base}: larger than Number.MAX_SAFE_INTEGER (${Number.MAX_SAFE_INTEGER})`);
    }
    return value + 0; // normalise -0
  }
  if (typeof value === 'bigint') {
    if (value < 0n) throw new RangeError(`${base}: negative`);
    if (value > MAX_SAFE) {
      throw new RangeError(`${base}: larger than Number.MAX_SAFE_INTEGER (${Number.MAX_SAFE_INTEGER})`);
    }
    return Number(value);
  }
  if (typeof value === 'string') {
    try {
      return parseDdNumber(value);
    } catch (err) {
      if (err instanceof SizeSyntaxError) throw new RangeError(`${base}: ${err.reason}`);
      throw err;
    }
  }
  throw new TypeError(base);
}

/**
 * GNU human_readable() with dd's options (autoscale, round to nearest with ties
 * to even, space before unit, 'B' suffix), in exact integer arithmetic.
 * Values below 10 units get one decimal ('1.1 GB'); larger ones none ('537 MB').
 */
function formatHuman(bytes: number, base: 1000n | 1024n, fn: string): string {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes < 0) {
    throw new RangeError(`${fn} expects a finite non-negative number of bytes (got ${String(bytes)})`);
  }
  let amount = BigInt(Math.round(bytes));
  let tenths = 0n;
  // 0: exact, 1: below half of the next digit, 2: exactly half, 3: above half.
  let rounding = 0n;
  let exponent = 0;
  let decimal = '';

  if (amount >= base) {
    do {
      const r10 = (amount % base) * 10n + tenths;
      const r2 = (r10 % base) * 2n + (rounding >> 1n);
      amount /= base;
      tenths = r10 / base;
      rounding = r2 < base ? (r2 + rounding !== 0n ? 1n : 0n) : base < r2 + rounding ? 3n : 2n;
      exponent++;
    } while (amount >= base && exponent < POWER_LETTERS.length);

    if (amount < 10n) {
      if (2n < rounding + (tenths & 1n)) {
        tenths++;
        rounding = 0n;
        if (tenths === 10n) {
          amount++;
          tenths = 0n;
        }
      }
      if (amount < 10n) {
        decimal = `.${tenths}`;
        tenths = 0n;
        rounding = 0n;
      }
    }
  }

  if (5n < tenths + (0n < rounding + (amount & 1n) ? 1n : 0n)) {
    amount++;
    if (amount === base && exponent < POWER_LETTERS.length) {
      exponent++;
      amount = 1n;
      decimal = '.0';
    }
  }

  let unit = 'B';
  if (exponent > 0) {
    const letter = POWER_LETTERS[exponent - 1] ?? '?';
    unit = base === 1024n ? `${letter}iB` : `${exponent === 1 ? 'k' : letter}B`;
  }
  return `${amount}${decimal} ${unit}`;
}

/** dd-style SI size: 1500000 -> '1.5 MB', 536870912 -> '537 MB', 999 -> '999 B'. */
export function formatBytesSI(bytes: number): string {
  return formatHuman(bytes, 1000n, 'formatBytesSI');
}

/** dd-style IEC size: 1572864 -> '1.5 MiB', 536870912 -> '512 MiB', 1000 -> '1000 B'. */
export function formatBytesIEC(bytes: number): string {
  return formatHuman(bytes, 1024n, 'formatBytesIEC');
}
