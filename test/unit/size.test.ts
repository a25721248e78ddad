import { describe, it, expect } from 'vitest';
import {
  SizeSyntaxError,
  parseDdNumber,
  toByteCount,
  formatBytesSI,
  formatBytesIEC,
} from '../../src/base/size';

const KiB = 1024;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const TiB = 1024 ** 4;
const PiB = 1024 ** 5;

describe('parseDdNumber: valid sizes', () => {
  it.each<[string, number]>([
    ['0', 0],
    ['1', 1],
    ['4096', 4096],
    ['000512', 512],
    // single-letter units
    ['7c', 7],
    ['3w', 6],
    ['2b', 1024],
    ['14B', 14],
    // kilo
    ['1kB', 1000],
    ['1KB', 1000],
    ['1K', KiB],
    ['1k', KiB],
    ['1KiB', KiB],
    ['1kiB', KiB],
    ['512K', 512 * KiB],
    // mega
    ['1MB', 1_000_000],
    ['1M', MiB],
    ['1MiB', MiB],
    ['4M', 4 * MiB],
    // giga
    ['2GB', 2_000_000_000],
    ['1G', GiB],
    ['1GiB', GiB],
    // tera
    ['3TB', 3e12],
    ['1T', TiB],
    ['5TiB', 5 * TiB],
    // peta
    ['1PB', 1e15],
    ['1P', PiB],
    ['7PiB', 7 * PiB],
    // larger units only fit as zero
    ['0E', 0],
    ['0EB', 0],
    ['0Z', 0],
    ['0YiB', 0],
    ['0R', 0],
    ['0Q', 0],
    // a bare unit means one of it, as in dd ('xM' = 'M')
    ['M', MiB],
    ['KiB', KiB],
    ['kB', 1000],
    ['b', 512],
    ['1xM', MiB],
    // products
    ['2x512', 1024],
    ['2x3x4K', 24 * KiB],
    ['4x1MiB', 4 * MiB],
    ['1Kx1K', MiB],
    ['10x0', 0],
    ['00x10', 0],
    ['2x14B', 28],
    // limits
    ['9007199254740991', Number.MAX_SAFE_INTEGER],
    ['8191TiB', 8191 * TiB],
    ['9007199254740991x1', Number.MAX_SAFE_INTEGER],
    ['1PBx9', 9e15],
  ])('%s = %d', (text, expected) => {
    expect(parseDdNumber(text)).toBe(expected);
  });
});

describe('parseDdNumber: invalid sizes', () => {
  it.each<[string, RegExp]>([
    ['', /empty size/],
    [' 1', /whitespace/],
    ['1 M', /whitespace/],
    ['1\t', /whitespace/],
    ['-1', /sign/],
    ['+1', /sign/],
    ['0x10', /hexadecimal/],
    ['0X1F', /hexadecimal/],
    ['1.5M', /fractions/],
    ['.5', /fractions/],
    ['12Q3', /unknown size suffix 'Q3'/],
    ['5X', /unknown size suffix 'X'.*lower-case 'x'/],
    ['1m', /unknown size suffix 'm'.*did you mean 'M'/],
    ['1gb', /did you mean 'GB'/],
    ['1Mi', /did you mean 'MiB'/],
    ['1MiB2', /unknown size suffix 'MiB2'/],
    ['1BB', /unknown size suffix 'BB'/],
    ['1cB', /unknown size suffix 'cB'/],
    ['B', /expected a decimal number/],
    ['abc', /expected a decimal number/],
    ['2x', /missing number before or after 'x'/],
    ['x2', /missing number before or after 'x'/],
    ['2xx3', /missing number before or after 'x'/],
    ['1e6', /unknown size suffix 'e6'/],
    ['9007199254740992', /too large.*9007199254740991/],
    ['8P', /too large/],
    ['1E', /too large/],
    ['1EB', /too large/],
    ['12Q', /too large/],
    ['1Z', /too large/],
    ['4096x4096x4096x4096x4096', /too large/],
    ['99999999999999999999999999999999', /too large/],
  ])('%j is rejected', (text, reason) => {
    let caught: unknown;
    try {
      parseDdNumber(text);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SizeSyntaxError);
    const err = caught as SizeSyntaxError;
    expect(err.name).toBe('SizeSyntaxError');
    expect(err.message).toContain(JSON.stringify(text).includes('\\') ? JSON.stringify(text) : `'${text}'`);
    expect(err.message).toMatch(reason);
    expect(err.text).toBe(text);
    expect(err.reason).toMatch(reason);
  });

  it('quotes control characters readably', () => {
    expect(() => parseDdNumber('1\n')).toThrow(/invalid size "1\\n"/);
  });
});

describe('toByteCount', () => {
  it.each<[unknown, number]>([
    [0, 0],
    [-0, 0],
    [4096, 4096],
    [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    [0n, 0],
    [1048576n, MiB],
    [BigInt(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER],
    ['512K', 512 * KiB],
    ['1GiB', GiB],
    ['2x512', 1024],
    ['0', 0],
  ])('%s -> %d', (value, expected) => {
    const got = toByteCount(value, 'options.blockSize');
    expect(got).toBe(expected);
    expect(Object.is(got, -0)).toBe(false);
  });

  it.each<[unknown, RegExp]>([
    [-1, /\(got -1\): negative/],
    [1.5, /\(got 1\.5\): not an integer/],
    [NaN, /\(got NaN\): not a finite number/],
    [Infinity, /\(got Infinity\): not a finite number/],
    [Number.MAX_SAFE_INTEGER + 1, /larger than Number\.MAX_SAFE_INTEGER/],
    [-5n, /\(got -5n\): negative/],
    [2n ** 53n, /\(got 9007199254740992n\): larger than/],
    ['12Q3', /\(got '12Q3'\): unknown size suffix 'Q3'/],
    ['-1', /\(got '-1'\): .*sign/],
    ['', /\(got ''\): empty size/],
    ['1E', /\(got '1E'\): value is too large/],
  ])('%s is a RangeError', (value, message) => {
    expect(() => toByteCount(value, 'options.blockSize')).toThrow(RangeError);
    expect(() => toByteCount(value, 'options.blockSize')).toThrow(message);
    expect(() => toByteCount(value, 'options.blockSize')).toThrow(
      /^options\.blockSize must be a size in bytes: a non-negative integer or a string such as '512K', '1GiB', '2x512' \(got /,
    );
  });

  it.each<[unknown, string]>([
    [undefined, '(got undefined)'],
    [null, '(got null)'],
    [true, '(got boolean true)'],
    [{ bytes: 4096 }, '(got an object)'],
    [[4096], '(got an array)'],
    [Symbol('x'), '(got a symbol)'],
    [() => 4096, '(got a function)'],
  ])('%s is a TypeError', (value, message) => {
    expect(() => toByteCount(value, 'options.length')).toThrow(TypeError);
    expect(() => toByteCount(value, 'options.length')).toThrow(message);
    expect(() => toByteCount(value, 'options.length')).toThrow(/^options\.length must be a size in bytes/);
  });

  it('the exact message of the documented example', () => {
    expect(() => toByteCount('12Q3', 'options.blockSize')).toThrow(
      "options.blockSize must be a size in bytes: a non-negative integer or a string such as '512K', '1GiB', '2x512' (got '12Q3')",
    );
  });
});

describe('formatBytesSI / formatBytesIEC (GNU dd rounding)', () => {
  it.each<[number, string, string]>([
    [0, '0 B', '0 B'],
    [1, '1 B', '1 B'],
    [512, '512 B', '512 B'],
    [999, '999 B', '999 B'],
    [1000, '1.0 kB', '1000 B'],
    [1023, '1.0 kB', '1023 B'],
    [1024, '1.0 kB', '1.0 KiB'],
    [1050, '1.0 kB', '1.0 KiB'], // SI: exactly 1.05 rounds half to even
    [1150, '1.2 kB', '1.1 KiB'], // SI: exactly 1.15 rounds half to even
    [1500, '1.5 kB', '1.5 KiB'],
    [8192, '8.2 kB', '8.0 KiB'],
    [9999, '10 kB', '9.8 KiB'],
    [10_000, '10 kB', '9.8 KiB'],
    [999_499, '999 kB', '976 KiB'],
    [999_999, '1.0 MB', '977 KiB'],
    [1_048_576, '1.0 MB', '1.0 MiB'],
    [1_500_000, '1.5 MB', '1.4 MiB'],
    [1_572_864, '1.6 MB', '1.5 MiB'],
    [536_870_912, '537 MB', '512 MiB'],
    [1_000_000_000, '1.0 GB', '954 MiB'],
    [1_073_741_824, '1.1 GB', '1.0 GiB'],
    [17_179_869_184, '17 GB', '16 GiB'],
    [1e12, '1.0 TB', '931 GiB'],
    [1_099_511_627_776, '1.1 TB', '1.0 TiB'],
    [Number.MAX_SAFE_INTEGER, '9.0 PB', '8.0 PiB'],
    [1e21, '1.0 ZB', '867 EiB'],
  ])('%d -> %s, %s', (bytes, si, iec) => {
    expect(formatBytesSI(bytes)).toBe(si);
    expect(formatBytesIEC(bytes)).toBe(iec);
  });

  it('rounds fractional inputs (e.g. rates) to whole bytes first', () => {
    expect(formatBytesSI(1499.6)).toBe('1.5 kB');
    expect(formatBytesIEC(511.4)).toBe('511 B');
  });

  it.each([-1, NaN, Infinity])('rejects %s', (bytes) => {
    expect(() => formatBytesSI(bytes)).toThrow(RangeError);
    expect(() => formatBytesIEC(bytes)).toThrow(RangeError);
  });
});
