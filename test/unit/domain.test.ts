// The range algebra behind --domain-mapfile against a byte-map oracle, on
// seeded random range lists: intersection, complement and bytes-within agree
// with what a per-byte set says.
import { describe, expect, it } from 'vitest';

import { bytesWithin, complementRanges, intersectRanges } from '../../src/resume/domain';
import type { Range } from '../../src/base/types';
import { random } from '../helpers/random';

const SEED = Number(process.env.DEVMOVE_TEST_SEED ?? Date.now() % 1_000_000);
const SPACE = 400;

/** Sorted, disjoint, non-touching ranges within [0, SPACE). */
function randomRanges(next: () => number): Range[] {
  const out: Range[] = [];
  for (let at = Math.floor(next() * 20); at < SPACE; ) {
    const length = 1 + Math.floor(next() * 40);
    out.push([at, Math.min(length, SPACE - at)]);
    at += length + 1 + Math.floor(next() * 40);
  }
  return out;
}

function bits(ranges: readonly Range[]): boolean[] {
  const b = new Array<boolean>(SPACE).fill(false);
  for (const [o, l] of ranges) for (let i = o; i < o + l && i < SPACE; i++) b[i] = true;
  return b;
}

describe(`domain ranges against a byte map (seed ${SEED}; replay with DEVMOVE_TEST_SEED=${SEED})`, () => {
  it('intersection, complement and bytes within', () => {
    const next = random(SEED);
    for (let round = 0; round < 500; round++) {
      const a = randomRanges(next);
      const b = randomRanges(next);
      const ba = bits(a);
      const bb = bits(b);
      const both = intersectRanges(a, b);
      expect(bits(both)).toEqual(ba.map((x, i) => x && bb[i]));
      // Sorted and disjoint, no empty range.
      for (let i = 0; i < both.length; i++) {
        expect(both[i][1]).toBeGreaterThan(0);
        if (i > 0) expect(both[i][0]).toBeGreaterThanOrEqual(both[i - 1][0] + both[i - 1][1]);
      }
      const from = Math.floor(next() * SPACE);
      const to = from + Math.floor(next() * (SPACE - from));
      expect(bits(complementRanges(a, from, to))).toEqual(ba.map((x, i) => !x && i >= from && i < to));
      expect(bytesWithin(a, from, to)).toBe(ba.filter((x, i) => x && i >= from && i < to).length);
    }
  });
});
