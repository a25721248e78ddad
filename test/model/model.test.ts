// The randomized model test of devmove's integrity (issue 10). Each seed builds
// a small world of real kernel objects and draws a sequence of operations over
// it; after every step the invariants of invariants.ts are checked.
//
//   npm test                         fixed seeds plus one fresh seed (printed)
//   MODEL_SEED=123 MODEL_STEPS=40 npx vitest run test/model      one seed
//   SOAK_SECONDS=3600 npm run test:soak                           fresh seeds until the time is up
//   MODEL_KNOWN_OPEN=none …          also draw the families known to be open (known-open.ts)
//   MODEL_VERBOSE=1 …                one line per step
//   MODEL_SHRINK=1 …                 shrink a failure to the steps that matter (the soak always does)
//   MODEL_SKIP=3,5-9 …               draw these steps but do not run them (a shrunk replay)
//   MODEL_DEVMOVE_REPO=/path …       run another checkout's build (its bin/devmove) under this tester
//   MODEL_NBD=1 (or 0) …             force the world's NBD export (nbdkit file) in or out
import crypto from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { canUseLoop } from '../helpers/devices';
import { skipWithoutFuse } from '../helpers/faulty';
import { Counters } from './invariants';
import { KnownOpen } from './known-open';
import { nbdAvailable } from './world';
import { formatSteps, parseSteps, runSeed, shrink, type RunOptions, type RunOutcome } from './runner';

/** Fixed seeds: a world with the faulty device, one with an NBD export, and worlds the seed decides. */
const FIXED: ReadonlyArray<{ seed: number; faulty?: boolean; nbd?: boolean }> = [{ seed: 1, faulty: true }, { seed: 2 }, { seed: 3, nbd: true }];
const forcedNbd = process.env.MODEL_NBD === undefined ? undefined : process.env.MODEL_NBD === '1';
const STEPS = Number(process.env.MODEL_STEPS ?? 30);
const verbose = process.env.MODEL_VERBOSE === '1';

function summary(o: RunOutcome): string {
  const rate = o.stepsRun / Math.max(o.seconds, 0.001);
  const world = [o.features.faulty && 'faulty device', o.features.tmpfs && 'full tmpfs', o.features.nbd && 'NBD export'].filter(Boolean).join(', ') || 'files and loop devices';
  return (
    `model seed ${o.seed} (${world}): ${o.stepsRun} steps in ${o.seconds.toFixed(1)} s (${rate.toFixed(2)} steps/s), ` +
    `invariants checked: ${o.counters.total()} [${o.counters.describe()}], inspector polls ${o.counters.inspectorPolls}\n` +
    `  exercised: ${o.counters.coverageText()}${o.environmentNotes.length ? `\n  environment: ${o.environmentNotes.join(', ')}` : ''}`
  );
}

/** With MODEL_SHRINK=1 (and in the soak), a failure is shrunk to the steps that matter, for MODEL_SHRINK_SECONDS (300). */
async function explain(outcome: RunOutcome, options: RunOptions, doShrink: boolean): Promise<string> {
  const report = outcome.failure?.report ?? '';
  if (!outcome.failure || !doShrink) return report;
  const shrunk = await shrink(outcome, options, Number(process.env.MODEL_SHRINK_SECONDS ?? 300) * 1000);
  const kept = (shrunk.outcome.failure?.step ?? 0) + 1 - [...shrunk.skip].filter((i) => i <= (shrunk.outcome.failure?.step ?? 0)).length;
  const how = `MODEL_SEED=${outcome.seed} MODEL_STEPS=${(shrunk.outcome.failure?.step ?? 0) + 1} MODEL_SKIP=${formatSteps(shrunk.skip)}`;
  return `${report}\n\nSHRUNK (${shrunk.tries} tries): the same invariant fails with ${kept} of the steps; rerun: ${how} npx vitest run test/model\n${shrunk.outcome.failure?.report ?? ''}`;
}

async function check(seed: number, steps: number, faulty?: boolean, nbd = forcedNbd): Promise<RunOutcome> {
  const options: RunOptions = { steps, verbose, knownOpen: new KnownOpen(), skip: parseSteps(process.env.MODEL_SKIP), ...(faulty !== undefined ? { faulty } : {}), ...(nbd !== undefined ? { nbd } : {}) };
  const outcome = await runSeed(seed, options);
  console.log(summary(outcome));
  const report = await explain(outcome, options, process.env.MODEL_SHRINK === '1');
  if (outcome.failure) console.log(report);
  expect(outcome.failure?.violations ?? [], report).toEqual([]);
  return outcome;
}

const soakSeconds = Number(process.env.SOAK_SECONDS ?? 0);
const oneSeed = process.env.MODEL_SEED;

describe.skipIf(!canUseLoop)('model test (root, loop devices)', () => {
  console.log(`model test: known-open families skipped: ${new KnownOpen().describe()} (MODEL_KNOWN_OPEN=none draws them too)`);

  if (oneSeed !== undefined) {
    it(`seed ${oneSeed}, ${STEPS} steps`, async () => {
      await check(Number(oneSeed), STEPS);
    }, 60_000 + STEPS * 20_000);
  } else if (soakSeconds > 0) {
    it(`soak for ${soakSeconds} s`, async () => {
      const deadline = performance.now() + soakSeconds * 1000;
      const total = new Counters();
      const seeds: number[] = [];
      let steps = 0;
      while (performance.now() < deadline) {
        const seed = crypto.randomInt(1, 2 ** 31);
        seeds.push(seed);
        const options: RunOptions = { steps: Number(process.env.MODEL_STEPS ?? 60), verbose, deadlineMs: deadline };
        const outcome = await runSeed(seed, options);
        console.log(summary(outcome));
        total.add(outcome.counters);
        steps += outcome.stepsRun;
        if (outcome.failure) {
          const report = await explain(outcome, { ...options, deadlineMs: Infinity }, process.env.MODEL_SHRINK !== '0');
          console.log(report);
          expect(outcome.failure.violations, report).toEqual([]);
        }
      }
      console.log(`model soak: ${seeds.length} seeds (${seeds.join(', ')}), ${steps} steps, invariants checked: ${total.total()} [${total.describe()}]\n  exercised: ${total.coverageText()}`);
    }, (soakSeconds + 600) * 1000);
  } else {
    for (const { seed, faulty, nbd } of FIXED) {
      it.skipIf((faulty === true && skipWithoutFuse) || (nbd === true && !nbdAvailable))(`fixed seed ${seed}${faulty ? ' (with the faulty FUSE device)' : ''}${nbd ? ' (with an NBD export)' : ''}`, async () => {
        await check(seed, STEPS, faulty, nbd ?? forcedNbd);
      }, 60_000 + STEPS * 20_000);
    }
    const fresh = crypto.randomInt(1, 2 ** 31);
    it(`fresh seed ${fresh} (rerun: MODEL_SEED=${fresh} MODEL_STEPS=${STEPS})`, async () => {
      await check(fresh, STEPS);
    }, 60_000 + STEPS * 20_000);
  }
});
