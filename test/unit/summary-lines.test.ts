// What devmove adds to dd's statistics after a copy, and which status= level
// shows which line: none leaves errors only (dd is silent about conv=noerror's
// unreadable blocks then), noxfer drops the statistics and keeps the warnings
// that explain exit status 1 (coreutils tests/dd/sparse.sh: nothing extra with
// status=noxfer), default and progress show everything.
import { describe, expect, it } from 'vitest';

import type { CopyResult, FileInfo } from '../../src/base/types';
import { summaryLines, summaryShown } from '../../src/cli/copy-command';
import { parseDdArgs } from '../../src/cli/dd-args';

const file = (path: string, extra: Partial<FileInfo> = {}): FileInfo => ({
  path, kind: 'file', sizeBytes: 0, logicalBlockBytes: 512, physicalBlockBytes: 512, direct: true, created: false, ...extra,
});

function result(extra: Partial<CopyResult>): CopyResult {
  const target = file('/t');
  return {
    bytesCopied: 1, seconds: 1, bytesPerSecond: 1, durability: 'fdatasync', source: file('/s'), target, targets: [target],
    range: { offset: 0, length: 1 }, bad: { bytes: 0, rangeCount: 0, ranges: [] }, zero: { bytes: 0, skipped: 0, discarded: 0 },
    rate: 0, blockSize: 512, queueDepth: 1,
    engine: { fixedBuffers: true, fixedFiles: true, sqpoll: false, linkReadWrite: true, batchSubmissions: true, ringSetupFlags: 0 },
    io: { reads: 0, writes: 0, bufferedIos: 0, shortTransfers: 0, requeues: 0, submitCalls: 0, brokenLinks: 0, readErrors: 0, retriedReads: 0, discards: 0 },
    ...extra,
  };
}

function shown(r: CopyResult, operands: string[]): string[] {
  const inv = parseDdArgs(['if=/s', 'of=/t', ...operands]);
  return summaryLines(r, inv).filter((l) => summaryShown(l.kind, inv.status)).map((l) => l.text.split(':')[0]);
}

describe('summary lines by status=', () => {
  const everything = result({
    bad: { bytes: 512, rangeCount: 1, ranges: [[0, 512]] },
    zero: { bytes: 4096, skipped: 4096, discarded: 0 },
    verify: { bytesCompared: 1, mismatchedBlocks: 0, blockBytes: 512 },
    targets: [file('/t'), file('/u', { dropped: true })],
    mapfile: { path: 'm', resumed: false, previouslyFinished: 0, finished: 1, bad: 0, nonTried: 0 },
  });

  it('default and progress: every line', () => {
    const all = ['if=/s', 'of=/u', 'zero blocks', 'verified', 'mapfile m'];
    expect(shown(everything, ['conv=sparse'])).toEqual(all);
    expect(shown(everything, ['conv=sparse', 'status=progress'])).toEqual(all);
  });

  it('noxfer: the unreadable blocks and the dropped target, no statistics', () => {
    expect(shown(everything, ['conv=sparse', 'status=noxfer'])).toEqual(['if=/s', 'of=/u']);
  });

  it('none: the dropped target only (an error)', () => {
    expect(shown(everything, ['conv=sparse', 'status=none'])).toEqual(['of=/u']);
  });

  it('a map with bad ranges explains exit status 1: shown with noxfer', () => {
    const r = result({ mapfile: { path: 'm', resumed: true, previouslyFinished: 0, finished: 1, bad: 512, nonTried: 0 } });
    expect(shown(r, ['status=noxfer'])).toEqual(['mapfile m']);
    expect(shown(r, ['status=none'])).toEqual([]);
  });
});
