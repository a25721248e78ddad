// The invariants, checked after every step against the storage objects
// themselves (their backing files, read directly, never through devmove):
//
//  (a) every range a mapfile calls finished ('+') is identical to the source on
//      every target the map is kept for;
//  (b) no byte of any source, and no byte outside a target's planned range,
//      ever changes (and no file appears, is removed or replaced unplanned);
//  (c) exit 0 (or a target reported complete) implies its planned range is
//      identical to the source;
//  (d) a command the model says must be refused exits non-zero and writes
//      nothing anywhere;
//  (e) no devmove process ever listens on an inspector port;
//  and no devmove process, loop device, mount or FUSE daemon is left behind;
//  and, so that (a)–(d) cannot be satisfied by refusing everything, a valid
//  command without faults or signals succeeds ('liveness').
import path from 'node:path';

import type { Plan } from './expect';
import { checkStorage, finishedRanges, parseMap, type InvariantId, type StorageState, type Violation } from './model';
import { gone, type Run } from './process';
import type { Storage, World } from './world';

export const INVARIANTS: Record<InvariantId, string> = {
  a: '(a) every range a mapfile calls finished is identical to the source on every target it is kept for',
  b: '(b) no byte of a source, and no byte outside a target\'s planned range, changes',
  c: '(c) exit 0 (or a target reported complete) implies the planned range is identical to the source',
  d: '(d) a command that must be refused exits non-zero and writes nothing anywhere',
  e: '(e) no devmove process listens on an inspector port',
  leftovers: 'no devmove process, loop device, mount or FUSE daemon of the run is left behind',
  liveness: 'a valid command without faults or signals succeeds (the model test\'s guard against refusing everything)',
};

export class Counters {
  /**
   * How often each invariant was checked: (a) per finished range and target,
   * (b) per storage object and step (plus the file listing), (c) per target
   * reported complete, (d) per command or pair that had to be refused, (e) per
   * devmove process watched, leftovers per process and teardown, liveness per
   * command that had to succeed.
   */
  readonly checks: Record<InvariantId, number> = { a: 0, b: 0, c: 0, d: 0, e: 0, leftovers: 0, liveness: 0 };
  /** Looks at a live devmove process's sockets, for (e). */
  inspectorPolls = 0;
  /** What the steps exercised: 'sigint mid-copy', 'resumed', 'refused', … */
  readonly coverage = new Map<string, number>();

  note(what: string): void {
    this.coverage.set(what, (this.coverage.get(what) ?? 0) + 1);
  }

  add(other: Counters): void {
    for (const k of Object.keys(this.checks) as InvariantId[]) this.checks[k] += other.checks[k];
    this.inspectorPolls += other.inspectorPolls;
    for (const [k, v] of other.coverage) this.coverage.set(k, (this.coverage.get(k) ?? 0) + v);
  }

  coverageText(): string {
    return [...this.coverage].sort((a, b) => a[0].localeCompare(b[0])).map(([k, v]) => `${k} ${v}`).join(', ');
  }

  total(): number {
    return Object.values(this.checks).reduce((a, b) => a + b, 0);
  }

  describe(): string {
    return (Object.keys(this.checks) as InvariantId[]).map((k) => `${k}=${this.checks[k]}`).join(' ');
  }
}

export interface StepFacts {
  world: World;
  plan: Plan;
  runs: Run[];
  before: Map<Storage, StorageState>;
  after: Map<Storage, StorageState>;
  mapsBefore: Map<string, string | null>;
  mapsAfter: Map<string, string | null>;
  filesBefore: Set<string>;
  filesAfter: string[];
  /** Set when the environment, not devmove, made the run fail (another engineer's io_uring sysctl test). */
  environment?: string;
}

/** Every invariant for one step; violations in the order found. */
export function checkStep(f: StepFacts, counters: Counters): Violation[] {
  const out: Violation[] = [];
  checkProcesses(f, counters, out);
  checkRefusal(f, counters, out);
  checkBytes(f, counters, out);
  checkMaps(f, counters, out);
  checkFiles(f, counters, out);
  checkLiveness(f, counters, out);
  return out;
}

function exitText(r: Run): string {
  return r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
}

function checkProcesses(f: StepFacts, counters: Counters, out: Violation[]): void {
  for (const r of f.runs) {
    counters.checks.e++;
    counters.inspectorPolls += r.polls;
    for (const e of r.inspector) out.push({ invariant: 'e', message: `devmove ${r.argv.join(' ')}: ${e} (${r.usr1Sent} SIGUSR1 sent)` });
    counters.checks.leftovers++;
    if (!gone(r.pid)) out.push({ invariant: 'leftovers', message: `devmove process ${r.pid} is still there after the step` });
    if (r.hung) out.push({ invariant: 'liveness', message: `devmove ${r.argv.join(' ')} did not finish within 120 s (killed): ${r.stderr.trim().split('\n').at(-1) ?? ''}` });
  }
  for (const p of f.world.structureProblems()) out.push({ invariant: 'b', message: p });
}

function checkRefusal(f: StepFacts, counters: Counters, out: Violation[]): void {
  const { plan } = f;
  if (!plan.mustRefuse) {
    // Pairs of a job that must be refused while the others run.
    const result = lastResult(f);
    plan.pairs.forEach((p, i) => {
      if (plan.command.kind !== 'job' || p.must.length === 0) return;
      counters.checks.d++;
      const status = (result?.pairs as Array<{ status?: string }> | undefined)?.[i]?.status;
      if (status === 'done') out.push({ invariant: 'd', message: `${p.spec.label} had to be refused (${p.must[0].why}) but is reported done` });
    });
    return;
  }
  counters.checks.d++;
  const why = [...plan.jobMust, ...plan.pairs.flatMap((p) => p.must)].map((r) => r.why).join('; ');
  for (const r of f.runs) {
    if (r.code === 0) out.push({ invariant: 'd', message: `devmove ${r.argv.join(' ')} exited 0, but the command had to be refused: ${why}` });
  }
}

function lastResult(f: StepFacts): Record<string, unknown> | undefined {
  const last = f.runs.at(-1);
  if (!last) return undefined;
  for (const line of last.stdout.split('\n').reverse()) {
    if (!line.startsWith('{"type":"result"')) continue;
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function checkBytes(f: StepFacts, counters: Counters, out: Violation[]): void {
  const writes = f.plan.pairs.flatMap((p) => p.writes);
  for (const s of f.world.storages) {
    const mine = writes.filter((w) => w.storage === s);
    counters.checks.b++;
    if (mine.some((w) => w.outcome === 'done')) counters.checks.c++;
    const v = checkStorage(s, f.before.get(s) ?? { bytes: null, ino: null }, f.after.get(s) ?? { bytes: null, ino: null }, mine, { sources: f.plan.sources });
    if (v) out.push(f.plan.mustRefuse && v.invariant !== 'd' ? { invariant: 'd', message: `${v.message} (the command had to be refused)` } : v);
  }
}

/** (a): the step's maps, against the targets they are kept for; a refused command's map unchanged. */
function checkMaps(f: StepFacts, counters: Counters, out: Violation[]): void {
  for (const p of f.plan.pairs) {
    const use = p.map;
    if (!use || p.spec.map?.aliasOf) continue;
    const text = f.mapsAfter.get(use.path) ?? null;
    if (f.plan.strict || p.must.some((r) => r.scope === 'anywhere')) {
      counters.checks.d++;
      if (text !== use.before) out.push({ invariant: 'd', message: `mapfile ${use.path} ${use.before === null ? 'was created' : 'changed'} although the command had to be refused` });
      continue;
    }
    if (text === null || text === use.before) continue;
    let parsed;
    try {
      parsed = parseMap(text);
    } catch (error) {
      counters.checks.a++;
      out.push({ invariant: 'a', message: `mapfile ${use.path} is not a ddrescue mapfile: ${(error as Error).message}` });
      continue;
    }
    const srcName = p.spec.source;
    const src = f.after.get(srcName.storage)?.bytes ?? Buffer.alloc(0);
    const srcSize = srcName.block ? srcName.block.size : (f.before.get(srcName.storage)?.bytes?.length ?? 0);
    for (const [pos, size] of finishedRanges(parsed)) {
      counters.checks.a++;
      if (pos + size > srcSize) {
        out.push({ invariant: 'a', message: `mapfile ${use.path} calls ${pos}+${size} finished, past the source's end (${srcSize} bytes)` });
        continue;
      }
      for (const t of p.writes) {
        counters.checks.a++;
        const tOff = t.start + (pos - p.spec.skip);
        const want = slice(src, srcName.offset + pos, size);
        const got = slice(f.after.get(t.storage)?.bytes ?? null, tOff, size);
        if (pos < p.spec.skip || !want.equals(got)) {
          let at = 0;
          while (at < size && want[at] === got[at]) at++;
          out.push({
            invariant: 'a',
            message: `mapfile ${use.path} calls source bytes ${pos}+${size} finished, but ${t.label} (${t.storage.label}) differs at source byte ${pos + at} = ${t.storage.label} byte ${tOff + at}${t.outcome === 'unknown' ? ' (this target failed or was dropped)' : ''}`,
          });
          break;
        }
      }
    }
  }
}

function slice(b: Buffer | null, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  if (b && offset >= 0 && offset < b.length) b.copy(out, 0, offset, Math.min(b.length, offset + length));
  return out;
}

/** (b)/(d): no file appears that no write plans. */
function checkFiles(f: StepFacts, counters: Counters, out: Violation[]): void {
  const expected = new Set<string>(f.filesBefore);
  const maps = new Set<string>();
  for (const p of f.plan.pairs) {
    for (const w of p.writes) if (w.file && w.outcome !== 'none') expected.add(w.storage.path);
    if (p.map && !f.plan.strict && !p.must.some((r) => r.scope === 'anywhere')) {
      expected.add(p.map.path);
      maps.add(p.map.path);
    }
  }
  counters.checks.b++;
  for (const file of f.filesAfter) {
    if (expected.has(file)) continue;
    // An interrupted atomic map update leaves its temporary file: not data, not a violation.
    if (file.endsWith('.devmove-tmp') && maps.has(file.slice(0, -'.devmove-tmp'.length))) continue;
    const inv = f.plan.strict ? 'd' : 'b';
    out.push({ invariant: inv, message: `a file appeared that no write planned: ${file}${inv === 'd' ? ' (the command had to be refused)' : ''}` });
  }
  for (const file of f.filesBefore) {
    if (!f.filesAfter.includes(file) && !f.world.ownFiles.has(file) && !path.basename(file).endsWith('.devmove-tmp')) out.push({ invariant: 'b', message: `file ${file} was removed` });
  }
}

function checkLiveness(f: StepFacts, counters: Counters, out: Violation[]): void {
  if (!f.plan.mustSucceed) return;
  counters.checks.liveness++;
  const last = f.runs.at(-1);
  if (!last || last.code === 0) return;
  if (f.environment) return;
  const err = last.stderr.trim().split('\n').slice(-2).join(' | ');
  out.push({ invariant: 'liveness', message: `devmove ${last.argv.join(' ')}: ${exitText(last)} for a command the model says must succeed: ${err}` });
}
