// The engine's report as the library's CopyResult.
import type { NativeFileReport, NativePlan, NativeReport } from '../addon/binding';
import { DevmoveError } from '../base/errors';
import type { CopyResult, FileInfo } from '../base/types';
import { bytesWithin, type Domain } from '../resume/domain';
import type { MapfileSession } from '../resume/session';

function fileInfo(f: NativeFileReport | undefined, fallbackPath: string): FileInfo {
  if (!f) {
    return { path: fallbackPath, kind: 'file', sizeBytes: 0, logicalBlockBytes: 0, physicalBlockBytes: 0, direct: false, created: false };
  }
  const info: FileInfo = {
    path: f.path,
    kind: f.kind,
    sizeBytes: f.sizeBytes,
    logicalBlockBytes: f.logicalBlockBytes,
    physicalBlockBytes: f.physicalBlockBytes,
    direct: f.direct,
    created: f.created,
  };
  if (!f.direct && f.directNote) info.directNote = f.directNote;
  if (f.dropped) info.dropped = true;
  if (f.error) info.error = new DevmoveError(f.error);
  if (f.zeroNote) info.zeroNote = f.zeroNote;
  if (f.unfinishedBytes) info.unfinishedBytes = f.unfinishedBytes;
  if (f.holesKept) info.holesKept = true;
  return info;
}

export function toResult(report: NativeReport, plan: NativePlan, mapfile: MapfileSession | undefined, domain?: Domain): CopyResult {
  const targets = plan.targets.map((t, i) => fileInfo(report.targets[i], t.path));
  const result: CopyResult = {
    bytesCopied: report.bytesCopied,
    bytesRead: report.bytesRead ?? report.bytesCopied,
    seconds: report.seconds,
    bytesPerSecond: report.seconds > 0 ? report.bytesCopied / report.seconds : 0,
    durability: report.durability,
    source: fileInfo(report.source, plan.source.path),
    target: targets[0],
    targets,
    range: { offset: report.domainOffset ?? plan.source.offset, length: report.domainLength ?? 0 },
    bad: { bytes: report.bad?.bytes ?? 0, rangeCount: report.bad?.rangeCount ?? 0, ranges: report.bad?.ranges ?? [] },
    zero: { bytes: report.zero?.bytes ?? 0, skipped: report.zero?.skipped ?? 0, discarded: report.zero?.discarded ?? 0 },
    holes: { bytes: report.holes?.bytes ?? 0, note: report.holes?.note ?? '' },
    rate: report.rate ?? 0,
    blockSize: report.blockBytes || plan.blockBytes,
    queueDepth: report.queueDepth || plan.queueDepth,
    ioEngine: report.ioEngine ?? (plan.ioEngine === 'threads' ? 'threads' : 'io_uring'),
    engine: engineInfo(report.ring),
    io: { ...report.io },
  };
  if (report.hash) result.hash = { ...report.hash };
  if (report.changed) result.changed = changedInfo(report.changed, targets);
  if (report.verify) result.verify = verifyInfo(report.verify);
  if (domain) result.domain = { path: domain.path, bytes: bytesWithin(domain.ranges, result.range.offset, result.range.offset + result.range.length) };
  if (mapfile) result.mapfile = mapfile.summary(result.range);
  if (report.ioEngineNote) result.ioEngineNote = report.ioEngineNote;
  return result;
}

function engineInfo(ring: NativeReport['ring']): CopyResult['engine'] {
  const engine: CopyResult['engine'] = {
    fixedBuffers: ring.fixedBuffers,
    fixedFiles: ring.fixedFiles,
    sqpoll: ring.sqpoll,
    linkReadWrite: ring.linked,
    batchSubmissions: ring.batched,
    ringSetupFlags: ring.setupFlags,
  };
  if (ring.fixedBuffersNote) engine.fixedBuffersNote = ring.fixedBuffersNote;
  if (ring.fixedFilesNote) engine.fixedFilesNote = ring.fixedFilesNote;
  return engine;
}

/** --only-changed: each target's counts go on its FileInfo; the totals are the result's. */
function changedInfo(changed: NonNullable<NativeReport['changed']>, targets: FileInfo[]): NonNullable<CopyResult['changed']> {
  changed.forEach((c, i) => {
    if (targets[i]) targets[i].changed = { ...c };
  });
  return {
    bytesCompared: changed.reduce((n, c) => n + c.bytesCompared, 0),
    bytesWritten: changed.reduce((n, c) => n + c.bytesWritten, 0),
  };
}

function verifyInfo(verify: NonNullable<NativeReport['verify']>): NonNullable<CopyResult['verify']> {
  const info: NonNullable<CopyResult['verify']> = {
    bytesCompared: verify.bytesCompared,
    mismatchedBlocks: verify.mismatchedBlocks,
    blockBytes: verify.blockBytes,
    mode: verify.mode,
    sourceBytesRead: verify.sourceBytesRead,
  };
  if (verify.digest !== undefined) {
    info.digest = verify.digest;
    info.digestBlockBytes = verify.digestBlockBytes;
    info.digestPagesSpilled = verify.digestPagesSpilled;
    if (verify.behindBytes) info.behindBytes = verify.behindBytes;
  }
  if (verify.firstMismatchOffset !== undefined) info.firstMismatchOffset = verify.firstMismatchOffset;
  return info;
}
