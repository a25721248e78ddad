// Reading GNU ddrescue mapfiles as ddrescue 1.27 reads them (mapfile.cc):
// comments after the data, numbers in any C base, the optional pass, an
// empty domain. test/conformance/ddrescue-interop.test.ts feeds the parser
// maps written by ddrescue and ddrescuelog themselves.
import { describe, expect, it } from 'vitest';

import { MapfileError, RescueMap, type BlockStatus } from '../../src/resume/mapfile';

function parse(text: string): RescueMap {
  return RescueMap.parse(text, 'test.map');
}

describe('RescueMap.parse', () => {
  it('reads `ddrescuelog -A` output: a comment after the data on a line', () => {
    const map = parse(
      [
        '# Mapfile. Created by GNU ddrescuelog version 1.27',
        '# current_pos  current_status  current_pass',
        '0x00100000     ?               1\t#  1048 kB',
        '#      pos        size  status',
        '0x00000000  0x00100000  +\t#         0 B     1048 kB',
        '0x00100000  0x00000400  -\t#   1048 kB     1024 B ',
        '0x00100400  0x002FFC00  ?\t#   1049 kB     3144 kB',
        '',
      ].join('\n'),
    );
    expect([map.currentPos, map.currentStatus, map.currentPass]).toEqual([0x100000, '?', 1]);
    expect(map.list()).toEqual([
      { pos: 0, size: 0x100000, status: '+' },
      { pos: 0x100000, size: 0x400, status: '-' },
      { pos: 0x100400, size: 0x2ffc00, status: '?' },
    ]);
  });

  it("reads numbers as C's %lli: 0x and 0X hexadecimal, 0-prefixed octal, decimal", () => {
    const map = parse('0X10 + 2\n0 0X10 +\n020 16 -\n32 0x10 /\n');
    expect([map.currentPos, map.currentPass]).toEqual([16, 2]);
    expect(map.list().map((b) => [b.pos, b.size, b.status])).toEqual([
      [0, 16, '+'],
      [16, 16, '-'],
      [32, 16, '/'],
    ]);
  });

  it('the pass is optional (1), and must be at least 1', () => {
    expect(parse('0 +\n0 512 +\n').currentPass).toBe(1);
    expect(() => parse('0 + 0\n0 512 +\n')).toThrow(/current_pass must be at least 1/);
  });

  it('an empty domain is one block of size 0 at 0, as ddrescue writes it', () => {
    expect(parse('0 ?\n0 0 ?\n').list()).toEqual([]);
    expect(() => parse('0 ?\n0 512 +\n512 0 ?\n')).toThrow(/block size must be positive/);
  });

  it("'#' inside a word is not a comment (as in ddrescue), and what is left must be the fields", () => {
    expect(() => parse('0 +\n0 512 +#x\n')).toThrow(MapfileError);
    expect(() => parse('0 +\n0 512 + extra\n')).toThrow(/expected 'pos size status'/);
    expect(() => parse('0x +\n')).toThrow(/'0x' is not a number/);
    expect(() => parse('08 +\n')).toThrow(/'08' is not a number/);
  });

  it("keeps devmove's identity line, even with spaces around it", () => {
    const map = parse('  # devmove: source="/dev/sdb" target="/dev/sdc" source_offset=0 target_offset=512  \n0 +\n0 512 +\n');
    expect(map.identity).toEqual({ source: '/dev/sdb', target: '/dev/sdc', sourceOffset: 0, targetOffset: 512 });
  });

  it('reads back what it writes (seeded random maps)', () => {
    const seed = Number(process.env.DEVMOVE_MAP_SEED ?? Date.now() % 1_000_000);
    let state = seed;
    const next = (n: number): number => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state % n;
    };
    const statuses: BlockStatus[] = ['?', '*', '/', '-', '+'];
    for (let round = 0; round < 50; round++) {
      const map = new RescueMap();
      for (let i = 0; i < 20; i++) map.set(next(1 << 20), 1 + next(1 << 16), statuses[next(5)]);
      map.currentPos = next(1 << 20);
      map.currentStatus = '?';
      const again = parse(map.format('devmove test', new Date(0), false));
      expect(again.list(), `seed ${seed} round ${round}`).toEqual(map.list());
      expect(again.currentPos).toBe(map.currentPos);
    }
  });
});
