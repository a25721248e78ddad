// Runs the model test: one seed is one world and a sequence of steps drawn from
// it; after every step every invariant is checked. A failing seed reports the
// invariant, the first differing byte, and the whole command sequence as shell
// lines (world set-up included), plus how to rerun the seed in the harness.
import fs from 'node:fs';

import { planCommand, specKey, storageKey, view, type Plan } from './expect';
import { Counters, checkStep, INVARIANTS } from './invariants';
import { KnownOpen } from './known-open';
import { ModelState, type StorageState, type Violation } from './model';
import { Generator, type Command, type Control, type CopySpec, type Step, type WorldChange } from './operations';
import { invoke, jsonLine, type Run, type RunControl, type Stdio } from './process';
import { Rng } from './rng';
import { sh } from './script';
import { content, HugeFile, nbdAvailable, SECTOR, World, type MapSlot, type Storage, type WorldFeatures } from './world';
import { fuseAvailable } from '../helpers/faulty';

export interface RunOptions {
  steps: number;
  /** Force the faulty device in (true) or out (false); by default the seed decides. */
  faulty?: boolean;
  /** Force the NBD export in (true) or out (false); by default the seed decides. */
  nbd?: boolean;
  /** Print one line per step. */
  verbose?: boolean;
  knownOpen?: KnownOpen;
  /** Stop drawing steps after this many milliseconds (soak). */
  deadlineMs?: number;
  /** Steps drawn but not run (shrinking): the others are drawn exactly as in the full run. */
  skip?: ReadonlySet<number>;
}

export interface RunOutcome {
  seed: number;
  stepsRun: number;
  counters: Counters;
  seconds: number;
  failure?: { step: number; title: string; violations: Violation[]; report: string };
  /** Steps the environment spoiled (not counted as failures). */
  environmentNotes: string[];
  features: WorldFeatures;
}

/** Reads every storage object (after flushing the block devices' caches). */
function snapshot(world: World): Map<Storage, StorageState> {
  world.flushDevices();
  world.quiesceNbd();
  const out = new Map<Storage, StorageState>();
  for (const s of world.storages) out.set(s, { bytes: world.read(s), ino: world.inode(s.path) });
  return out;
}

function mapTexts(world: World): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const slot of world.mapSlots) {
    try {
      out.set(slot.path, fs.readFileSync(slot.path, 'utf8'));
    } catch {
      out.set(slot.path, null);
    }
  }
  return out;
}

// ---- world changes ----------------------------------------------------------------------

function heredoc(file: string, text: string): string {
  return `cat > ${sh(file)} <<'DEVMOVE_MODEL_EOF'\n${text.endsWith('\n') ? text : `${text}\n`}DEVMOVE_MODEL_EOF`;
}

/** A GNU ddrescue-style map (no devmove identity line) claiming exactly the sectors every target already holds. */
function authorMap(slot: MapSlot, spec: CopySpec, state: ModelState): string {
  const src = view(spec.source, state);
  const length = Math.max(0, Math.min(spec.length?.bytes ?? Infinity, src.size - spec.skip));
  const blocks: Array<[number, number, string]> = [];
  const push = (pos: number, size: number, status: string): void => {
    const last = blocks.at(-1);
    if (last && last[2] === status && last[0] + last[1] === pos) last[1] += size;
    else if (size > 0) blocks.push([pos, size, status]);
  };
  push(0, spec.skip, '?');
  const srcBytes = state.get(spec.source.storage).bytes ?? Buffer.alloc(0);
  for (let o = 0; o < length; o += SECTOR) {
    const n = Math.min(SECTOR, length - o);
    const want = srcBytes.subarray(src.base + spec.skip + o, src.base + spec.skip + o + n);
    const same =
      want.length === n &&
      spec.targets.every((t) => {
        const tv = view(t.name, state);
        const got = state.get(t.name.storage).bytes?.subarray(tv.base + spec.seek + o, tv.base + spec.seek + o + n);
        return got !== undefined && got.length === n && got.equals(want);
      });
    push(spec.skip + o, n, same ? '+' : '?');
  }
  const hex = (n: number): string => `0x${n.toString(16).toUpperCase().padStart(8, '0')}`;
  const lines = [
    '# Mapfile. Created by GNU ddrescue version 1.27',
    `# Command line: ddrescue -n ${spec.source.spelling} ${spec.targets[0].name.spelling} ${slot.path}`,
    '# Start time:   2026-11-22 10:00:00',
    '# Current time: 2026-11-22 10:00:05',
    '# Finished',
    '# current_pos  current_status  current_pass',
    `${hex(spec.skip + length)}     +               1`,
    '#      pos        size  status',
    ...blocks.map(([p, s, st]) => `${hex(p)}  ${hex(s)}  ${st}`),
  ];
  return `${lines.join('\n')}\n`;
}

async function applyChange(change: WorldChange, world: World, state: ModelState): Promise<void> {
  const s = world.script;
  switch (change.kind) {
    case 'rm':
      fs.rmSync(change.file, { force: true });
      s.line(`rm -f ${sh(change.file)}`);
      state.maps.delete(change.file);
      return;
    case 'recreate': {
      // Made next to the old one and renamed over it: a new inode, whatever the file system reuses.
      const file = change.storage.path;
      fs.writeFileSync(`${file}.new`, content(change.key, change.size));
      fs.renameSync(`${file}.new`, file);
      s.line(`${change.size === 0 ? ': >' : `gen ${change.key.toString('hex')} ${change.size} >`} ${sh(`${file}.new`)} && mv ${sh(`${file}.new`)} ${sh(file)}`);
      return;
    }
    case 'strip': {
      let text = '';
      try {
        text = fs.readFileSync(change.slot.path, 'utf8');
      } catch {
        s.comment(`(no map at ${change.slot.path} to rewrite)`);
        return;
      }
      fs.writeFileSync(change.slot.path, text.split('\n').filter((l) => !l.startsWith('# devmove:')).join('\n'));
      s.line(`sed -i '/^# devmove:/d' ${sh(change.slot.path)}`);
      return;
    }
    case 'author': {
      const text = authorMap(change.slot, change.spec, state);
      fs.writeFileSync(change.slot.path, text);
      s.line(heredoc(change.slot.path, text));
      state.maps.set(change.slot.path, { commandKey: specKey(change.spec), storageKey: storageKey(change.spec), targets: change.spec.targets.map((t) => ({ storage: t.name.storage, ino: world.inode(t.name.storage.path) })) });
      return;
    }
    case 'faults':
      await world.setFaults(change.faults);
      return;
    case 'scribble': {
      // In place, never past the file's end (the file keeps its size and inode).
      const file = change.storage.path;
      const size = fs.statSync(file, { throwIfNoEntry: false })?.size;
      if (size === undefined) {
        s.comment(`(no ${file} to change)`);
        return;
      }
      const fd = fs.openSync(file, 'r+');
      try {
        for (const p of change.pieces) {
          const n = Math.max(0, Math.min(p.bytes.length, size - p.offset));
          if (n === 0) continue;
          fs.writeSync(fd, p.bytes, 0, n, p.offset);
          const escaped = [...p.bytes.subarray(0, n)].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
          s.line(`printf '${escaped}' | dd of=${sh(file)} bs=1 seek=${p.offset} conv=notrunc status=none`);
        }
      } finally {
        fs.closeSync(fd);
      }
      return;
    }
    case 'empty':
      fs.writeFileSync(change.storage.path, '');
      s.line(`: > ${sh(change.storage.path)}   # the shell's > (again below)`);
      return;
    case 'touch':
      if (fs.existsSync(change.storage.path)) return;
      fs.writeFileSync(change.storage.path, '');
      s.line(`: >> ${sh(change.storage.path)}   # the shell makes it for the redirection below`);
      return;
    case 'job-file':
      fs.writeFileSync(change.file, change.text);
      world.ownFiles.add(change.file);
      s.line(heredoc(change.file, change.text));
      return;
  }
}

// ---- running a command ------------------------------------------------------------------

function withRate(command: Command, argv: string[], control: Control, bytes: number): string[] {
  if (control.kind === 'plain' || control.seconds <= 0 || bytes === 0 || command.kind !== 'copy') return argv;
  return [...argv, `--rate=${Math.max(65536, Math.ceil(bytes / control.seconds))}`];
}

/** The pipes, redirections and environment of a command, for invoke(). */
function stdioOf(command: Command, world: World): Stdio {
  const out: Stdio = {};
  if (command.env) out.env = command.env;
  if (command.kind !== 'copy') return out;
  const spec = command.spec;
  if (spec.pipeIn?.how === 'stdin') out.catIn = spec.source.spelling;
  if (spec.pipeIn?.how === 'fifo') out.fifo = { fifo: world.fifo.path, file: spec.source.spelling };
  const target = spec.targets.at(-1);
  if (spec.stdout && target) out.stdout = { mode: spec.stdout.mode, file: target.name.spelling };
  return out;
}

/** `$DM ARGS` as a shell writes it, with the pipe, redirection and environment of `io`. */
function shellCommand(argv: string[], io: Stdio): string {
  const env = Object.entries(io.env ?? {}).map(([k, v]) => `${k}=${sh(v)} `).join('');
  const redirect = io.stdout ? ` ${io.stdout.mode} ${sh(io.stdout.file)}` : '';
  const cmd = `${env}$DM ${argv.map(sh).join(' ')}${redirect}`;
  return io.catIn !== undefined ? `cat ${sh(io.catIn)} | ${cmd}` : cmd;
}

function shellLine(argv: string[], control: Control, io: Stdio, rerun?: string[]): string {
  const lines = shellLines(shellCommand(argv, io), control, shellCommand(rerun ?? argv, io));
  if (!io.fifo) return lines;
  // The FIFO's writer: started before, ended after (devmove may refuse without opening the FIFO).
  const writer = `cat ${sh(io.fifo.file)} > ${sh(io.fifo.fifo)} & C=$!`;
  const reap = 'kill -9 $C 2>/dev/null; wait $C';
  return lines
    .split('\n')
    .map((l) => `${writer}\n${l}\n${reap}`)
    .join('\n');
}

function shellLines(cmd: string, control: Control, rerunCmd: string): string {
  const loaded = 'until grep -qs devmove.node /proc/$P/maps || ! kill -0 $P 2>/dev/null; do :; done';
  const wait = (c: { afterMs: number; afterLoad: boolean }): string => `${c.afterLoad ? `${loaded}; ` : ''}sleep ${(c.afterMs / 1000).toFixed(3)}`;
  switch (control.kind) {
    case 'plain':
      return cmd;
    case 'sigint':
      return `${cmd} & P=$!; ${wait(control)}; kill -INT $P; wait $P`;
    case 'kill9':
      return `${cmd} & P=$!; ${wait(control)}; kill -9 $P; wait $P\n${rerunCmd}`;
    case 'usr1': {
      const start = control.afterLoad ? loaded : `sleep ${(control.startMs / 1000).toFixed(3)}`;
      const stop = control.stopAfterMs !== undefined ? `for i in $(seq ${Math.round(control.stopAfterMs / 3)}); do kill -USR1 $P; sleep 0.003; done; kill -INT $P` : 'while kill -USR1 $P 2>/dev/null; do sleep 0.003; done';
      return `${cmd} & P=$!; ${start}; ${stop}; wait $P`;
    }
  }
}

async function runCommand(command: Command, control: Control, plan: Plan, world: World): Promise<Run[]> {
  const argv = withRate(command, command.argv, control, plan.bytes);
  const stdio = stdioOf(command, world);
  const rc: RunControl = { stdio };
  if (control.kind === 'sigint') rc.sigintAfterMs = control.afterMs;
  if (control.kind === 'kill9') rc.killAfterMs = control.afterMs;
  if (control.kind === 'sigint' || control.kind === 'kill9') rc.afterLoad = control.afterLoad;
  if (control.kind === 'usr1') {
    rc.usr1 = { startMs: control.startMs, afterLoad: control.afterLoad, ...(control.stopAfterMs !== undefined ? { stopAfterMs: control.stopAfterMs } : {}) };
    if (control.stopAfterMs !== undefined) rc.sigintAfterBurstMs = control.stopAfterMs + 20;
  }
  world.script.line(shellLine(argv, control, stdio, command.argv));
  const runs = [await invoke(argv, world.W, rc)];
  // At once, as a supervisor would: the same command, resuming.
  if (control.kind === 'kill9') runs.push(await invoke(command.argv, world.W, { stdio }));
  return runs;
}

/** Each planned write's outcome from what devmove reported. */
function settleOutcomes(plan: Plan, runs: Run[]): void {
  const last = runs[runs.length - 1];
  const result = jsonLine(last.stdout, 'result');
  plan.pairs.forEach((pair, i) => {
    for (const [j, w] of pair.writes.entries()) {
      if (plan.mustRefuse || pair.must.length > 0) {
        w.outcome = 'none';
        continue;
      }
      if (plan.command.kind === 'copy') {
        const targets = result?.targets as Array<{ dropped?: boolean }> | undefined;
        w.outcome = last.code === 0 || (result && targets && !targets[j]?.dropped) ? 'done' : 'unknown';
      } else {
        const p = (result?.pairs as Array<{ status?: string; result?: { targets?: Array<{ dropped?: boolean }> } }> | undefined)?.[i];
        w.outcome = p?.status === 'done' && !p.result?.targets?.[j]?.dropped ? 'done' : 'unknown';
      }
    }
  });
}

/** An io_uring refusal that another engineer's sysctl test causes for a fraction of a second. */
function environmentFailure(runs: Run[]): string | undefined {
  const text = runs.map((r) => r.stderr).join('\n');
  if (/io_uring_setup|io_uring is (disabled|not available)|io_uring_disabled/i.test(text)) return text.trim().split('\n').slice(-1)[0];
  return undefined;
}

/** After a step: what devmove's maps now say about their copies. */
function recordMaps(plan: Plan, state: ModelState, world: World, mapsAfter: Map<string, string | null>): void {
  for (const p of plan.pairs) {
    const use = p.map;
    if (!use || p.spec.map?.aliasOf || plan.strict || p.must.some((r) => r.scope === 'anywhere')) continue;
    const text = mapsAfter.get(use.path) ?? null;
    if (text === null || text === use.before) continue;
    state.maps.set(use.path, { commandKey: specKey(p.spec), storageKey: storageKey(p.spec), targets: p.spec.targets.map((t) => ({ storage: t.name.storage, ino: world.inode(t.name.storage.path) })) });
  }
}

/** What the step exercised, for the summary: so a run shows it did what it claims. */
function noteCoverage(step: Step, plan: Plan, runs: Run[], counters: Counters): void {
  const cmd = step.command;
  counters.note(cmd.kind === 'copy' ? (cmd.spec.targets.length > 1 ? 'fan-out' : 'copy') : cmd.kind === 'job' ? 'job' : 'devices');
  if (cmd.kind === 'job') counters.note(`job pairs ${cmd.pairs.length}`);
  const first = runs[0];
  const ended = `the command ended first (${first.signal ?? `exit ${first.code}`})`;
  if (step.control.kind === 'sigint') counters.note(first.code === 130 ? 'SIGINT mid-copy' : first.signal === 'SIGINT' ? 'killed by SIGINT (outside the copy\'s handler)' : `SIGINT: ${ended}`);
  if (step.control.kind === 'kill9') counters.note(first.signal === 'SIGKILL' ? 'kill -9 + rerun' : `kill -9: ${ended}`);
  if (runs.some((r) => /Starting inspector on 192\.0\.2\./.test(r.stderr))) counters.note('SIGUSR1 in start-up: inspector pointed at TEST-NET by the launcher');
  if (step.control.kind === 'usr1') counters.note(`SIGUSR1 burst (${first.usr1Sent} sent)`.replace(/\d+ sent/, first.usr1Sent > 0 ? 'sent' : 'none sent'));
  if (plan.mustRefuse) counters.note(plan.strict ? 'must refuse (issue 10 classes)' : 'must refuse (README refusals)');
  if (plan.pairs.some((p) => p.resumed)) counters.note('resumed from a mapfile');
  if (step.title.startsWith('second pass')) counters.note('second pass (--only-changed)');
  if (cmd.kind === 'copy' && cmd.spec.onlyChanged && plan.mustRefuse) counters.note('--only-changed refused');
  if (plan.pairs.some((p) => p.map)) counters.note('with --mapfile');
  for (const p of plan.pairs) if (p.spec.verify) counters.note(`--verify${p.spec.verify === true ? '' : `=${p.spec.verify}`}`);
  if (step.changes.some((c) => c.kind === 'faults')) counters.note('faults on the FUSE device');
  if (plan.pairs.some((p) => p.writes.some((w) => w.outcome === 'done'))) counters.note('targets reported complete');
  if (plan.pairs.some((p) => p.writes.some((w) => w.trunc !== 'no' && w.file))) counters.note('cuts a file');
  if (cmd.kind === 'copy' && cmd.spec.pipeIn) counters.note(`source: ${cmd.spec.pipeIn.how === 'stdin' ? 'cat NAME | devmove' : 'a named FIFO'}`);
  if (cmd.kind === 'copy' && cmd.spec.stdout) counters.note(`target: standard output ${cmd.spec.stdout.mode} NAME`);
  if (cmd.kind === 'copy' && cmd.families.has('nbd-reconnect')) counters.note('--reconnect (NBD, server up)');
  if (plan.pairs.some((p) => p.spec.source.nbd)) counters.note('source: an NBD export');
  if (plan.pairs.some((p) => p.spec.targets.some((t) => t.name.nbd))) counters.note('target: an NBD export');
  if (cmd.families.has('threads-engine')) {
    const result = jsonLine(runs[runs.length - 1].stdout, 'result');
    const engines = [result?.ioEngine, ...((result?.pairs as Array<{ result?: { ioEngine?: string } }> | undefined) ?? []).map((p) => p.result?.ioEngine)].filter(Boolean);
    counters.note(engines.includes('threads') ? 'threads I/O driver (result says threads)' : 'threads I/O driver asked for (no result naming it)');
  }
  for (const c of step.changes) if (c.kind === 'recreate' || c.kind === 'strip' || c.kind === 'author') counters.note(`world: ${c.kind}`);
}

interface StepResult {
  violations: Violation[];
  plan: Plan;
  runs: Run[];
  environment?: string;
}

export async function executeStep(step: Step, world: World, state: ModelState, counters: Counters): Promise<StepResult> {
  world.script.comment(`step ${step.index}: ${step.title}`);
  for (const change of step.changes) await applyChange(change, world, state);
  const before = snapshot(world);
  for (const [s, st] of before) state.storage.set(s, st);
  const mapsBefore = mapTexts(world);
  const filesBefore = new Set(world.files());
  const faultsWithErrors = step.changes.some((c) => c.kind === 'faults' && (Boolean(c.faults.readErrors?.length) || Boolean(c.faults.writeErrors?.length) || c.faults.failWritesAfterBytes !== undefined));
  const writeFaults = step.changes.some((c) => c.kind === 'faults' && (Boolean(c.faults.writeErrors?.length) || c.faults.failWritesAfterBytes !== undefined));
  const cmd = step.command;
  const specs = cmd.kind === 'copy' ? [cmd.spec] : cmd.kind === 'job' ? cmd.pairs : [];
  const latched = state.writeErrorLatched && specs.some((s) => s.targets.some((t) => t.name.storage === world.faultyStorage));
  const plan = planCommand(step.command, state, faultsWithErrors || latched);
  if (step.control.kind !== 'plain') plan.mustSucceed = false;
  world.script.comment(`model: ${plan.mustRefuse ? `must be refused (${[...plan.jobMust, ...plan.pairs.flatMap((p) => p.must)].map((r) => r.why).join('; ')})` : plan.mustSucceed ? 'must succeed' : 'may fail'}`);
  const runs = await runCommand(step.command, step.control, plan, world);
  if (step.changes.some((c) => c.kind === 'faults')) await world.setFaults({});
  if (writeFaults) state.writeErrorLatched = true;
  else if (latched && runs.at(-1)?.code === 0) state.writeErrorLatched = false;
  settleOutcomes(plan, runs);
  let after: Map<Storage, StorageState>;
  try {
    after = snapshot(world);
  } catch (error) {
    if (!(error instanceof HugeFile)) throw error;
    // Not comparable byte by byte, and no step plans it: the step fails here (and the seed ends).
    const done = plan.pairs.some((p) => p.writes.some((w) => w.storage === error.storage && w.outcome === 'done'));
    const planned = Math.max(0, ...plan.pairs.flatMap((p) => p.writes.filter((w) => w.storage === error.storage).map((w) => w.start + w.data.length)));
    const message = `${error.message}; the step planned at most ${planned} bytes there (${runs.map((r) => (r.signal ? `killed by ${r.signal}` : `exit ${r.code}`)).join(', ')})`;
    return { violations: [{ invariant: done ? 'c' : 'b', message }], plan, runs };
  }
  const mapsAfter = mapTexts(world);
  const environment = environmentFailure(runs);
  const violations = checkStep({ world, plan, runs, before, after, mapsBefore, mapsAfter, filesBefore, filesAfter: world.files(), ...(environment ? { environment } : {}) }, counters);
  noteCoverage(step, plan, runs, counters);
  for (const [s, st] of after) state.storage.set(s, st);
  recordMaps(plan, state, world, mapsAfter);
  for (const s of world.repairPinned()) state.storage.set(s, { bytes: world.read(s), ino: world.inode(s.path) });
  return { violations, plan, runs, ...(environment ? { environment } : {}) };
}

// ---- one seed ---------------------------------------------------------------------------

function describeRuns(runs: Run[]): string[] {
  return runs.map((r) => {
    const pairs = (jsonLine(r.stdout, 'result')?.pairs as Array<{ name: string; status: string; error?: { message?: string } }> | undefined) ?? [];
    const failed = pairs.filter((p) => p.status !== 'done').map((p) => `pair ${p.name} ${p.status}: ${p.error?.message ?? ''}`);
    const err = [...r.stderr.trim().split('\n').filter(Boolean).slice(-3), ...failed].join('\n      ');
    const end = r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
    return `  devmove ${r.argv.join(' ')}\n    → ${end} after ${Math.round(r.ms)} ms${err ? `\n      ${err}` : ''}`;
  });
}

function report(seed: number, stepIndex: number, step: Step, res: StepResult, world: World, open: KnownOpen): string {
  const lines: string[] = [];
  lines.push(`MODEL TEST FAILURE: seed ${seed}, step ${stepIndex} (${step.title})`);
  const families = [...step.command.families];
  if (families.length > 0) lines.push(`  the step's families (known-open.ts): ${families.join(', ')}`);
  for (const v of res.violations) lines.push(`  ${INVARIANTS[v.invariant]}\n    ${v.message}`);
  const must = [...res.plan.jobMust, ...res.plan.pairs.flatMap((p) => p.must)];
  lines.push(`  the model: ${res.plan.mustRefuse ? `must be refused: ${must.map((r) => `${r.why}${r.family ? ` [family ${r.family}]` : ''}`).join('; ')}` : res.plan.mustSucceed ? 'must succeed' : `may fail${res.plan.pairs.some((p) => p.may.length) ? ` (${res.plan.pairs.flatMap((p) => p.may).join('; ')})` : ''}`}`);
  lines.push(...describeRuns(res.runs));
  lines.push('');
  lines.push(`Rerun this seed in the harness:  MODEL_SEED=${seed} MODEL_STEPS=${stepIndex + 1} MODEL_KNOWN_OPEN=${open.describe()} npx vitest run test/model`);
  lines.push('Replay by hand (as root; the same operations, up to timing; paths below as $W, $V, $F, $L1… of this script):');
  const head = world.script.substitute(lines.join('\n'));
  return [head, ...world.script.render(), ...world.teardownScript()].join('\n');
}

export function features(seed: number, faulty?: boolean, nbd?: boolean): WorldFeatures {
  const rng = new Rng(seed ^ 0x5eed);
  const base = { faulty: faulty ?? (fuseAvailable() && rng.chance(0.4)), tmpfs: rng.chance(0.5) };
  // Drawn last, so a seed's faulty/tmpfs choice is what it was before worlds had NBD exports.
  return { ...base, nbd: nbd ?? (nbdAvailable && rng.chance(0.3)) };
}

export async function runSeed(seed: number, options: RunOptions): Promise<RunOutcome> {
  const started = performance.now();
  const open = options.knownOpen ?? new KnownOpen();
  const feats = features(seed, options.faulty, options.nbd);
  const rng = new Rng(seed);
  const world = await World.build(rng, feats);
  // Only if this nbdkit and this build can have one.
  feats.nbd = world.nbdServer !== undefined;
  const state = new ModelState();
  const counters = new Counters();
  const generator = new Generator(rng, world, open);
  const outcome: RunOutcome = { seed, stepsRun: 0, counters, seconds: 0, environmentNotes: [], features: feats };
  try {
    for (let i = 0; i < options.steps; i++) {
      if (options.deadlineMs !== undefined && performance.now() > options.deadlineMs) break;
      const step = generator.next(i);
      if (options.skip?.has(i)) continue;
      if (options.verbose) process.stdout.write(`model seed ${seed} step ${i}: ${step.title} [${step.control.kind}]\n    devmove ${step.command.argv.join(' ')}\n`);
      const res = await executeStep(step, world, state, counters);
      outcome.stepsRun++;
      if (res.environment) outcome.environmentNotes.push(`step ${i}: ${res.environment}`);
      if (options.verbose) {
        const r = res.runs.at(-1);
        process.stdout.write(`    → ${r ? (r.signal ?? r.code) : '-'}${res.plan.mustRefuse ? ' (must refuse)' : ''}\n`);
      }
      if (res.violations.length > 0) {
        outcome.failure = { step: i, title: step.title, violations: res.violations, report: report(seed, i, step, res, world, open) };
        break;
      }
    }
  } finally {
    world.teardown();
    const left = world.leftovers();
    counters.checks.leftovers++;
    if (left.length > 0 && !outcome.failure) {
      outcome.failure = { step: outcome.stepsRun, title: 'teardown', violations: [{ invariant: 'leftovers', message: left.join('; ') }], report: `MODEL TEST FAILURE: seed ${seed}: left behind: ${left.join('; ')}` };
    }
    outcome.seconds = (performance.now() - started) / 1000;
  }
  return outcome;
}

// ---- shrinking ----------------------------------------------------------------------------

/** "1,2,5-9" → {1, 2, 5, 6, 7, 8, 9}. */
export function parseSteps(text: string | undefined): Set<number> {
  const out = new Set<number>();
  for (const part of (text ?? '').split(',').map((p) => p.trim()).filter(Boolean)) {
    const [a, b] = part.split('-').map(Number);
    for (let i = a; i <= (b ?? a); i++) out.add(i);
  }
  return out;
}

export function formatSteps(steps: Iterable<number>): string {
  const sorted = [...steps].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j;
  }
  return parts.join(',');
}

/**
 * Drops steps that do not matter for a failure (delta debugging: halves, then
 * quarters, … then single steps), keeping a removal when the seed still fails
 * the same invariant. Each try builds the world again and reruns what is left,
 * so this is bounded by `budgetMs`. Returns the smallest failing run found.
 */
export async function shrink(failed: RunOutcome, options: RunOptions, budgetMs: number): Promise<{ skip: Set<number>; outcome: RunOutcome; tries: number }> {
  const failure = failed.failure;
  if (!failure) throw new Error('shrink: the run did not fail');
  const invariant = failure.violations[0].invariant;
  const deadline = performance.now() + budgetMs;
  let best = { skip: new Set(options.skip ?? []), outcome: failed, tries: 0 };
  let last = failure.step;
  for (let chunk = Math.max(1, Math.ceil(last / 2)); chunk >= 1 && performance.now() < deadline; chunk = chunk === 1 ? 0 : Math.ceil(chunk / 2)) {
    for (let start = 0; start < last && performance.now() < deadline; start += chunk) {
      const skip = new Set(best.skip);
      for (let i = start; i < Math.min(start + chunk, last); i++) skip.add(i);
      if (skip.size === best.skip.size) continue;
      best.tries++;
      const outcome = await runSeed(failed.seed, { ...options, steps: last + 1, skip, verbose: false });
      if (outcome.failure?.violations.some((v) => v.invariant === invariant)) {
        best = { skip, outcome, tries: best.tries };
        last = outcome.failure.step;
      }
    }
  }
  return best;
}
