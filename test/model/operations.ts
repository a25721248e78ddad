// The operations the model test draws: copies with random dd operands through
// any name, fan-out, mapfiles and their resumption, job files, signals, and the
// changes to the world between runs (a recreated target, a ddrescue-style map,
// faults on the faulty device). Every choice comes from the seed and from the
// world's structure only — never from what an earlier run happened to do — so
// (seed, steps) always draws the same sequence of operations.
import path from 'node:path';

import type { FaultSet } from '../helpers/faulty';
import { KnownOpen, type Family } from './known-open';
import { Rng } from './rng';
import type { MapSlot, Name, Storage, World } from './world';

const MiB = 1024 * 1024;
const SECTOR_BYTES = 512;

/**
 * --verify with chance p: a third each strict, behind the copy, and with one read after it. One
 * draw, so a seed draws the same operations (verify or not) as it did before those modes existed.
 */
function drawVerify(rng: Rng, p: number): boolean | 'strict' | 'behind' {
  const x = rng.float();
  if (x < p / 3) return 'strict';
  if (x < (2 * p) / 3) return 'behind';
  return x < p;
}

/** One copy() as the command asks for it, in bytes. */
export interface CopySpec {
  /** 'the copy' or 'pairs[1]'. */
  label: string;
  source: Name;
  targets: Array<{ name: Name; label: string }>;
  skip: number;
  seek: number;
  length?: { bytes: number; exact: boolean };
  /** Where a regular-file target is cut before the copy (dd without conv=notrunc); undefined: not cut. */
  truncAt?: number;
  create: boolean;
  excl: boolean;
  sparse: boolean;
  map?: { slot: MapSlot; spelling: string; aliasOf?: Name };
  drop: boolean;
  /**
   * --verify (true: with one read, against the copy's block digests), --verify=behind (the same, each
   * range read back while the copy goes on) or --verify=strict (the source read again).
   */
  verify: boolean | 'strict' | 'behind';
  /** Faults set on the faulty device for this command (the faulty device is one of its sides). */
  faulty?: 'source' | 'target';
  /** Set when the I/O size splits pages of a regular-file target on disk (see 'dio-buffered-collision'). */
  io?: number;
  /**
   * The source reaches devmove through a pipe, not its name: standard input fed by `cat NAME |`
   * (operand: nothing or `if=-`), or a named FIFO fed by `cat NAME > FIFO &` (operand: `if=FIFO`).
   */
  pipeIn?: { how: 'stdin' | 'fifo'; operand?: string };
  /** The last target is standard output, redirected by the shell (`> NAME` empties it first; `>>` appends; `1<>` neither). */
  stdout?: { mode: '>' | '>>' | '1<>'; operand?: string };
  /** --only-changed: the targets are read back and only the blocks that differ are written. */
  onlyChanged?: boolean;
}

export interface CopyCommand {
  kind: 'copy';
  id: number;
  spec: CopySpec;
  /** devmove's arguments, without --rate (the control adds it). */
  argv: string[];
  families: Set<Family>;
  /** Extra environment: DEVMOVE_IO_ENGINE=threads. */
  env?: Record<string, string>;
}

export interface JobCommand {
  kind: 'job';
  id: number;
  /** Kernel path of the job file, and how it is named on the command line. */
  file: string;
  spelling: string;
  pairs: CopySpec[];
  text: string;
  argv: string[];
  families: Set<Family>;
  env?: Record<string, string>;
}

export interface DevicesCommand {
  kind: 'devices';
  id: number;
  argv: string[];
  families: Set<Family>;
  env?: Record<string, string>;
}

export type Command = CopyCommand | JobCommand | DevicesCommand;

export type Control =
  | { kind: 'plain' }
  /**
   * SIGINT `afterMs` after spawning a copy slowed (--rate) to last about `seconds`, or with
   * `afterLoad` that long after devmove's addon is mapped (the copy is about to start).
   */
  | { kind: 'sigint'; afterMs: number; afterLoad: boolean; seconds: number }
  /** SIGKILL likewise, then at once the same command again (without --rate). */
  | { kind: 'kill9'; afterMs: number; afterLoad: boolean; seconds: number }
  /** A burst of SIGUSR1 every few ms, from `startMs` after spawning (with `afterLoad`: once devmove's addon is mapped). */
  | { kind: 'usr1'; startMs: number; afterLoad: boolean; seconds: number; stopAfterMs?: number };

export type WorldChange =
  | { kind: 'rm'; file: string }
  /** A target file deleted and made again (a new inode), empty or with other bytes. */
  | { kind: 'recreate'; storage: Storage; size: number; key: Buffer }
  /** The map rewritten without devmove's identity line, as GNU ddrescue would write it. */
  | { kind: 'strip'; slot: MapSlot }
  /** A ddrescue-style map for a command, claiming only what the target really holds (written at run time). */
  | { kind: 'author'; slot: MapSlot; spec: CopySpec }
  | { kind: 'faults'; faults: FaultSet }
  /** A few bytes of a file overwritten in place (the same inode): a source that changed since the first pass. */
  | { kind: 'scribble'; storage: Storage; pieces: Array<{ offset: number; bytes: Buffer }> }
  /** The shell's `> NAME` before devmove starts: the file made or emptied (it happens whatever devmove does). */
  | { kind: 'empty'; storage: Storage }
  /** `>> NAME` or `1<> NAME` on a file that does not exist: the shell makes it (empty) before devmove starts. */
  | { kind: 'touch'; storage: Storage }
  | { kind: 'job-file'; file: string; text: string };

export interface Step {
  index: number;
  /** What the step is, for the log: 'copy', 'rerun #3 after a SIGINT', … */
  title: string;
  changes: WorldChange[];
  command: Command;
  control: Control;
}

// ---- rendering dd operands -----------------------------------------------------------

const IO_SIZES = [512, 1000, 1536, 4096, 65536, 131072, 1 * MiB, 3 * MiB + 512];
const UNIT_SIZES = [1, 100, 512, 1000, 4096, 65536];

interface Operands {
  words: string[];
  ibs: number;
  obs: number;
  /** The I/O size (bs= or --block-size), when given. */
  io?: number;
}

/** skip=/seek=/count= for a byte value: in blocks of `unit` when it divides, else as bytes (flag or 'B'). */
function amount(rng: Rng, key: 'skip' | 'seek' | 'count', bytes: number, unit: number, flags: Set<string>): string {
  const flag = key === 'skip' ? 'skip_bytes' : key === 'seek' ? 'seek_bytes' : 'count_bytes';
  const name = key === 'skip' && rng.chance(0.2) ? 'iseek' : key === 'seek' && rng.chance(0.2) ? 'oseek' : key;
  if (bytes % unit === 0 && rng.chance(0.6)) {
    const blocks = bytes / unit;
    return `${name}=${blocks % 2 === 0 && blocks > 0 && rng.chance(0.2) ? `${blocks / 2}x2` : blocks}`;
  }
  if (rng.chance(0.5)) return `${name}=${bytes}B`;
  flags.add(flag);
  return `${name}=${bytes % MiB === 0 && bytes > 0 && rng.chance(0.5) ? `${bytes / MiB}M` : bytes}`;
}

function operands(rng: Rng, g: { skip: number; seek: number; count?: number; truncate: boolean; create: boolean; excl: boolean; sparse: boolean }): Operands {
  const words: string[] = [];
  let ibs = 512;
  let obs = 512;
  let io: number | undefined;
  const style = rng.weighted<'none' | 'bs' | 'split'>([['none', 35], ['bs', 35], ['split', 30]]);
  if (style === 'bs') {
    const bs = rng.chance(0.03) ? 1024 * MiB : rng.pick(IO_SIZES);
    words.push(`bs=${bs === 1024 * MiB ? '1G' : bs}`);
    ibs = obs = io = bs;
  } else if (style === 'split') {
    ibs = rng.pick(UNIT_SIZES);
    obs = rng.pick(UNIT_SIZES);
    words.push(`ibs=${ibs}`, `obs=${obs}`);
    if (rng.chance(0.3)) {
      io = rng.pick(IO_SIZES);
      words.push(`--block-size=${io}`);
    }
  }
  const iflags = new Set<string>();
  const oflags = new Set<string>();
  if (g.skip > 0 || rng.chance(0.1)) words.push(amount(rng, 'skip', g.skip, ibs, iflags));
  if (g.seek > 0 || rng.chance(0.1)) words.push(amount(rng, 'seek', g.seek, obs, oflags));
  if (g.count !== undefined) words.push(amount(rng, 'count', g.count, ibs, iflags));
  const conv = [!g.truncate && 'notrunc', g.sparse && 'sparse', !g.create && 'nocreat', g.excl && 'excl'].filter((c): c is string => typeof c === 'string');
  if (conv.length > 0) words.push(`conv=${conv.join(',')}`);
  if (iflags.size > 0) words.push(`iflag=${[...iflags].join(',')}`);
  if (oflags.size > 0) words.push(`oflag=${[...oflags].join(',')}`);
  return { words, ibs, obs, ...(io !== undefined ? { io } : {}) };
}

/** I/O in pieces that are not whole pages, into a regular file on a disk file system (where O_DIRECT is real). */
function partialPages(io: number | undefined, targets: readonly Name[]): boolean {
  return io !== undefined && io % 4096 !== 0 && targets.some((t) => !t.block && t.storage.where === 'var');
}

/** A target file the tester may delete and make again: no loop device holds it, no hard link shares it, not on the full tmpfs. */
function recreatable(n: Name, world: World): boolean {
  return !n.block && !n.storage.pinned && n.storage.where !== 'tmpfs' && !world.hardlinks.some((h) => h.storage === n.storage);
}

// ---- the generator --------------------------------------------------------------------

interface MapHistory {
  command: CopyCommand;
  /** Another command wrote one of its sides since: its finished ranges may no longer be true. */
  stale: boolean;
  /** The identity line was removed (a ddrescue-style map). */
  stripped: boolean;
}

export class Generator {
  private nextId = 1;
  private readonly maps = new Map<string, MapHistory>();
  /** Recent commands, for reruns. */
  private last: Command | undefined;

  constructor(
    private readonly rng: Rng,
    private readonly world: World,
    private readonly open: KnownOpen,
  ) {}

  private get names(): Name[] {
    return this.world.names;
  }

  /** A size the name's view plausibly has, from the world's structure (for drawing numbers only). */
  private nominal(n: Name): number {
    if (n.block) return n.block.size;
    return this.world.initialSize.get(n.storage) ?? 1 * MiB;
  }

  next(index: number): Step {
    for (let attempt = 0; attempt < 50; attempt++) {
      const step = this.draw(index);
      if (step === undefined) continue;
      if ([...step.command.families].some((f) => this.open.has(f))) continue;
      this.record(step);
      return step;
    }
    // Everything drawn was in a known-open family: a plain copy.
    const step = this.step(index, 'copy', [], this.copyCommand({}), { kind: 'plain' });
    this.record(step);
    return step;
  }

  private draw(index: number): Step | undefined {
    const rng = this.rng;
    const resumable = [...this.maps.values()].filter((m) => !m.stale);
    const kind = rng.weighted<string>([
      ['copy', 36],
      ['fanout', 10],
      ['rerun', resumable.length > 0 ? 16 : 0],
      ['recreate', resumable.some((m) => m.command.spec.targets.some((t) => recreatable(t.name, this.world))) ? 4 : 0],
      ['strip', resumable.length > 0 ? 4 : 0],
      ['author', 3],
      ['foreign-map', resumable.length > 0 ? 2 : 0],
      ['map-alias', 3],
      ['alias-copy', 10],
      ['job', 12],
      ['devices-usr1', 2],
      ['pipe-copy', this.world.build.pipes ? 8 : 0],
      ['second-pass', this.last?.kind === 'copy' && !this.last.spec.stdout ? 8 : 0],
      ['stdout-copy', this.world.build.pipes ? 8 : 0],
    ]);
    switch (kind) {
      case 'copy':
      case 'fanout': {
        const cmd = this.copyCommand({ targets: kind === 'fanout' ? rng.int(2, 3) : 1, map: rng.chance(0.3) });
        // A new map: whatever an earlier command left in the slot goes first.
        const changes: WorldChange[] = cmd.spec.map ? [{ kind: 'rm', file: cmd.spec.map.slot.path }] : [];
        return this.step(index, kind === 'fanout' ? 'fan-out copy' : 'copy', changes, cmd, this.control(0.3));
      }
      case 'rerun': {
        const m = rng.chance(0.6) && this.last?.kind === 'copy' && this.last.spec.map && !this.maps.get(this.last.spec.map.slot.path)?.stale ? this.maps.get(this.last.spec.map.slot.path) : rng.pick(resumable);
        if (!m) return undefined;
        return this.step(index, `rerun #${m.command.id} (resume from its mapfile)`, [], this.rerun(m.command), this.control(0.4));
      }
      case 'recreate':
        return this.recreate(index, resumable);
      case 'strip': {
        const m = rng.pick(resumable);
        const slot = m.command.spec.map?.slot as MapSlot;
        return this.step(index, `rerun #${m.command.id} with its map rewritten as GNU ddrescue would (no identity line)`, [{ kind: 'strip', slot }], this.rerun(m.command), this.control(0.3));
      }
      case 'author': {
        // Written by the tester: not into the tmpfs that is full.
        const slots = this.world.mapSlots.filter((m) => !this.world.tmpfs || !m.path.startsWith(this.world.tmpfs.mount));
        const cmd = this.copyCommand({ map: true, plainTargets: true, slots });
        const slot = cmd.spec.map?.slot as MapSlot;
        const changes: WorldChange[] = [{ kind: 'rm', file: slot.path }, { kind: 'author', slot, spec: cmd.spec }];
        return this.step(index, 'copy resuming from a map written by GNU ddrescue', changes, cmd, this.control(0.2));
      }
      case 'foreign-map':
        return this.foreignMap(index, resumable);
      case 'map-alias':
        return this.mapAlias(index);
      case 'alias-copy':
        return this.aliasCopy(index);
      case 'job':
        return this.job(index);
      case 'pipe-copy':
        return this.pipeCopy(index);
      case 'stdout-copy':
        return this.stdoutCopy(index);
      case 'second-pass':
        return this.secondPass(index);
      case 'devices-usr1': {
        const cmd: DevicesCommand = { kind: 'devices', id: this.nextId++, argv: ['devices', 'watch'], families: new Set(['sigusr1-inspector']) };
        return this.step(index, 'SIGUSR1 burst at devmove devices watch', [], cmd, { kind: 'usr1', startMs: rng.int(100, 400), afterLoad: false, seconds: 0, stopAfterMs: 600 });
      }
      default:
        return undefined;
    }
  }

  private step(index: number, title: string, changes: WorldChange[], command: Command, control: Control): Step {
    const pre: WorldChange[] = [];
    // The shell opens standard output before devmove runs: `>` empties the file, `>>`/`1<>` make it if missing.
    const out = command.kind === 'copy' && command.spec.stdout ? command.spec.targets.at(-1)?.name : undefined;
    if (command.kind === 'copy' && out && !out.block) pre.push({ kind: command.spec.stdout?.mode === '>' ? 'empty' : 'touch', storage: out.storage });
    const faults = this.faultsFor(command);
    if (faults) pre.push({ kind: 'faults', faults });
    const families = command.families;
    if (control.kind === 'usr1' && !control.afterLoad) families.add('sigusr1-startup');
    // The copy's statistics handler exists only while the engine runs: before and after it, and in
    // devmove run and devices, Node's own SIGUSR1 action (the inspector) is in force.
    if (control.kind === 'usr1') families.add('sigusr1-inspector');
    if (control.kind === 'kill9' && command.kind === 'copy' && command.spec.map && command.spec.source.storage === this.world.faultyStorage) families.add('resume-after-bad-block');
    if (control.kind === 'kill9' && command.kind === 'copy' && command.spec.pipeIn?.how === 'fifo') families.add('fifo-kill9-linger');
    if (control.kind === 'kill9' && command.kind === 'copy') {
      if (command.spec.map && command.spec.truncAt !== undefined && command.spec.targets.some((t) => !t.name.block)) families.add('resume-truncate');
    }
    // `>>` appends where the file ends: a rerun after kill -9 would append a second time.
    const plainOnly = command.kind === 'copy' && command.spec.stdout?.mode === '>>';
    return { index, title, changes: [...changes, ...pre], command, control: plainOnly ? { kind: 'plain' } : control };
  }

  /** What the step does to the structural history: maps made, maps made stale. */
  private record(step: Step): void {
    const cmd = step.command;
    this.last = cmd;
    const specs = cmd.kind === 'copy' ? [cmd.spec] : cmd.kind === 'job' ? cmd.pairs : [];
    const written = new Set<Storage>();
    for (const s of specs) for (const t of s.targets) written.add(t.name.storage);
    for (const s of specs) if (s.map?.aliasOf) written.add(s.map.aliasOf.storage);
    for (const ch of step.changes) if (ch.kind === 'recreate' || ch.kind === 'scribble') written.add(ch.storage);
    for (const [slot, m] of this.maps) {
      const own = cmd.kind === 'copy' && cmd.spec.map?.slot.path === slot && cmd.argv.join(' ') === m.command.argv.join(' ');
      const sides = [m.command.spec.source.storage, ...m.command.spec.targets.map((t) => t.name.storage)];
      if (!own && sides.some((s) => written.has(s))) m.stale = true;
      if (specs.some((s) => s.map?.slot.path === slot) && !own) m.stale = true;
      if (step.changes.some((c) => c.kind === 'strip' && c.slot.path === slot)) m.stripped = true;
    }
    for (const ch of step.changes) {
      if (ch.kind === 'recreate') for (const m of this.maps.values()) if (m.command.spec.targets.some((t) => t.name.storage === ch.storage)) m.stale = true;
    }
    if (cmd.kind === 'copy' && cmd.spec.map && !cmd.spec.map.aliasOf && !cmd.families.has('foreign-map') && !cmd.spec.pipeIn && !cmd.spec.stdout) {
      const prev = this.maps.get(cmd.spec.map.slot.path);
      if (!prev || prev.command.argv.join(' ') !== cmd.argv.join(' ')) this.maps.set(cmd.spec.map.slot.path, { command: cmd, stale: false, stripped: false });
    }
  }

  // ---- controls ----------------------------------------------------------------------

  /** Plain most of the time; with probability p a signal at a random moment of a rate-limited copy. */
  private control(p: number): Control {
    const rng = this.rng;
    if (!rng.chance(p)) return { kind: 'plain' };
    const kind = rng.weighted<'sigint' | 'kill9' | 'usr1'>([['sigint', 45], ['kill9', 30], ['usr1', 25]]);
    // The copy lasts about 0.3–1.2 s at its --rate; Node's start-up comes first.
    const seconds = 0.3 + rng.float() * 0.9;
    if (kind === 'usr1') {
      const afterLoad = rng.chance(0.85);
      return { kind, startMs: afterLoad ? 0 : rng.int(0, 150), afterLoad, seconds };
    }
    // Mostly while the copy runs; now and then during Node's start-up.
    const afterLoad = rng.chance(0.8);
    const afterMs = afterLoad ? rng.int(0, Math.round(seconds * 1100)) : rng.int(20, 400);
    return { kind, afterMs, afterLoad, seconds };
  }

  // ---- copies ------------------------------------------------------------------------

  private pickTarget(exclude: readonly Name[], plainOnly = false): Name {
    const rng = this.rng;
    // A world with an NBD export names it about as often as a local storage object (it has 2 of ~30 names).
    const nbd = this.names.filter((n) => n.nbd && !exclude.includes(n) && !plainOnly);
    if (nbd.length > 0 && rng.chance(0.15)) return rng.pick(nbd);
    const candidates = this.names.filter((n) => !exclude.includes(n) && (!plainOnly || (!n.block && !n.flags.has('dangling'))));
    // Prefer names of distinct storage objects, sometimes deliberately the same.
    const fresh = candidates.filter((n) => !exclude.some((e) => e.storage === n.storage));
    return rng.pick(fresh.length > 0 && rng.chance(0.85) ? fresh : candidates);
  }

  private pickSource(): Name {
    const nbd = this.names.filter((n) => n.nbd);
    if (nbd.length > 0 && this.rng.chance(0.15)) return this.rng.pick(nbd);
    const existing = this.names.filter((n) => n.block || this.world.initialSize.has(n.storage));
    return this.rng.pick(existing);
  }

  copyCommand(opts: { targets?: number; map?: boolean; plainTargets?: boolean; slots?: MapSlot[] }): CopyCommand {
    const rng = this.rng;
    const source = this.pickSource();
    const targets: Name[] = [];
    for (let i = 0; i < (opts.targets ?? 1); i++) targets.push(this.pickTarget([source, ...targets], opts.plainTargets));
    const spec = this.geometry(source, targets);
    if (opts.map) {
      const slot = rng.pick(opts.slots ?? this.world.mapSlots);
      spec.map = { slot, spelling: rng.pick(slot.spellings) };
    }
    if (targets.length > 1) spec.drop = rng.chance(0.5);
    spec.verify = drawVerify(rng, 0.15);
    return this.finishCopy(spec);
  }

  private geometry(source: Name, targets: Name[]): CopySpec {
    const rng = this.rng;
    const size = this.nominal(source);
    const skip = rng.weighted<() => number>([
      [() => 0, 55],
      [() => rng.aligned(0, size / 2, 512), 25],
      [() => rng.int(1, Math.max(1, size / 2)), 15],
      [() => size + rng.int(1, 4096), 2],
    ])();
    const avail = Math.max(0, size - skip);
    const count = rng.weighted<() => number | undefined>([
      [() => undefined, 40],
      [() => rng.aligned(0, avail, 512), 30],
      [() => rng.int(0, avail), 20],
      [() => 0, 2],
      [() => avail + rng.int(1, MiB), 8],
    ])();
    const length = Math.min(count ?? avail, avail);
    const room = Math.min(...targets.map((t) => (t.block ? t.block.size : this.nominal(t) + MiB))) - length;
    const seek = rng.weighted<() => number>([
      [() => 0, 55],
      [() => rng.aligned(0, Math.max(0, room), 512), 30],
      [() => rng.int(0, Math.max(0, room)), 12],
      [() => Math.max(0, room) + rng.int(512, MiB), 3],
    ])();
    const excl = rng.chance(0.05);
    return {
      label: 'the copy',
      source,
      targets: targets.map((name, i) => ({ name, label: targets.length > 1 ? `of=[${i}] ${name.spelling}` : `of=${name.spelling}` })),
      skip,
      seek,
      ...(count === undefined ? {} : { length: { bytes: count, exact: false } }),
      truncAt: rng.chance(0.35) ? undefined : 0, // resolved by finishCopy against obs
      create: excl || !rng.chance(0.05),
      excl,
      sparse: rng.chance(0.15),
      drop: false,
      verify: false,
    };
  }

  /** Renders the spec as dd operands and options; fixes up what the known-open families exclude. */
  private finishCopy(spec: CopySpec, id = this.nextId++): CopyCommand {
    const rng = this.rng;
    const families = new Set<Family>();
    const fileTargets = spec.targets.some((t) => !t.name.block);
    if (spec.map && fileTargets && spec.truncAt !== undefined && this.open.has('resume-truncate')) spec.truncAt = undefined;
    if (spec.map && spec.targets.length > 1 && spec.drop) families.add('fanout-drop-map');
    if (spec.map && spec.sparse) families.add('sparse-map');
    if (spec.map && spec.targets.some((t, i) => spec.targets.some((o, j) => j !== i && o.name.storage === t.name.storage))) families.add('refusal-writes-map');
    this.tagAliases(spec, families, false);
    const truncate = spec.truncAt !== undefined;
    const ops = operands(rng, { skip: spec.skip, seek: spec.seek, ...(spec.length ? { count: spec.length.bytes } : {}), truncate, create: spec.create, excl: spec.excl, sparse: spec.sparse });
    if (partialPages(ops.io, spec.targets.map((t) => t.name))) families.add('dio-buffered-collision');
    if (spec.source.nbd && spec.sparse && ops.obs < 100) families.add('nbd-sparse-small-block');
    // GNU dd cuts with O_TRUNC when seek= is less than one output block, else at the seek offset.
    if (truncate) spec.truncAt = spec.seek < ops.obs ? 0 : spec.seek;
    const input = spec.pipeIn ? (spec.pipeIn.operand ? [spec.pipeIn.operand] : []) : [`if=${spec.source.spelling}`];
    const named = spec.stdout ? spec.targets.slice(0, -1) : spec.targets;
    const output = [...named.map((t) => `of=${t.name.spelling}`), ...(spec.stdout?.operand ? [spec.stdout.operand] : [])];
    const argv = [...input, ...output, ...ops.words, '--json'];
    if (spec.map) argv.push(`--mapfile=${spec.map.spelling}`, `--checkpoint-interval=${rng.pick([100, 150, 250, 400])}`);
    if (spec.drop) argv.push('--on-target-error=drop');
    if (spec.verify) argv.push(spec.verify === true ? '--verify' : `--verify=${spec.verify}`);
    if (spec.pipeIn) families.add('pipe-source');
    if (spec.pipeIn && spec.sparse && spec.targets.some((t) => !t.name.block)) families.add('pipe-sparse-size');
    if (spec.stdout) families.add('stdout-target');
    // --only-changed, from a generator of its own (seed and command id): the draws above stay as they were.
    if (spec.onlyChanged === undefined) spec.onlyChanged = new Rng((rng.seed ^ Math.imul(id, 0x9e3779b1)) >>> 0).chance(spec.stdout ? 0.1 : 0.15);
    if (spec.onlyChanged) argv.push('--only-changed');
    // --reconnect and --nbd-timeout where an NBD side has a mapfile, from a generator of their own: the
    // world's server stays up, so they must change nothing of the outcome.
    const nbdSide = spec.source.nbd || spec.targets.some((t) => t.name.nbd);
    if (spec.map && nbdSide && new Rng((rng.seed ^ Math.imul(id, 0x85ebca6b)) >>> 0).chance(0.5)) {
      argv.push('--reconnect=2', '--nbd-timeout=30');
      families.add('nbd-reconnect');
    }
    const cmd: CopyCommand = { kind: 'copy', id, spec, argv, families };
    // The threads I/O driver, by option or by environment (drawn last: the rest of the draw is as without it).
    if (this.world.build.threads && rng.chance(0.3)) {
      families.add('threads-engine');
      if (this.partialTail(spec)) families.add('threads-tail-collision');
      if (rng.chance(0.5)) argv.push('--io-engine=threads');
      else cmd.env = { DEVMOVE_IO_ENGINE: 'threads' };
    }
    return cmd;
  }

  /**
   * May the copy end in a partial sector (written through the page cache) onto a target
   * with O_DIRECT (a block device, a file on disk)? From the world's structure only.
   */
  private partialTail(spec: CopySpec): boolean {
    const direct = spec.targets.some((t) => t.name.block || t.name.storage.where === 'var');
    const length = spec.length?.bytes ?? this.nominal(spec.source) - spec.skip;
    return direct && (length % SECTOR_BYTES !== 0 || spec.skip % SECTOR_BYTES !== 0 || this.nominal(spec.source) % SECTOR_BYTES !== 0);
  }

  /** Names of storage objects other than `not`'s, and not the faulty device (a pipe hides a read error as an early end). */
  private elsewhere(not: readonly Name[], ok: (n: Name) => boolean = () => true): Name[] {
    return this.names.filter((n) => ok(n) && !not.some((o) => o.storage === n.storage));
  }

  /**
   * `cat NAME | devmove of=…` or `cat NAME > FIFO & devmove if=FIFO of=…`: the same copy with
   * the source as a stream. devmove cannot see where a pipe's bytes come from, so the targets
   * are other storage objects (the model would otherwise race cat against the writes).
   */
  private pipeCopy(index: number): Step | undefined {
    const rng = this.rng;
    // `cat` reads local names only (an NBD export is no file).
    const sources = this.names.filter((n) => (n.block || this.world.initialSize.has(n.storage)) && n.storage !== this.world.faultyStorage && !n.nbd);
    const source = rng.pick(sources);
    const targets = [rng.pick(this.elsewhere([source]))];
    if (rng.chance(0.2)) {
      const more = this.elsewhere([source, ...targets]);
      if (more.length > 0) targets.push(rng.pick(more));
    }
    const spec = this.geometry(source, targets);
    const how = rng.chance(0.6) ? 'stdin' : 'fifo';
    spec.pipeIn = how === 'stdin' ? { how, ...(rng.chance(0.3) ? { operand: 'if=-' } : {}) } : { how, operand: `if=${rng.pick(this.world.fifo.spellings)}` };
    // A mapfile or --verify with a pipe is refused before anything is opened (README: Pipes).
    if (rng.chance(0.08)) {
      const slot = rng.pick(this.world.mapSlots);
      spec.map = { slot, spelling: rng.pick(slot.spellings) };
    }
    spec.verify = drawVerify(rng, 0.05);
    if (targets.length > 1) spec.drop = rng.chance(0.5);
    const cmd = this.finishCopy(spec);
    const changes: WorldChange[] = cmd.spec.map ? [{ kind: 'rm', file: cmd.spec.map.slot.path }] : [];
    return this.step(index, `copy from a pipe (${how === 'stdin' ? `cat ${source.spelling} |` : `cat ${source.spelling} > FIFO`})`, changes, cmd, this.control(0.3));
  }

  /**
   * `devmove if=… > NAME` (or `>>`, `1<>`): the target is standard output, a regular file or a
   * device that devmove opens again through /proc/self/fd. `>` and `>>` only onto files no loop
   * device holds and not the source's (the shell's `>` would empty the source before devmove runs).
   */
  private stdoutCopy(index: number): Step | undefined {
    const rng = this.rng;
    const mode = rng.weighted<'>' | '>>' | '1<>'>([['>', 45], ['1<>', 35], ['>>', 20]]);
    const source = this.pickSource();
    const fileOk = (n: Name): boolean => !n.block && !n.storage.pinned;
    // The shell opens what it redirects to: local names only.
    const candidates = mode === '1<>' ? this.names.filter((n) => n !== source && !n.nbd) : this.elsewhere([source], fileOk);
    if (candidates.length === 0) return undefined;
    const out = rng.pick(candidates);
    const targets = [out];
    if (rng.chance(0.2)) targets.unshift(this.pickTarget([source, out]));
    const spec = this.geometry(source, targets);
    spec.stdout = { mode, ...(targets.length > 1 || rng.chance(0.3) ? { operand: 'of=-' } : {}) };
    spec.targets[spec.targets.length - 1].label = `standard output (${mode} ${out.spelling})`;
    spec.create = true;
    spec.excl = false;
    if (mode === '>>') spec.seek = 0; // appended where the file ends
    // Refused (usage, exit 2) even when standard output is a file: drawn now and then to check that nothing is written.
    if (mode === '1<>' && rng.chance(0.08)) {
      const slot = rng.pick(this.world.mapSlots);
      spec.map = { slot, spelling: rng.pick(slot.spellings) };
    }
    spec.verify = mode !== '>>' && drawVerify(rng, 0.05);
    if (targets.length > 1) spec.drop = rng.chance(0.5);
    const cmd = this.finishCopy(spec);
    const changes: WorldChange[] = cmd.spec.map ? [{ kind: 'rm', file: cmd.spec.map.slot.path }] : [];
    return this.step(index, `copy to standard output (${mode} ${out.spelling})`, changes, cmd, this.control(0.25));
  }

  /** Families a command belongs to by the aliases it uses. */
  private tagAliases(spec: CopySpec, families: Set<Family>, job: boolean): void {
    const sides = [spec.source, ...spec.targets.map((t) => t.name)];
    const lol = sides.filter((n) => n.flags.has('loop-over-loop'));
    if (lol.some((n) => sides.some((o) => o !== n && o.storage === n.storage))) families.add('loop-over-loop-alias');
    if (spec.map?.aliasOf) families.add('mapfile-alias');
    if (job && sides.some((n) => n.flags.has('dotdot'))) families.add('job-dotdot');
    // A regular-file target that is cut, whose file a block-device source reads.
    if (spec.truncAt !== undefined && spec.source.block && spec.targets.some((t) => !t.name.block && t.name.storage === spec.source.storage)) families.add('truncate-overlap');
  }

  /**
   * The second pass of a migration: a few bytes of the last copy's source change (a file no loop
   * device holds), then the same copy again with --only-changed, onto targets that are not cut.
   */
  private secondPass(index: number): Step | undefined {
    const rng = this.rng;
    const last = this.last;
    if (last?.kind !== 'copy' || last.spec.stdout) return undefined;
    const changes: WorldChange[] = [];
    const source = last.spec.source.storage;
    if (!source.pinned && source.where !== 'tmpfs' && source !== this.world.faultyStorage) {
      const size = this.nominal(last.spec.source);
      const pieces = Array.from({ length: rng.int(1, 6) }, () => {
        const bytes = Buffer.alloc(rng.int(1, 64));
        for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 255);
        return { offset: rng.int(0, Math.max(0, size - bytes.length)), bytes };
      });
      changes.push({ kind: 'scribble', storage: source, pieces });
    }
    const { map: _map, truncAt: _truncAt, ...rest } = last.spec;
    const spec: CopySpec = { ...rest, targets: last.spec.targets.map((t) => ({ ...t })), onlyChanged: true, excl: false };
    const cmd = this.finishCopy(spec);
    return this.step(index, `second pass of #${last.id} with --only-changed${changes.length ? ' after changing a few source bytes' : ''}`, changes, cmd, this.control(0.2));
  }

  private rerun(cmd: CopyCommand): CopyCommand {
    const families = new Set(cmd.families);
    // The faulty source may have stopped the copy at an unreadable block, which the map marks bad.
    if (cmd.spec.source.storage === this.world.faultyStorage) families.add('resume-after-bad-block');
    if (cmd.spec.map && cmd.spec.truncAt !== undefined && cmd.spec.targets.some((t) => !t.name.block)) families.add('resume-truncate');
    return { ...cmd, families };
  }

  private recreate(index: number, resumable: MapHistory[]): Step | undefined {
    const rng = this.rng;
    const withFile = resumable.filter((m) => m.command.spec.targets.some((t) => recreatable(t.name, this.world)));
    if (withFile.length === 0) return undefined;
    const m = rng.pick(withFile);
    const target = rng.pick(m.command.spec.targets.filter((t) => recreatable(t.name, this.world))).name.storage;
    // A stripped map cannot tell a full-size stranger from its target: recreate those empty.
    const size = m.stripped || rng.chance(0.5) ? 0 : this.nominal(m.command.spec.targets[0].name);
    const cmd = this.rerun(m.command);
    cmd.families.add('resume-truncate');
    return this.step(index, `rerun #${m.command.id} after its target ${target.label} was deleted and made again`, [{ kind: 'recreate', storage: target, size, key: rng.bytes16() }], cmd, this.control(0.2));
  }

  private foreignMap(index: number, resumable: MapHistory[]): Step | undefined {
    const m = this.rng.pick(resumable);
    const map = m.command.spec.map;
    if (!map) return undefined;
    const cmd = this.copyCommand({});
    cmd.spec.map = { slot: map.slot, spelling: this.rng.pick(map.slot.spellings) };
    const again = this.finishCopy(cmd.spec, cmd.id);
    again.families.add('foreign-map');
    return this.step(index, `copy using #${m.command.id}'s mapfile (made for another copy)`, [], again, { kind: 'plain' });
  }

  /**
   * Source and target (or two targets) through two names of one storage object: a loop
   * device and its file, a loop device over it, a hard link, a symlink, '..'. Overlapping
   * ranges must be refused; disjoint ones copied.
   */
  private aliasCopy(index: number): Step | undefined {
    const rng = this.rng;
    const shared = this.world.storages.filter((s) => this.names.filter((n) => n.storage === s).length >= 2 && this.world.initialSize.has(s));
    if (shared.length === 0) return undefined;
    const storage = rng.pick(shared);
    const names = this.names.filter((n) => n.storage === storage);
    const fanout = rng.chance(0.3);
    const source = fanout ? this.pickSource() : rng.pick(names);
    const first = names.filter((n) => n !== source);
    if (first.length === 0) return undefined;
    const targets = [rng.pick(first)];
    if (fanout) {
      const second = names.filter((n) => n !== targets[0] && n !== source);
      if (second.length === 0) return undefined;
      targets.push(rng.pick(second));
    }
    const spec = this.geometry(source, targets);
    // Smaller ranges than a plain copy: half of them disjoint from the other side.
    if (rng.chance(0.6)) spec.length = { bytes: rng.aligned(512, this.nominal(source) / 4, 512), exact: false };
    if (rng.chance(0.5) && !fanout) spec.seek = spec.skip + (source.offset - targets[0].offset) + (spec.length?.bytes ?? 0) + rng.aligned(0, 65536, 512);
    if (spec.seek < 0) spec.seek = 0;
    spec.drop = fanout && rng.chance(0.5);
    const cmd = this.finishCopy(spec);
    return this.step(index, `copy between names of one storage object (${storage.label})`, [], cmd, this.control(0.15));
  }

  private mapAlias(index: number): Step | undefined {
    const rng = this.rng;
    const cmd = this.copyCommand({});
    const sides = [cmd.spec.source, ...cmd.spec.targets.map((t) => t.name)];
    const side = rng.pick(sides);
    // A mapfile is a local file: an NBD URI cannot name one.
    if (side.nbd) return undefined;
    // The map named as that side, or as any other name of the same storage.
    // Block device names too, now and then: a map written over a device node would replace the node
    // (structureProblems() puts it back and reports it).
    const aliases = this.names.filter((n) => n.storage === side.storage && (!n.block || rng.chance(0.2)));
    const alias = rng.pick(aliases.length > 0 ? aliases : [side]);
    cmd.spec.map = { slot: { path: alias.storage.path, spellings: [alias.spelling] }, spelling: alias.spelling, aliasOf: alias };
    return this.step(index, `copy whose mapfile is ${alias.spelling}, the same storage as a side`, [], this.finishCopy(cmd.spec, cmd.id), { kind: 'plain' });
  }

  // ---- job files -------------------------------------------------------------------------

  private job(index: number): Step | undefined {
    const rng = this.rng;
    const id = this.nextId++;
    const inJobs = rng.chance(0.7);
    const dir = inJobs ? path.join(this.world.W, 'jobs') : this.world.W;
    const file = path.join(dir, `j${id}.json`);
    const spelling = inJobs ? `jobs/j${id}.json` : `j${id}.json`;
    const pairs: CopySpec[] = [];
    const families = new Set<Family>();
    const count = rng.int(1, 3);
    const used: Name[] = [];
    const json: Array<Record<string, unknown>> = [];
    for (let i = 0; i < count; i++) {
      const [spec, entry] = this.jobPair(i, dir, used, pairs);
      this.tagAliases(spec, families, true);
      pairs.push(spec);
      json.push(entry);
    }
    this.tagJob(pairs, families);
    if (pairs.some((p) => p.io !== undefined)) families.add('dio-buffered-collision');
    const control = this.control(0.25);
    const doc: Record<string, unknown> = { version: 1, pairs: json };
    if (rng.chance(0.3)) doc.maxQueueDepth = rng.int(count, 16); // the job needs one I/O per pair
    // Slow enough for a signal to land while the pairs copy (1–8 MiB each).
    if (control.kind !== 'plain') doc.defaults = { rate: '6M' };
    // The threads I/O driver: for the whole process, as the job's default, or for one pair.
    let env: Record<string, string> | undefined;
    if (this.world.build.threads && rng.chance(0.3)) {
      families.add('threads-engine');
      const where = rng.weighted<'env' | 'defaults' | 'pair'>([['env', 40], ['defaults', 30], ['pair', 30]]);
      if (pairs.some((p) => this.partialTail(p))) families.add('threads-tail-collision');
      if (where === 'env') env = { DEVMOVE_IO_ENGINE: 'threads' };
      else if (where === 'defaults') doc.defaults = { ...(doc.defaults as object | undefined), ioEngine: 'threads' };
      else rng.pick(json).ioEngine = 'threads';
    }
    const text = `${JSON.stringify(doc, null, 1)}\n`;
    const cmd: JobCommand = { kind: 'job', id, file, spelling, pairs, text, argv: ['run', spelling, '--json', '--quiet'], families, ...(env ? { env } : {}) };
    const changes: WorldChange[] = [{ kind: 'job-file', file, text }];
    for (const p of pairs) if (p.map && !p.map.aliasOf) changes.unshift({ kind: 'rm', file: p.map.slot.path });
    return this.step(index, `job file with ${count} pair${count > 1 ? 's' : ''}`, changes, cmd, control);
  }

  /** One pair of a job file in `dir`: its spec and its JSON entry; `used` collects the names of the pairs so far. */
  private jobPair(i: number, dir: string, used: Name[], pairs: readonly CopySpec[]): [CopySpec, Record<string, unknown>] {
    const rng = this.rng;
    const source = rng.chance(0.3) && used.length > 0 ? rng.pick(used) : this.pickSource();
    const nTargets = rng.chance(0.2) ? 2 : 1;
    const targets: Name[] = [];
    for (let t = 0; t < nTargets; t++) {
      // Now and then the same storage as another pair's side, through another name.
      const alias = used.length > 0 && rng.chance(0.25) ? this.names.filter((n) => used.some((u) => u.storage === n.storage) && n !== source) : [];
      targets.push(alias.length > 0 ? rng.pick(alias) : this.pickTarget([source, ...targets]));
    }
    used.push(source, ...targets);
    const spec = this.geometry(source, targets);
    spec.label = `pairs[${i}]`;
    spec.targets = targets.map((name, t) => ({ name, label: `pairs[${i}].${nTargets > 1 ? `targets[${t}]` : 'target'} ${name.spelling}` }));
    const entry: Record<string, unknown> = { name: `p${i}`, source: this.jobPath(source, dir) };
    if (nTargets > 1) entry.targets = targets.map((t) => this.jobPath(t, dir));
    else entry.target = this.jobPath(targets[0], dir);
    if (spec.skip > 0) entry.sourceOffset = spec.skip;
    if (spec.seek > 0) entry.targetOffset = spec.seek;
    if (spec.length) {
      spec.length.exact = rng.chance(0.4);
      entry[spec.length.exact ? 'length' : 'maxLength'] = spec.length.bytes;
    }
    const trunc = rng.weighted<'omit' | 'true' | 'number'>([['omit', 60], ['true', 25], ['number', 15]]);
    spec.truncAt = trunc === 'omit' ? undefined : trunc === 'true' ? spec.seek : rng.aligned(0, spec.seek, 512);
    if (trunc !== 'omit') entry.truncateTarget = trunc === 'true' ? true : spec.truncAt;
    spec.excl = false;
    spec.sparse = false;
    if (!spec.create) entry.createTarget = false;
    if (nTargets > 1 && rng.chance(0.5)) {
      spec.drop = true;
      entry.onTargetError = 'drop';
    }
    const verify = drawVerify(rng, 0.15);
    if (verify) {
      spec.verify = verify;
      entry.verify = verify;
    }
    this.jobMap(spec, entry, dir, used, pairs);
    if (rng.chance(0.2)) entry.blockSize = rng.pick(['4K', '64K', '1M', 1000]);
    if (partialPages(entry.blockSize === 1000 ? 1000 : undefined, targets)) spec.io = 1000;
    return [spec, entry];
  }

  /** A pair's mapfile: now and then named as a side of this or another pair, else a map slot. */
  private jobMap(spec: CopySpec, entry: Record<string, unknown>, dir: string, used: readonly Name[], pairs: readonly CopySpec[]): void {
    const rng = this.rng;
    if (rng.chance(0.06) && used.some((n) => !n.block)) {
      const alias = rng.pick(used.filter((n) => !n.block));
      spec.map = { slot: { path: alias.storage.path, spellings: [alias.spelling] }, spelling: alias.spelling, aliasOf: alias };
      entry.mapfile = this.jobPath(alias, dir);
    } else if (rng.chance(0.15)) {
      const slot = rng.pick(this.world.mapSlots.filter((s) => !pairs.some((p) => p.map?.slot === s)));
      spec.map = { slot, spelling: slot.path };
      entry.mapfile = this.jobPathOf(slot.path, dir);
      if (spec.truncAt !== undefined && spec.targets.some((t) => !t.name.block) && this.open.has('resume-truncate')) {
        spec.truncAt = undefined;
        delete entry.truncateTarget;
      }
    }
  }

  /** Families of a job as a whole: pairs reaching one storage object through the aliases issue 10 names. */
  private tagJob(pairs: readonly CopySpec[], families: Set<Family>): void {
    const all = pairs.flatMap((p, i) => [p.source, ...p.targets.map((t) => t.name)].map((n) => [n, i] as const));
    const across = (flag: 'dangling' | 'loop-over-loop'): boolean => all.some(([n, i]) => n.flags.has(flag) && all.some(([o, j]) => j !== i && o.storage === n.storage));
    if (across('dangling')) families.add('job-alias-dangling');
    if (across('loop-over-loop')) families.add('loop-over-loop-alias');
    // A pair cuts a file that another pair uses.
    if (pairs.some((p, i) => p.truncAt !== undefined && p.targets.some((t) => !t.name.block && all.some(([o, j]) => j !== i && o.storage === t.name.storage)))) families.add('truncate-overlap');
  }

  /** A name as a job file in `dir` spells it: absolute as is, relative against the job file's directory. */
  private jobPath(n: Name, dir: string): string {
    // A relative socket in a job file is relative to the job file's directory.
    if (n.nbd && !n.nbd.socket.startsWith('/')) return `nbd+unix:///?socket=${path.relative(dir, path.join(this.world.W, n.nbd.socket))}`;
    if (n.spelling.startsWith('/') || n.nbd) return n.spelling;
    const rel = path.relative(dir, this.world.W);
    return rel === '' ? n.spelling : `${rel}/${n.spelling}`;
  }

  private jobPathOf(file: string, dir: string): string {
    return this.rng.chance(0.5) ? file : path.relative(dir, file);
  }

  // ---- faults -------------------------------------------------------------------------------

  /** Faults for a command that uses the faulty device: errors in its range, a target that dies, slow ranges. */
  private faultsFor(cmd: Command): FaultSet | undefined {
    const rng = this.rng;
    const specs = cmd.kind === 'copy' ? [cmd.spec] : cmd.kind === 'job' ? cmd.pairs : [];
    const faulty = this.world.faultyStorage;
    if (!faulty) return undefined;
    const asSource = specs.some((s) => s.source.storage === faulty);
    const asTarget = specs.some((s) => s.targets.some((t) => t.name.storage === faulty));
    if (!asSource && !asTarget) return undefined;
    const size = this.world.faulty?.imagePath ? (this.world.initialSize.get(faulty) ?? MiB) : MiB;
    const range = (): [number, number] => {
      const at = rng.aligned(0, size - 4096, 512);
      return [at, rng.aligned(512, Math.min(256 * 1024, size - at), 512)];
    };
    const faults: FaultSet = {};
    if (asSource && rng.chance(0.4)) faults.readErrors = [range()];
    if (asTarget) {
      const k = rng.weighted<string>([['none', 35], ['range', 35], ['dies', 30]]);
      if (k === 'range') faults.writeErrors = [range()];
      if (k === 'dies') faults.failWritesAfterBytes = rng.aligned(0, size / 2, 4096);
    }
    if (rng.chance(0.3)) faults.slow = [{ offset: 0, length: size, delayMs: rng.int(2, 10) }];
    for (const s of specs) if (s.source.storage === faulty) s.faulty = 'source';
    for (const s of specs) if (s.targets.some((t) => t.name.storage === faulty)) s.faulty = 'target';
    return faults;
  }
}
