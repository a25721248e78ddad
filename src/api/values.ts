// The kinds of value an option can take, each checked the same way wherever
// it comes from: a JavaScript value (copy() options), a JSON value (job files)
// or a command-line word. A check returns the clean value or a rejection that
// does not name the option; each front end names it in its own way.
import { parseDdNumber, SizeSyntaxError } from '../base/size';

export interface Rejection {
  /** What the value must be, without the option's name: "must be an integer from 1 to 1024". */
  reason: string;
  /** More about what is wrong with this value ("unknown size suffix 'mb'…"), when there is more. */
  detail?: string;
  /** A suggestion: "did you mean 'fsync'?". */
  hint?: string;
  /** The value has the right type but not an accepted value (RangeError), or the wrong type (TypeError). */
  range: boolean;
  /** The message says all there is (an empty string): no "(got …)" after it. */
  plain?: boolean;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; rejection: Rejection };

export interface ValueKind<T> {
  /** What --help shows for the value: 'N', 'SIZE', 'FILE'; '' for flags. */
  placeholder: string;
  /** A value from JavaScript or JSON. */
  fromValue(value: unknown): Checked<T>;
  /** A word from the command line; undefined where the option is a flag. */
  fromText?(text: string): Checked<T>;
}

function ok<T>(value: T): Checked<T> {
  return { ok: true, value };
}

function no<T>(reason: string, range: boolean, detail?: string): Checked<T> {
  return { ok: false, rejection: detail === undefined ? { reason, range } : { reason, range, detail } };
}

/**
 * A rejection as one clause after the option's name: "must be … (got 'x'): detail; hint". The
 * command line, which shows the value itself, leaves out "(got …)".
 */
export function explain(r: Rejection, value: unknown, showValue = true): string {
  const got = showValue && !r.plain ? ` (got ${describeValue(value)})` : '';
  return `${r.reason}${got}${r.detail !== undefined ? `: ${r.detail}` : ''}${r.hint !== undefined ? `; ${r.hint}` : ''}`;
}

/** A value as messages show it: 'text', 12, 12n, null, true, an array, an object. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return /^[\x20-\x7e]*$/.test(value) && !value.includes("'") ? `'${value}'` : JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'function') return 'a function';
  return String(value);
}

/** 'a', 'b' or 'c' */
export function listChoices(values: readonly string[]): string {
  const quoted = values.map((v) => `'${v}'`);
  return quoted.length < 2 ? quoted.join('') : `${quoted.slice(0, -1).join(', ')} or ${quoted[quoted.length - 1]}`;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** The known word closest to `word` (case-insensitive; at most a quarter of it off), for did-you-mean. */
export function closest(word: string, known: readonly string[]): string | undefined {
  const folded = word.toLowerCase();
  const exact = known.find((k) => k.toLowerCase() === folded);
  if (exact !== undefined) return exact;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = distance(folded, k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 4)) ? best : undefined;
}

export function integer(min: number, max: number): ValueKind<number> {
  const reason = `must be an integer from ${min} to ${max}`;
  const check = (n: number, range: boolean): Checked<number> => (Number.isInteger(n) && n >= min && n <= max ? ok(n) : no(reason, range));
  return {
    placeholder: 'N',
    fromValue: (v) => (typeof v === 'number' ? check(v, true) : no(reason, false)),
    fromText: (t) => (/^[0-9]{1,16}$/.test(t) ? check(Number(t), true) : no(reason, true)),
  };
}

function sizeFrom(v: unknown): Checked<number> {
  const reason = "must be a size such as '512K' or '4M'";
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return no(reason, true, 'not a finite number');
    if (!Number.isInteger(v)) return no(reason, true, 'not an integer');
    if (v < 0) return no(reason, true, 'negative');
    if (v > Number.MAX_SAFE_INTEGER) return no(reason, true, `larger than ${Number.MAX_SAFE_INTEGER}`);
    return ok(v + 0);
  }
  if (typeof v === 'bigint') {
    if (v < 0n) return no(reason, true, 'negative');
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) return no(reason, true, `larger than ${Number.MAX_SAFE_INTEGER}`);
    return ok(Number(v));
  }
  if (typeof v !== 'string') return no(reason, false);
  try {
    return ok(parseDdNumber(v));
  } catch (error) {
    // "expected a decimal number" only repeats the value; the other reasons say what to fix.
    if (error instanceof SizeSyntaxError) return no(reason, true, /^(expected a decimal number|empty size)/.test(error.reason) ? undefined : error.reason);
    throw error;
  }
}

/** A byte count: a safe integer, a bigint or dd's size grammar ('512K', '1GiB', '2x512'). */
/** A limit as people write it: '1 byte', '512 KiB', '1 GiB', '1000 bytes'. */
export function exactBytes(n: number): string {
  if (n === 1) return '1 byte';
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = n;
  let unit = -1;
  while (value >= 1024 && value % 1024 === 0 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit < 0 ? `${n} bytes` : `${value} ${units[unit]}`;
}

export function size(min = 0, max = Number.MAX_SAFE_INTEGER): ValueKind<number> {
  const limit = (n: number): Checked<number> =>
    n >= min && n <= max ? ok(n) : no(`must be from ${exactBytes(min)} to ${exactBytes(max)}, such as '512K' or '4M'`, true);
  const read = (c: Checked<number>): Checked<number> => (c.ok ? limit(c.value) : c);
  return { placeholder: 'SIZE', fromValue: (v) => read(sizeFrom(v)), fromText: (t) => read(sizeFrom(t)) };
}

/** Bytes per second: a size, optionally with '/s' ('50M', '1G/s'); 0 or 'unlimited' for no cap. */
export function rate(): ValueKind<number> {
  const reason = "must be a rate in bytes per second such as '50M' or '1G/s', or 0 for unlimited";
  const read = (v: unknown): Checked<number> => {
    if (v === 'unlimited') return ok(0);
    const text = typeof v === 'string' && v.endsWith('/s') ? v.slice(0, -2) : v;
    const c = sizeFrom(text);
    return c.ok ? c : no(reason, c.rejection.range);
  };
  return { placeholder: 'RATE', fromValue: read, fromText: read };
}

export function boolean(): ValueKind<boolean> {
  return { placeholder: '', fromValue: (v) => (typeof v === 'boolean' ? ok(v) : no('must be true or false', false)) };
}

export function choice<T extends string>(values: readonly T[]): ValueKind<T> {
  const reason = `must be one of ${listChoices(values)}`;
  const read = (v: unknown): Checked<T> => {
    if (typeof v !== 'string') return no(reason, false);
    if ((values as readonly string[]).includes(v)) return ok(v as T);
    const near = closest(v, values);
    return { ok: false, rejection: near === undefined ? { reason, range: true } : { reason, range: true, hint: `did you mean '${near}'?` } };
  };
  return { placeholder: values.join('|'), fromValue: read, fromText: read };
}

/** A path (or a device's node name): a non-empty string without NUL bytes. */
export function path(example: string): ValueKind<string> {
  const read = (v: unknown): Checked<string> => {
    if (typeof v !== 'string') return no(`must be a path string such as ${example}`, false);
    if (v === '') return { ok: false, rejection: { reason: 'must not be empty', range: true, plain: true } };
    if (v.includes('\0')) return { ok: false, rejection: { reason: 'must not contain NUL bytes', range: true, plain: true } };
    return ok(v);
  };
  return { placeholder: 'FILE', fromValue: read, fromText: read };
}

/** One of a few kinds of value: the first that takes it. */
export function either<A, B>(a: ValueKind<A>, b: ValueKind<B>, reason: string): ValueKind<A | B> {
  return {
    placeholder: a.placeholder || b.placeholder,
    fromValue: (v) => {
      const first = a.fromValue(v);
      if (first.ok) return first;
      const second = b.fromValue(v);
      return second.ok ? second : no(reason, first.rejection.range || second.rejection.range, second.rejection.detail ?? first.rejection.detail);
    },
  };
}
