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
    engine: {
      fixedBuffers: report.ring.fixedBuffers,
      fixedFiles: report.ring.fixedFiles,
      sqpoll: report.ring.sqpoll,
      linkReadWrite: report.ring.linked,
      batchSubmissions: report.ring.batched,
      ringSetupFlags: report.ring.setupFlags,
    },
    io: { ...report.io },
  };
  if (report.hash) result.hash = { ...report.hash };
  if (report.changed) {
    report.changed.forEach((c, i) => {
      if (targets[i]) targets[i].changed = { ...c };
    });
    result.changed = {
      bytesCompared: report.changed.reduce((n, c) => n + c.bytesCompared, 0),
      bytesWritten: report.changed.reduce((n, c) => n + c.bytesWritten, 0),
    };
  }
  if (report.verify) {
    result.verify = {
      bytesCompared: report.verify.bytesCompared,
      mismatchedBlocks: report.verify.mismatchedBlocks,
      blockBytes: report.verify.blockBytes,
      mode: report.verify.mode,
      sourceBytesRead: report.verify.sourceBytesRead,
    };
    if (report.verify.digest !== undefined) {
      result.verify.digest = report.verify.digest;
      result.verify.digestBlockBytes = report.verify.digestBlockBytes;
      result.verify.digestPagesSpilled = report.verify.digestPagesSpilled;
      if (report.verify.behindBytes) result.verify.behindBytes = report.verify.behindBytes;
    }
    if (report.verify.firstMismatchOffset !== undefined) result.verify.firstMismatchOffset = report.verify.firstMismatchOffset;
  }
  if (domain) result.domain = { path: domain.path, bytes: bytesWithin(domain.ranges, result.range.offset, result.range.offset + result.range.length) };
  if (mapfile) result.mapfile = mapfile.summary(result.range);
  if (report.ioEngineNote) result.ioEngineNote = report.ioEngineNote;
  if (report.ring.fixedBuffersNote) result.engine.fixedBuffersNote = report.ring.fixedBuffersNote;
  if (report.ring.fixedFilesNote) result.engine.fixedFilesNote = report.ring.fixedFilesNote;
  return result;
}
