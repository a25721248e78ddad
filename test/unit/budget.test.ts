// A running job's budget (src/jobs/budget.ts): over seeded random jobs (pairs of mixed block
// sizes and ceilings, finishing in a random order), after every pair that settles the pairs
// still running hold no more than the job's maxQueueDepth and maxBufferMemory, none more than
// its ceiling, none less than before, and no buffer that one of them could take is left unused.
import { describe, expect, it } from 'vitest';

import { JobBudget, type BudgetMember } from '../../src/jobs/budget';
import type { PairAllocation } from '../../src/jobs/jobfile';
import { random } from '../helpers/random';

const SEED = Number(process.env.DEVMOVE_TEST_SEED ?? Date.now() % 2 ** 31);
console.log(`budget.test.ts seed ${SEED} (DEVMOVE_TEST_SEED=${SEED} replays it)`);

const KiB = 1024;

interface Job {
  maxQueueDepth: number;
  maxBufferMemory: number;
  members: BudgetMember[];
  allocations: PairAllocation[];
}

/** Pairs that start within an even share, as allocateBudget gives them, with ceilings of their own. */
function randomJob(rnd: () => number): Job {
  const n = 1 + Math.floor(rnd() * 12);
  const blockSizes = [4 * KiB, 64 * KiB, 256 * KiB, 512 * KiB, 1024 * KiB];
  const maxQueueDepth = n + Math.floor(rnd() * 8 * n);
  const maxBufferMemory = n * 1024 * KiB + Math.floor(rnd() * 16 * n) * 256 * KiB;
  const members = Array.from({ length: n }, (_, i): BudgetMember => {
    const blockSize = blockSizes[Math.floor(rnd() * blockSizes.length)];
    const share = Math.max(1, Math.min(Math.floor(maxQueueDepth / n), Math.floor(maxBufferMemory / n / blockSize)));
    const queueDepth = 1 + Math.floor(rnd() * share);
    return { name: `p${i}`, blockSize, queueDepth, queueDepthMax: queueDepth + Math.floor(rnd() * 3 * maxQueueDepth) };
  });
  const allocations = members.map((m) => ({ queueDepth: m.queueDepth, blockSize: m.blockSize, bufferBytes: m.queueDepth * m.blockSize, queueDepthMax: m.queueDepthMax }));
  return { maxQueueDepth, maxBufferMemory, members, allocations };
}

function checkRunning(job: Job, budget: JobBudget, running: BudgetMember[], before: Map<BudgetMember, number>): void {
  const depth = running.reduce((sum, m) => sum + m.queueDepth, 0);
  const bytes = running.reduce((sum, m) => sum + m.queueDepth * m.blockSize, 0);
  expect(depth).toBeLessThanOrEqual(job.maxQueueDepth);
  expect(bytes).toBeLessThanOrEqual(job.maxBufferMemory);
  expect(budget.free).toStrictEqual({ queueDepth: job.maxQueueDepth - depth, bufferBytes: job.maxBufferMemory - bytes });
  for (const m of running) {
    expect(m.queueDepth).toBeGreaterThanOrEqual(before.get(m) ?? 0);
    expect(m.queueDepth).toBeLessThanOrEqual(m.queueDepthMax);
    // Work-conserving: a pair below its ceiling is held back only by what is left.
    if (m.queueDepth < m.queueDepthMax) expect(budget.free.queueDepth < 1 || budget.free.bufferBytes < m.blockSize).toBe(true);
  }
}

describe('JobBudget', () => {
  it('moves a settled pair\'s buffers to the pairs still running, within the totals and each ceiling', () => {
    const rnd = random(SEED);
    for (let round = 0; round < 300; round++) {
      const job = randomJob(rnd);
      const budget = new JobBudget(job, job.allocations);
      const running = [...job.members];
      for (const m of running) budget.join(m);
      while (running.length > 0) {
        const before = new Map(running.map((m) => [m, m.queueDepth]));
        const leaving = running.splice(Math.floor(rnd() * running.length), 1)[0];
        const grown = budget.leave(leaving);
        expect(grown.every((m) => running.includes(m) && m.queueDepth > (before.get(m) ?? 0))).toBe(true);
        expect(running.filter((m) => m.queueDepth > (before.get(m) ?? 0))).toStrictEqual(grown);
        checkRunning(job, budget, running, before);
      }
      expect(budget.free).toStrictEqual({ queueDepth: job.maxQueueDepth, bufferBytes: job.maxBufferMemory });
    }
  });

  it('shares evenly: two equal pairs left, each gets half of what the third gave back', () => {
    const members = [0, 1, 2].map((i): BudgetMember => ({ name: `p${i}`, blockSize: 512 * KiB, queueDepth: 4, queueDepthMax: 12 }));
    const allocations = members.map((m) => ({ queueDepth: 4, blockSize: m.blockSize, bufferBytes: 4 * m.blockSize, queueDepthMax: 12 }));
    const budget = new JobBudget({ maxQueueDepth: 12, maxBufferMemory: 12 * 512 * KiB }, allocations);
    members.forEach((m) => budget.join(m));
    expect(budget.leave(members[1])).toStrictEqual([members[0], members[2]]);
    expect(members.map((m) => m.queueDepth)).toStrictEqual([6, 4, 6]);
    expect(budget.leave(members[1])).toStrictEqual([]);  // a pair leaves once
  });

  it('refuses allocations beyond the job\'s totals', () => {
    const a = { queueDepth: 8, blockSize: 512 * KiB, bufferBytes: 4 * 1024 * KiB, queueDepthMax: 8 };
    expect(() => new JobBudget({ maxQueueDepth: 8, maxBufferMemory: 4 * 1024 * KiB }, [a, a])).toThrow(RangeError);
  });
});
