// `devmove demo`: a self-contained copy on a fresh machine. It makes a source
// image of random data and an empty target image, attaches both as loop
// block devices with direct I/O when it runs as root (plain image files
// otherwise), copies one to the other with the CLI's own code path, verifies
// the target byte for byte by SHA-256, and removes everything it made.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { runCopy } from './copy-command';
import type { CliIo } from './output';
import type { DdInvocation } from './dd-args';
import { formatBytesIEC } from '../base/size';

export const DEMO_SIZE_BYTES = 256 * 1024 * 1024;

function writeRandomImage(file: string, bytes: number): void {
  const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
  const fd = fs.openSync(file, 'w');
  try {
    for (let done = 0; done < bytes; done += chunk.length) {
      crypto.randomFillSync(chunk);
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function sha256(file: string, bytes: number): string {
  const hash = crypto.createHash('sha256');
  const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
  const fd = fs.openSync(file, 'r');
  try {
    let done = 0;
    while (done < bytes) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, bytes - done), done);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

function canAttachLoop(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('losetup', ['--version'], { stdio: 'ignore' });
    return fs.existsSync('/dev/loop-control');
  } catch {
    return false;
  }
}

function attachLoop(image: string): string {
  return execFileSync('losetup', ['--find', '--show', '--direct-io=on', image], { encoding: 'utf8' }).trim();
}

export async function runDemo(inv: DdInvocation, io: CliIo): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmove-demo-'));
  const sourceImage = path.join(dir, 'source.img');
  const targetImage = path.join(dir, 'target.img');
  const loops: string[] = [];
  const say = (line: string): boolean => io.stderr.write(`${line}\n`);
  try {
    say(`devmove demo: writing ${formatBytesIEC(DEMO_SIZE_BYTES)} of random data to ${sourceImage}`);
    writeRandomImage(sourceImage, DEMO_SIZE_BYTES);
    fs.closeSync(fs.openSync(targetImage, 'w'));
    fs.truncateSync(targetImage, DEMO_SIZE_BYTES);

    let source = sourceImage;
    let target = targetImage;
    if (canAttachLoop()) {
      source = attachLoop(sourceImage);
      loops.push(source);
      target = attachLoop(targetImage);
      loops.push(target);
      say(`devmove demo: attached the images as block devices ${source} and ${target} (losetup --direct-io=on)`);
    } else {
      say('devmove demo: not root (or no loop devices): copying image file to image file');
    }
    const run: DdInvocation = { ...inv, command: 'copy', source, target, targets: [target], truncate: false };
    say(`devmove demo: $ devmove if=${source} of=${target}`);
    const code = await runCopy(run, { io, handleSignals: true });
    if (code !== 0) return code;

    const a = sha256(sourceImage, DEMO_SIZE_BYTES);
    const b = sha256(targetImage, DEMO_SIZE_BYTES);
    if (a !== b) {
      say(`devmove demo: VERIFY FAILED: source sha256 ${a}, target sha256 ${b}`);
      return 1;
    }
    say(`devmove demo: verified: source and target have the same sha256 ${a.slice(0, 16)}…`);
    return 0;
  } finally {
    for (const loop of loops.reverse()) {
      try {
        execFileSync('losetup', ['--detach', loop], { stdio: 'ignore' });
      } catch {
        say(`devmove demo: could not detach ${loop}; run: losetup -d ${loop}`);
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
