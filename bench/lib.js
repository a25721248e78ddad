// Shared pieces of the benchmarks (see ../../shared/BENCH_PROTOCOL.md): loop
// devices over images the benchmark creates itself, a cleanup list that runs on
// exit, failure and Ctrl-C, cache dropping, /sys/block stats, timing under GNU
// time, medians. Only what this module attached or created is ever removed.
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function log(line) {
  process.stderr.write(`bench: ${line}\n`);
}

function parseSize(text) {
  const m = /^(\d+)([KMGT]?)$/i.exec(String(text));
  if (!m) throw new Error(`a size looks like 512M or 2G (got ${text})`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}

function have(cmd, args = ['--version']) {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

// ---------- cleanup ----------

const cleanups = new Set();

/** Registers fn to run at cleanup; returns a function that runs it now (once) instead. */
function atCleanup(fn) {
  const entry = { fn };
  cleanups.add(entry);
  return () => {
    if (!cleanups.delete(entry)) return;
    fn();
  };
}

function cleanupAll() {
  // Newest first: devices are detached before their image directory is removed.
  for (const entry of [...cleanups].reverse()) {
    cleanups.delete(entry);
    try {
      entry.fn();
    } catch (e) {
      process.stderr.write(`bench: cleanup: ${e.message}\n`);
    }
  }
}

let handlersInstalled = false;
function installExitHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', cleanupAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      log(`${sig}: cleaning up`);
      cleanupAll();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (e) => {
    process.stderr.write(`bench: ${e.stack ?? e}\n`);
    cleanupAll();
    process.exit(1);
  });
}

// ---------- images and loop devices ----------

/** Writes an image of `bytes`: random data, zeros, or a constant byte (fill: 'random' | 'zero' | number). */
function writeImage(file, bytes, fill) {
  const fd = fs.openSync(file, 'w');
  try {
    fillFd(fd, bytes, fill);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function fillFd(fd, bytes, fill) {
  const chunk = Buffer.alloc(8 * MiB, typeof fill === 'number' ? fill : 0);
  for (let done = 0; done < bytes; done += chunk.length) {
    if (fill === 'random') crypto.randomFillSync(chunk);
    fs.writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done), done);
  }
}

/** Overwrites a whole loop device we attached (through the device, so its cache stays coherent). */
function fillDevice(dev, bytes, fill) {
  const fd = fs.openSync(dev, 'r+');
  try {
    fillFd(fd, bytes, fill);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** A fresh directory under base, removed at cleanup. Returns { dir, remove }. */
function scratchDir(base) {
  const dir = fs.mkdtempSync(path.join(base, 'devmove-bench-'));
  const remove = atCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return { dir, remove };
}

/** Attaches image to a free loop device with --direct-io=on; detached at cleanup. Returns { dev, detach }. */
function attach(image) {
  const dev = execFileSync('losetup', ['--find', '--show', '--direct-io=on', image], { encoding: 'utf8' }).trim();
  const detach = atCleanup(() => execFileSync('losetup', ['--detach', dev]));
  return { dev, detach };
}

function freeBytes(dir) {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
}

// ---------- measurement ----------

function dropCaches() {
  execFileSync('sync');
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** Completed reads and writes of a block device, from /sys/block/<dev>/stat. */
function diskStat(dev) {
  const f = fs.readFileSync(`/sys/block/${path.basename(dev)}/stat`, 'utf8').trim().split(/\s+/).map(Number);
  return { reads: f[0], writes: f[4] };
}

/**
 * Runs a command under GNU time after dropping caches: wall seconds, CPU seconds (user+sys), peak RSS,
 * and the completed requests on the given devices (deltas of /sys/block/<dev>/stat).
 */
function timed(cmd, args, devices = []) {
  dropCaches();
  const timeFile = path.join(os.tmpdir(), `devmove-bench-time-${process.pid}`);
  const before = devices.map(diskStat);
  const t0 = process.hrtime.bigint();
  const run = spawnSync('/usr/bin/time', ['-o', timeFile, '-f', '%e %U %S %M', cmd, ...args], { encoding: 'utf8', maxBuffer: 64 * MiB });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = devices.map(diskStat);
  if (run.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${run.status ?? run.signal}): ${run.stderr}`);
  const [, user, sys, rssKb] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  fs.rmSync(timeFile, { force: true });
  return {
    seconds: wall,
    cpuSeconds: user + sys,
    peakRssBytes: rssKb * 1024,
    requests: devices.map((d, i) => ({ dev: d, reads: after[i].reads - before[i].reads, writes: after[i].writes - before[i].writes })),
    stdout: run.stdout,
  };
}

/** Throws unless the first `bytes` of a and b are equal. */
function cmpEqual(a, b, bytes) {
  const r = spawnSync('cmp', ['-s', '-n', String(bytes), a, b]);
  if (r.status === 1) throw new Error(`verification failed: ${b} differs from ${a}`);
  if (r.status !== 0) throw new Error(`verification could not run: cmp ended with ${r.status ?? r.signal}`);
}

/** Cumulative 'some' stall time (µs) from /proc/pressure/{cpu,io}: how much others (or we) waited for CPU / I/O. */
function pressure() {
  const some = (kind) => {
    try {
      const m = /^some .*total=(\d+)/m.exec(fs.readFileSync(`/proc/pressure/${kind}`, 'utf8'));
      return m ? Number(m[1]) : NaN;
    } catch {
      return NaN;
    }
  };
  return { cpuUs: some('cpu'), ioUs: some('io') };
}

/** fio's limit for a copy: one job reading `source` while one job per target writes it, all at once (512 KiB, QD 8, O_DIRECT, io_uring). */
function fioLimit(source, targets, bytes) {
  dropCaches();
  const common = ['--ioengine=io_uring', '--direct=1', '--bs=512k', '--iodepth=8', `--size=${bytes}`, '--output-format=json'];
  const jobs = [`--name=read`, `--filename=${source}`, '--rw=read'];
  targets.forEach((t, i) => jobs.push(`--name=write${i}`, `--filename=${t}`, '--rw=write'));
  const run = spawnSync('fio', [...common, ...jobs], { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (run.status !== 0) throw new Error(`fio failed: ${run.stderr}`);
  const out = JSON.parse(run.stdout.slice(run.stdout.indexOf('{'))).jobs;
  const read = out.find((j) => j.jobname === 'read').read.bw_bytes;
  const writes = targets.map((_, i) => out.find((j) => j.jobname === `write${i}`).write.bw_bytes);
  return { bytesPerSecond: Math.min(read, ...writes), readBytesPerSecond: read, writeBytesPerSecond: writes };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function mean(xs) {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function fmt(x, digits = 2) {
  return Number.isFinite(x) ? x.toFixed(digits) : '–';
}

module.exports = {
  GiB,
  MiB,
  log,
  parseSize,
  have,
  atCleanup,
  cleanupAll,
  installExitHandlers,
  writeImage,
  fillDevice,
  scratchDir,
  attach,
  freeBytes,
  dropCaches,
  diskStat,
  timed,
  cmpEqual,
  pressure,
  fioLimit,
  median,
  mean,
  fmt,
};
