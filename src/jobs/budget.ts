// A running job's shared budget of I/Os in flight and buffer memory. Every pair starts with
// its share (allocateBudget in jobfile.ts); when a pair settles, what it held, and whatever no
// pair was using, goes to the pairs still running, one buffer at a time in job order (so the
// share stays even), each up to its own ceiling (PairAllocation.queueDepthMax). Grants are made
// only from what is free, so the running pairs together never hold more than maxQueueDepth
// buffers nor more than maxBufferMemory bytes of them. A ring only grows: a grant is kept until
// the pair settles.
import type { PairAllocation } from './jobfile';
import type { JobSpec } from './spec';

/** One running pair as the budget sees it. */
export interface BudgetMember {
  readonly name: string;
  readonly blockSize: number;
  readonly queueDepthMax: number;
  /** Buffers granted so far (starts at the allocation's queueDepth). */
  queueDepth: number;
}

export class JobBudget<M extends BudgetMember = BudgetMember> {
  private freeDepth: number;
  private freeBytes: number;
  private readonly running: M[] = [];

  constructor(spec: Pick<JobSpec, 'maxQueueDepth' | 'maxBufferMemory'>, allocations: readonly PairAllocation[]) {
    this.freeDepth = spec.maxQueueDepth - allocations.reduce((sum, a) => sum + a.queueDepth, 0);
    this.freeBytes = spec.maxBufferMemory - allocations.reduce((sum, a) => sum + a.bufferBytes, 0);
    if (this.freeDepth < 0 || this.freeBytes < 0) throw new RangeError('the pairs were allocated more than the job has');
  }

  /** A pair started with its allocation. */
  join(member: M): void {
    this.running.push(member);
  }

  /** A pair settled: its buffers go to the pairs still running. Returns the pairs that grew, in job order. */
  leave(member: M): M[] {
    const at = this.running.indexOf(member);
    if (at < 0) return [];
    this.running.splice(at, 1);
    this.freeDepth += member.queueDepth;
    this.freeBytes += member.queueDepth * member.blockSize;
    return this.share();
  }

  /** Buffers and bytes no running pair holds. */
  get free(): { queueDepth: number; bufferBytes: number } {
    return { queueDepth: this.freeDepth, bufferBytes: this.freeBytes };
  }

  private share(): M[] {
    const grown = new Set<M>();
    for (let granted = true; granted; ) {
      granted = false;
      for (const m of this.running) {
        if (m.queueDepth >= m.queueDepthMax || this.freeDepth < 1 || this.freeBytes < m.blockSize) continue;
        m.queueDepth += 1;
        this.freeDepth -= 1;
        this.freeBytes -= m.blockSize;
        grown.add(m);
        granted = true;
      }
    }
    return this.running.filter((m) => grown.has(m));
  }
}
