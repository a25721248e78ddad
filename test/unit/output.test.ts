// dd's statistics lines, formatted as GNU dd 9 formats them (src/dd.c
// print_xfer_stats with gnulib's human_readable). test/conformance checks the
// same functions against lines GNU dd printed.
import { describe, expect, it } from 'vitest';

import { formatRate, formatSeconds, records, transferLine } from '../../src/cli/output';

describe('formatRate: human_readable through its floating-point path', () => {
  it.each<[bytes: number, seconds: number, text: string]>([
    [0, 1, '0.0 kB/s'], // nothing moved: dd prints 0.0 kB/s, not 0 B/s
    [213, 1, '0.2 kB/s'],
    [600, 1, '0.6 kB/s'],
    [999, 1, '1.0 kB/s'],
    [250, 1, '0.2 kB/s'], // exactly halfway: to the even digit, as printf
    [750, 1, '0.8 kB/s'],
    [12_345, 1, '12.3 kB/s'], // one decimal up to four characters
    [45_500_000, 1, '45.5 MB/s'],
    [171_000_000, 1, '171 MB/s'],
    [99_960_000, 1, '100 MB/s'],
    [999_960, 1, '1000 kB/s'], // dd's own quirk: the scale is chosen before rounding
    [2_500_000_000, 1, '2.5 GB/s'],
    [1, 3.9796e-5, '25.1 kB/s'], // from a GNU dd run: "1 byte copied, 3.9796e-05 s, 25.1 kB/s"
    [1, 0, 'Infinity B/s'],
  ])('%d bytes in %d s: %s', (bytes, seconds, text) => {
    expect(formatRate(bytes, seconds)).toBe(text);
  });
});

describe("formatSeconds: printf's %g", () => {
  it.each<[number, string]>([
    [0, '0'],
    [4.892e-6, '4.892e-06'],
    [1.234e-5, '1.234e-05'],
    [0.0001, '0.0001'],
    [0.453834, '0.453834'],
    [1.23456789, '1.23457'],
    [12, '12'],
    [100_000, '100000'],
    [1_234_567, '1.23457e+06'],
    [2.5, '2.5'],
  ])('%d → %s', (seconds, text) => {
    expect(formatSeconds(seconds)).toBe(text);
  });
});

describe('transferLine', () => {
  it.each<[number, string]>([
    [0, '0 bytes copied'],
    [1, '1 byte copied'],
    [999, '999 bytes copied'],
    [1000, '1000 bytes (1.0 kB) copied'], // no IEC part while it has no prefix
    [1023, '1023 bytes (1.0 kB) copied'],
    [1024, '1024 bytes (1.0 kB, 1.0 KiB) copied'],
    [1_073_741_824, '1073741824 bytes (1.1 GB, 1.0 GiB) copied'],
  ])('%d bytes: %s', (bytes, start) => {
    expect(transferLine(bytes, 2)).toBe(`${start}, 2 s, ${formatRate(bytes, 2)}`);
  });

  it('progress lines show whole seconds (%.0f, halves to even), the final line %g', () => {
    expect(transferLine(600, 2.5, true)).toBe('600 bytes copied, 2 s, 0.2 kB/s');
    expect(transferLine(600, 3.5, true)).toBe('600 bytes copied, 4 s, 0.2 kB/s');
    expect(transferLine(600, 2.49, true)).toBe('600 bytes copied, 2 s, 0.2 kB/s');
    expect(transferLine(600, 2.49)).toBe('600 bytes copied, 2.49 s, 0.2 kB/s');
  });
});

describe('records', () => {
  it('counts full and partial blocks', () => {
    expect(records(0, 512)).toBe('0+0 records');
    expect(records(10_000, 512)).toBe('19+1 records');
    expect(records(1_048_576, 786_432)).toBe('1+1 records');
  });
});
