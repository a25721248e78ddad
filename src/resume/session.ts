// The mapfile side of a copy: loads a previous run's map, decides whether this
// run resumes it, turns it into the ranges still to copy, and records every
// durable checkpoint.
//
// A resume can never destroy finished work: when the map has finished (or
// bad) ranges, the targets are neither truncated nor created, and a target
// that is not the one the map was made for is refused before anything is
// written — a map with devmove's identity line names each target's storage
// (a recreated file has a new inode); a map without it (GNU ddrescue's) at
// least needs a target that exists and holds every finished byte.
import type { NativePlan } from '../addon/binding';
import type { CopyResult, Range } from '../base/types';
import { gatherSide, resolveKernelPath, type SideFacts } from '../storage/identity';
import { MapfileError, RescueMap, writeFileAtomic, type MapIdentity } from './mapfile';

/** How to start over, for every refusal. */
function startOver(map: string): string {
  return `to start over instead, delete ${map} (or give another --mapfile)`;
}

/** The end (absolute source offset) of the last finished or bad range, 0 for none. */
function lastDoneEnd(map: RescueMap): number {
  const done = map.ranges(['+', '-']);
  const last = done.at(-1);
  return last === undefined ? 0 : last[0] + last[1];
}

/** What a mapfile records to recognise a side again (storage id and birth time, identity.ts). */
function storageId(side: SideFacts): string | undefined {
  return side.kind === 'missing' ? undefined : side.location?.stamp;
}

export class MapfileSession {
  readonly map: RescueMap;
  /** The map had finished or bad ranges: this run continues it. */
  readonly resumed: boolean;
  readonly previouslyFinished: number;
  /** The map's path as the kernel resolves it: writes replace the file, never a symlink to it. */
  readonly path: string;
  private readonly started = new Date();
  private readonly commandLine = process.argv.slice(1).join(' ');
  private domain: { offset: number; length: number } | undefined;
  /** The last range a checkpoint reported finished, and the I/O size that read it. */
  private lastFinished: Range | undefined;
  private readonly blockBytes: number;

  constructor(
    readonly given: string,
    private readonly plan: NativePlan,
    retryBad: boolean,
  ) {
    this.blockBytes = plan.blockBytes;
    this.path = resolveKernelPath(given);
    const loaded = RescueMap.load(this.path);
    this.map = loaded ?? new RescueMap();
    const identity = this.identityNow();
    if (loaded?.identity) this.checkSameCopy(loaded.identity, identity);
    this.previouslyFinished = this.map.bytes('+');
    this.resumed = this.map.bytes('+') + this.map.bytes('-') > 0;
    if (this.resumed) this.prepareResume(loaded?.identity, retryBad);
    // A resumed map keeps the storage ids it was checked against; a fresh one records them once the
    // engine has opened (or created) every side (begin()).
    const was = loaded?.identity;
    this.map.identity = this.resumed && was?.targetIds !== undefined ? { ...identity, sourceId: was.sourceId, targetIds: was.targetIds } : identity;
    // Written once before the engine starts: a mapfile that cannot be kept
    // stops the copy before anything is written.
    this.write(false);
  }

  private identityNow(): MapIdentity {
    const { plan } = this;
    return { source: plan.source.path, target: plan.targets.map((t) => t.path).join(','), sourceOffset: plan.source.offset, targetOffset: plan.targets[0].offset };
  }

  private checkSameCopy(was: MapIdentity, now: MapIdentity): void {
    if (was.source === now.source && was.target === now.target && was.sourceOffset === now.sourceOffset && was.targetOffset === now.targetOffset) return;
    throw new MapfileError(
      `mapfile ${this.given} belongs to another copy: ${was.source} (offset ${was.sourceOffset}) to ${was.target} (offset ${was.targetOffset}); ` +
        `this one copies ${now.source} (offset ${now.sourceOffset}) to ${now.target} (offset ${now.targetOffset})`,
    );
  }

  /** Refuses a resume that could lose data; then never truncates or creates a target. */
  private prepareResume(was: MapIdentity | undefined, retryBad: boolean): void {
    const { plan } = this;
    const done = this.map.bytes('+') + this.map.bytes('-');
    if (plan.hash !== undefined && this.previouslyFinished > 0) {
      throw new MapfileError(
        `the hash needs every byte read in one pass, but mapfile ${this.given} already has ${this.previouslyFinished} bytes finished (use a new mapfile, or verify instead)`,
      );
    }
    this.checkSource(was);
    plan.targets.forEach((t, i) => {
      if (t.exclusiveCreate) {
        throw new MapfileError(`conv=excl needs a new target, but mapfile ${this.given} records ${done} bytes already done on ${t.path}; ${startOver(this.given)}`);
      }
      this.checkTarget(t, gatherSide(t.path), was?.targetIds?.[i]);
      delete t.truncateTo; // dd's truncation would cut what the map calls finished
      t.create = false;
    });
    // Without noError every byte must be copied, so bad ranges are read again too.
    const skip: Array<'+' | '-'> = plan.noError && !retryBad ? ['+', '-'] : ['+'];
    plan.extents = this.map.gaps(skip, 0, Number.MAX_SAFE_INTEGER);
    if (plan.noError && !retryBad) plan.verifySkip = this.map.ranges(['-']);
  }

  private checkSource(was: MapIdentity | undefined): void {
    const source = gatherSide(this.plan.source.path);
    const end = lastDoneEnd(this.map);
    if ((source.kind === 'file' || source.kind === 'block') && end > source.sizeBytes) {
      throw new MapfileError(
        `mapfile ${this.given} records bytes up to ${end} as done, but the source ${this.plan.source.path} has only ${source.sizeBytes}: it is not this source's map; ${startOver(this.given)}`,
      );
    }
    const id = storageId(source);
    if (was?.sourceId !== undefined && id !== undefined && id !== was.sourceId) {
      throw new MapfileError(
        `the source ${this.plan.source.path} is not the one mapfile ${this.given} was made for (its storage was ${was.sourceId}, now ${id}); ${startOver(this.given)}`,
      );
    }
  }

  private checkTarget(t: NativePlan['targets'][number], side: SideFacts, wasId: string | undefined): void {
    const shown = t.path;
    const done = this.map.bytes('+') + this.map.bytes('-');
    if (side.kind === 'missing') {
      throw new MapfileError(
        `the target ${shown} does not exist, but mapfile ${this.given} records ${done} bytes already copied to it (was it deleted or renamed?); ${startOver(this.given)}`,
      );
    }
    const id = storageId(side);
    if (wasId !== undefined && id !== wasId) {
      throw new MapfileError(
        `the target ${shown} is not the one mapfile ${this.given} was made for: it was replaced, recreated or renamed since (its storage was ${wasId}, now ${id ?? 'unknown'}); ${startOver(this.given)}`,
      );
    }
    // Without recorded ids (a GNU ddrescue map): the target must at least hold every finished byte.
    const needed = t.offset + Math.max(0, lastDoneEnd(this.map) - this.plan.source.offset);
    if (side.kind === 'file' && side.sizeBytes < needed) {
      throw new MapfileError(
        `the target ${shown} holds ${side.sizeBytes} bytes, but mapfile ${this.given} says bytes up to ${needed} of it are done: it is not the target the map was made for; ${startOver(this.given)}`,
      );
    }
  }

  /** The engine has opened every side: the copy's range is known, and where each side lives is recorded. */
  begin(offset: number, length: number): void {
    if (this.domain) return;
    this.domain = { offset, length };
    this.map.cover(offset + length);
    const identity = this.map.identity;
    if (identity !== undefined && identity.targetIds === undefined) {
      const sourceId = storageId(gatherSide(this.plan.source.path));
      const targetIds = this.plan.targets.map((t) => storageId(gatherSide(t.path)));
      if (sourceId !== undefined && targetIds.every((x): x is string => x !== undefined)) {
        identity.sourceId = sourceId;
        identity.targetIds = targetIds;
      }
    }
    this.write(false);
  }

  checkpoint(finished: Range[], bad: Range[]): void {
    for (const [o, l] of finished) this.map.set(o, l, '+');
    for (const [o, l] of bad) this.map.set(o, l, '-');
    const last = finished.at(-1);
    if (last) this.map.currentPos = last[0] + last[1];
    if (last) this.lastFinished = last;
    this.write(false);
  }

  /** The copy stopped: note the unreadable block it stopped at, if any, and whether all is finished. */
  end(stoppedAtBadBlock: Range | undefined): void {
    if (stoppedAtBadBlock) this.map.set(stoppedAtBadBlock[0], stoppedAtBadBlock[1], '-');
    const d = this.domain;
    const complete = d !== undefined && this.map.gaps(['+', '-'], d.offset, d.offset + d.length).length === 0;
    this.map.currentStatus = complete ? '+' : '?';
    // ddrescue leaves current_pos where its last read began, inside the
    // domain (a 16 MiB copy ends with 0x00FF0000 +): so does devmove.
    if (complete && this.lastFinished) {
      const [offset, length] = this.lastFinished;
      this.map.currentPos = offset + length - Math.min(length, length % this.blockBytes || this.blockBytes);
    }
    this.write(complete);
  }

  summary(range: { offset: number; length: number }): NonNullable<CopyResult['mapfile']> {
    const to = range.offset + range.length;
    return {
      path: this.given,
      resumed: this.resumed,
      previouslyFinished: this.previouslyFinished,
      finished: this.map.bytes('+', range.offset, to),
      bad: this.map.bytes('-', range.offset, to),
      nonTried: range.length - this.map.bytes('+', range.offset, to) - this.map.bytes('-', range.offset, to),
    };
  }

  private write(finished: boolean): void {
    writeFileAtomic(this.path, this.map.format(this.commandLine, this.started, finished));
  }
}
