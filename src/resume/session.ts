// The mapfile side of a copy: loads a previous run's map (and turns it into
// the ranges still to copy), then records every durable checkpoint.
import type { NativePlan } from '../addon/binding';
import type { CopyResult } from '../base/types';
import { MapfileError, RescueMap, writeFileAtomic, type Range } from './mapfile';

/**
 * The mapfile side of a copy: loads a previous run's map (and turns it into
 * the ranges still to copy), then records every durable checkpoint.
 */
export class MapfileSession {
  readonly map: RescueMap;
  readonly resumed: boolean;
  readonly previouslyFinished: number;
  private readonly started = new Date();
  private readonly commandLine = process.argv.slice(1).join(' ');
  private domain: { offset: number; length: number } | undefined;
  /** The last range a checkpoint reported finished, and the I/O size that read it. */
  private lastFinished: Range | undefined;
  private readonly blockBytes: number;

  constructor(
    readonly path: string,
    plan: NativePlan,
    retryBad: boolean,
  ) {
    this.blockBytes = plan.blockBytes;
    const loaded = RescueMap.load(path);
    const identity = {
      source: plan.source.path,
      target: plan.targets.map((t) => t.path).join(','),
      sourceOffset: plan.source.offset,
      targetOffset: plan.targets[0].offset,
    };
    this.map = loaded ?? new RescueMap();
    this.resumed = loaded !== undefined;
    if (loaded?.identity) {
      const was = loaded.identity;
      if (was.source !== identity.source || was.target !== identity.target || was.sourceOffset !== identity.sourceOffset || was.targetOffset !== identity.targetOffset) {
        throw new MapfileError(
          `mapfile ${path} belongs to another copy: ${was.source} (offset ${was.sourceOffset}) to ${was.target} (offset ${was.targetOffset}); ` +
            `this one copies ${identity.source} (offset ${identity.sourceOffset}) to ${identity.target} (offset ${identity.targetOffset})`,
        );
      }
    }
    this.map.identity = identity;
    this.previouslyFinished = this.map.bytes('+');
    if (this.resumed) {
      if (plan.hash !== undefined && this.previouslyFinished > 0) {
        throw new MapfileError(
          `the hash needs every byte read in one pass, but mapfile ${path} already has ${this.previouslyFinished} bytes finished (use a new mapfile, or verify instead)`,
        );
      }
      // Without noError every byte must be copied, so bad ranges are read again too.
      const done: Array<'+' | '-'> = plan.noError && !retryBad ? ['+', '-'] : ['+'];
      plan.extents = this.map.gaps(done, 0, Number.MAX_SAFE_INTEGER);
      if (plan.noError && !retryBad) plan.verifySkip = this.map.ranges(['-']);
    }
    // Written once before the engine starts: a mapfile that cannot be kept
    // stops the copy before anything is written.
    this.write(false);
  }

  /** The engine has opened the source: the copy's range is known. */
  begin(offset: number, length: number): void {
    if (this.domain) return;
    this.domain = { offset, length };
    this.map.cover(offset + length);
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
      path: this.path,
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
