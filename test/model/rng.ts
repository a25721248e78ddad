// A seeded pseudo-random stream for the model test: sfc32 (Chris Doty-Humphrey's
// Small Fast Counter), seeded through splitmix32 so that neighbouring seeds give
// unrelated streams. Every choice the tester makes comes from one of these, so a
// run is fully determined by (seed, steps) up to the timing of the kernel.

function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    const mix = splitmix32(seed);
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.next(); // sfc32 needs a few rounds to mix its state
  }

  /** A uniform 32-bit unsigned integer. */
  next(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.next() / 0x1_0000_0000;
  }

  /** An integer in [lo, hi] (inclusive); hi < 2^53. */
  int(lo: number, hi: number): number {
    lo = Math.ceil(lo);
    hi = Math.floor(hi);
    if (hi < lo) throw new RangeError(`rng.int(${lo}, ${hi}): empty range`);
    const span = hi - lo + 1;
    const r = span > 0x1_0000_0000 ? this.next() * 0x1_0000_0000 + this.next() : this.next();
    return lo + (r % span);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('rng.pick: no items');
    return items[this.int(0, items.length - 1)] as T;
  }

  /** One of the items, with probability proportional to its weight (weights ≥ 0, not all 0). */
  weighted<T>(items: ReadonlyArray<readonly [T, number]>): T {
    const total = items.reduce((n, [, w]) => n + w, 0);
    if (!(total > 0)) throw new RangeError('rng.weighted: no positive weight');
    let x = this.float() * total;
    for (const [item, w] of items) {
      if (x < w) return item;
      x -= w;
    }
    return items[items.length - 1][0];
  }

  /** A multiple of `unit` in [lo, hi] (hi rounded down), or lo when none fits. */
  aligned(lo: number, hi: number, unit: number): number {
    const first = Math.ceil(lo / unit);
    const last = Math.floor(hi / unit);
    return last < first ? lo : this.int(first, last) * unit;
  }

  /** 16 bytes for a key: content is derived from it (see world.ts). */
  bytes16(): Buffer {
    const out = Buffer.alloc(16);
    for (let i = 0; i < 16; i += 4) out.writeUInt32LE(this.next(), i);
    return out;
  }
}
