#!/usr/bin/env node
// devmove benchmark, following ../shared/BENCH_PROTOCOL.md: it builds the
// device pairs itself (loop devices over tmpfs and over the root disk, with
// --direct-io=on), measures the pair's limit with fio (read ∥ write), runs dd
// (buffered with conv=fsync, and O_DIRECT) and devmove alternately, verifies
// every devmove copy, and reports ratios taken in the same run. Everything it
// attaches or creates is removed on exit, failure or Ctrl-C.
//
//   sudo npm run bench -- [--size 2G] [--runs 3] [--pairs ram,disk] [--only compare,sweep,ablation,rss,cold,engines,pipes]
//                         [--rss-sizes 2G,8G] [--rss-pair ram|disk] [--tag NAME] [--out DIR] [--baseline DIR]
// --only engines: the io_uring and threads I/O drivers side by side (and, with --baseline DIR, a
// built checkout of an earlier devmove: its dist/cli/main.js); --only pipes: device | zstd and
// zstd -d | device against each stage alone (needs zstd).
// --tag NAME writes bench-DATE-NAME.{json,md} (and NAME-suffixed charts) instead of bench-DATE.*;
// --only cold times devmove's start-up with caches dropped (not in the default set); --baseline DIR
// times another built checkout's CLI in the same rounds (a before/after in one run).
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { diskStat, fmt, have, log, median } = require('./lib');
const { renderBars, renderLines } = require('./svg');

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const COLD_HOOK = path.join(__dirname, 'cold-hook.js');
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

// ---------- arguments ----------

function parseArgs(argv) {
  const args = { size: '2G', runs: 3, pairs: ['ram', 'disk'], only: ['compare', 'sweep', 'ablation', 'rss'], out: path.join(__dirname, 'results'), tag: '', rssPair: 'disk' };
  for (let i = 0; i < argv.length; i++) {
    const [key, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (key === '--size') args.size = value();
    else if (key === '--runs') args.runs = Number(value());
    else if (key === '--pairs') args.pairs = value().split(',');
    else if (key === '--only') args.only = value().split(',');
    else if (key === '--out') args.out = value();
    else if (key === '--tag') args.tag = value();
    else if (key === '--rss-sizes') args.rssSizes = value().split(',');
    else if (key === '--rss-pair') args.rssPair = value();
    else if (key === '--baseline') args.baseline = path.resolve(value());
    else if (key === '--help' || key === '-h') {
      process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 13).join('\n') + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${argv[i]}`);
  }
  args.sizeBytes = parseSize(args.size);
  if (!Number.isInteger(args.runs) || args.runs < 1) throw new Error('--runs must be a positive integer');
  for (const p of args.pairs) if (!['ram', 'disk'].includes(p)) throw new Error(`unknown pair ${p}: use ram and/or disk`);
  for (const o of args.only) if (!['compare', 'sweep', 'ablation', 'rss', 'cold', 'engines', 'pipes'].includes(o)) throw new Error(`unknown experiment ${o}`);
  if (args.baseline !== undefined && !fs.existsSync(path.join(args.baseline, 'dist', 'cli', 'main.js'))) {
    throw new Error(`--baseline ${args.baseline}: no dist/cli/main.js there (build that checkout first)`);
  }
  if (!['ram', 'disk'].includes(args.rssPair)) throw new Error(`--rss-pair takes ram or disk (got ${args.rssPair})`);
  // Default: the copy size (at most 2 GiB) and four times that, as before.
  const rssBase = Math.min(args.sizeBytes, 2 * GiB);
  args.rssSizeBytes = args.rssSizes ? args.rssSizes.map(parseSize) : [rssBase, 4 * rssBase];
  if (args.rssSizeBytes.length < 2) throw new Error('--rss-sizes needs at least two sizes, e.g. 2G,8G');
  if (!/^[\w.-]*$/.test(args.tag)) throw new Error('--tag takes letters, digits, ".", "_" and "-"');
  if (args.baseline !== undefined && !fs.existsSync(path.join(args.baseline, 'dist', 'cli', 'main.js'))) {
    throw new Error(`--baseline ${args.baseline}: no dist/cli/main.js there (a built devmove checkout, e.g. a worktree of main)`);
  }
  return args;
}

function parseSize(text) {
  const m = /^(\d+)([KMGT]?)$/i.exec(text);
  if (!m) throw new Error(`--size takes a size like 512M or 2G (got ${text})`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}

// ---------- environment checks ----------

// The tools, each found on PATH once at start: a PATH lookup per call failed mid-run once on this
// shared machine (execvp: ELOOP), leaving the loop devices attached; absolute paths avoid that.
const TOOLS = {};
function tool(name) {
  if (TOOLS[name]) return TOOLS[name];
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const candidate = path.join(dir || '.', name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (!fs.statSync(candidate).isFile()) continue;
      return (TOOLS[name] = candidate);
    } catch {
      // not here
    }
  }
  throw new Error(`${name} not found on PATH`);
}

/** Sleeps without spinning (cleanup retries). */
function sleepMs(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function preflight() {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root: it attaches loop devices and drops caches');
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm ci (or npm run build) first`);
  const missing = [];
  if (!have('fio')) missing.push('fio (Debian package fio) — measures the device pair limit');
  if (!have('/usr/bin/time', ['--version'])) missing.push('GNU time (Debian package time) — CPU seconds and peak RSS per process');
  if (!have('losetup')) missing.push('losetup (Debian package mount)');
  if (missing.length) throw new Error(`missing tools; install them first (the benchmark installs nothing itself):\n  ${missing.join('\n  ')}`);
  for (const name of ['losetup', 'sync', 'fio', 'dd', 'cmp']) tool(name);
}

// ---------- environment of the measured process ----------

// Set on some machines (this project's CI among them) for outbound TLS; every Node process then
// parses that CA bundle before running any JavaScript (~35 ms here), whatever it does. dd does not
// pay it. compare measures devmove with the environment as inherited (the headline figure) and,
// when this variable is set, also without it.
const MACHINE_NODE_VARS = ['NODE_EXTRA_CA_CERTS'];

function inheritedEnvIsClean() {
  return MACHINE_NODE_VARS.every((k) => process.env[k] === undefined);
}

function cleanEnv() {
  const env = { ...process.env };
  for (const k of MACHINE_NODE_VARS) delete env[k];
  return env;
}

// ---------- device pairs ----------

const cleanups = [];
function atCleanup(fn) {
  cleanups.push(fn);
}
function cleanupAll() {
  while (cleanups.length) {
    try {
      cleanups.pop()();
    } catch (e) {
      process.stderr.write(`bench: cleanup: ${e.message}\n`);
    }
  }
}
process.on('exit', cleanupAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanupAll();
    process.exit(130);
  });
}

function writeImage(file, bytes, random) {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(8 * MiB);
  try {
    for (let done = 0; done < bytes; done += chunk.length) {
      if (random) crypto.randomFillSync(chunk);
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function attach(image) {
  const dev = execFileSync(tool('losetup'), ['--find', '--show', '--direct-io=on', image], { encoding: 'utf8' }).trim();
  atCleanup(() => {
    // A device still being closed by the last copy can be busy for a moment: retry before giving up loudly.
    for (let attempt = 1; ; attempt++) {
      try {
        execFileSync(tool('losetup'), ['--detach', dev], { stdio: ['ignore', 'ignore', 'pipe'] });
        return;
      } catch (e) {
        if (attempt === 5) throw new Error(`could not detach ${dev} (${image}): ${e.message}; run losetup --detach ${dev}`);
        sleepMs(500);
      }
    }
  });
  return dev;
}

// Queue settings a loop device keeps across detach and re-attach: a previous user's
// max_sectors_kb (a test that caps requests at 124 KiB, say) would split every 512 KiB request
// into five and change what is measured. The bench sets the kernel's defaults on the devices it
// attached and puts the values it found back at teardown.
const QUEUE_DEFAULTS = {
  max_sectors_kb: (q) => fs.readFileSync(`${q}/max_hw_sectors_kb`, 'utf8').trim(),
  read_ahead_kb: () => '128', // VM_READAHEAD_PAGES: a loop device's read-ahead without an optimal I/O size
};

function normalizeQueue(dev) {
  const q = `/sys/block/${path.basename(dev)}/queue`;
  const changed = {};
  for (const [attr, wanted] of Object.entries(QUEUE_DEFAULTS)) {
    const file = `${q}/${attr}`;
    const found = fs.readFileSync(file, 'utf8').trim();
    const value = wanted(q);
    if (found === value) continue;
    fs.writeFileSync(file, value);
    atCleanup(() => fs.writeFileSync(file, found));
    changed[attr] = { found: Number(found), set: Number(value) };
  }
  if (Object.keys(changed).length) log(`${dev}: reset ${Object.entries(changed).map(([a, c]) => `${a} ${c.found} → ${c.set}`).join(', ')} (left by a previous user; restored at teardown)`);
  return changed;
}

function makePair(kind, bytes) {
  const base = kind === 'ram' ? '/dev/shm' : '/var/tmp';
  const dir = fs.mkdtempSync(path.join(base, 'devmove-bench-'));
  atCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  const srcImage = path.join(dir, 'source.img');
  const dstImage = path.join(dir, 'target.img');
  log(`${kind} pair: writing ${bytes / GiB} GiB of random data to ${srcImage} and pre-writing the target`);
  writeImage(srcImage, bytes, true);
  writeImage(dstImage, bytes, false); // tmpfs allocates pages on first write: pre-write the target once
  const src = attach(srcImage);
  const dst = attach(dstImage);
  const queueReset = { src: normalizeQueue(src), dst: normalizeQueue(dst) };
  log(`${kind} pair: ${src} → ${dst}`);
  return { kind, src, dst, bytes, queueReset };
}

// ---------- measurement ----------

function dropCaches() {
  execFileSync(tool('sync'));
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** Runs a command under GNU time: wall seconds, CPU seconds (user+sys), peak RSS, device requests. */
function timed(pair, cmd, args, env = process.env) {
  dropCaches();
  const timeFile = path.join(os.tmpdir(), `devmove-bench-time-${process.pid}`);
  const before = { src: diskStat(pair.src), dst: diskStat(pair.dst) };
  const t0 = process.hrtime.bigint();
  const run = spawnSync('/usr/bin/time', ['-o', timeFile, '-f', '%e %U %S %M', cmd, ...args], { encoding: 'utf8', maxBuffer: 64 * MiB, env });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = { src: diskStat(pair.src), dst: diskStat(pair.dst) };
  if (run.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${run.status}): ${run.stderr}`);
  const [, user, sys, rssKb] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  fs.rmSync(timeFile, { force: true });
  return {
    seconds: wall,
    cpuSeconds: user + sys,
    peakRssBytes: rssKb * 1024,
    sourceReads: after.src.reads - before.src.reads,
    targetWrites: after.dst.writes - before.dst.writes,
    stdout: run.stdout,
  };
}

function fioLimit(pair) {
  dropCaches();
  const common = ['--ioengine=io_uring', '--direct=1', '--bs=512k', '--iodepth=8', `--size=${pair.bytes}`, '--output-format=json'];
  const run = spawnSync(
    tool('fio'),
    [...common, '--name=read', `--filename=${pair.src}`, '--rw=read', '--name=write', `--filename=${pair.dst}`, '--rw=write'],
    { encoding: 'utf8' },
  );
  if (run.status !== 0) throw new Error(`fio failed: ${run.stderr}`);
  const jobs = JSON.parse(run.stdout.slice(run.stdout.indexOf('{'))).jobs;
  const read = jobs.find((j) => j.jobname === 'read').read.bw_bytes;
  const write = jobs.find((j) => j.jobname === 'write').write.bw_bytes;
  return { bytesPerSecond: Math.min(read, write), readBytesPerSecond: read, writeBytesPerSecond: write };
}

function verify(pair) {
  const r = spawnSync(tool('cmp'), ['-s', '-n', String(pair.bytes), pair.src, pair.dst]);
  if (r.status === 1) throw new Error(`verification failed: ${pair.dst} differs from ${pair.src}`);
  if (r.status !== 0) throw new Error(`verification could not run: cmp ended with ${r.status ?? r.signal}`);
}

/** The engine's own seconds from devmove's --json result line (its wall time minus Node's start-up and exit). */
function engineSeconds(stdout) {
  const line = stdout.trim().split('\n').reverse().find((l) => l.startsWith('{"type":"result"'));
  if (!line) throw new Error(`devmove printed no result line: ${stdout.slice(0, 200)}`);
  return JSON.parse(line).seconds;
}

function devmove(pair, extra = [], env = process.env, cli = CLI) {
  const m = timed(pair, process.execPath, [cli, `if=${pair.src}`, `of=${pair.dst}`, 'status=none', '--json', ...extra], env);
  verify(pair);
  m.engineSeconds = engineSeconds(m.stdout);
  return m;
}

function summarize(runs, bytes) {
  const rates = runs.map((r) => bytes / r.seconds);
  const gib = bytes / GiB;
  const out = {
    runs: runs.length,
    gbPerSecond: { median: median(rates) / 1e9, min: Math.min(...rates) / 1e9, max: Math.max(...rates) / 1e9 },
    seconds: median(runs.map((r) => r.seconds)),
  };
  if (runs[0].cpuSeconds !== undefined) {
    out.cpuSecondsPerGiB = median(runs.map((r) => r.cpuSeconds)) / gib;
    out.peakRssBytes = Math.max(...runs.map((r) => r.peakRssBytes));
    out.sourceReadsPerGiB = median(runs.map((r) => r.sourceReads)) / gib;
    out.targetWritesPerGiB = median(runs.map((r) => r.targetWrites)) / gib;
  }
  if (runs[0].engineSeconds !== undefined) {
    const engineRates = runs.map((r) => bytes / r.engineSeconds);
    out.engineGbPerSecond = { median: median(engineRates) / 1e9, min: Math.min(...engineRates) / 1e9, max: Math.max(...engineRates) / 1e9 };
    // Wall seconds outside the engine: exec, Node's start-up, module loading, checks, exit.
    out.outsideEngineSeconds = median(runs.map((r) => r.seconds - r.engineSeconds));
  }
  // Every run, in the order taken: medians of a ratio and ratios of medians differ.
  out.perRun = runs.map((r) => ({ seconds: r.seconds, ...(r.engineSeconds !== undefined ? { engineSeconds: r.engineSeconds } : {}) }));
  return out;
}

// ---------- experiments ----------

function compare(pair, runs) {
  const samples = { limit: [], ddBuffered: [], ddDirect: [], devmove: [] };
  const withCleanEnv = !inheritedEnvIsClean();
  if (withCleanEnv) samples.devmoveCleanEnv = [];
  const fio = [];
  for (let i = 0; i < runs; i++) {
    // Alternate the order from run to run so drift does not favour one tool.
    const forward = ['limit', 'ddBuffered', 'ddDirect', 'devmove', ...(withCleanEnv ? ['devmoveCleanEnv'] : [])];
    const order = i % 2 === 0 ? forward : [...forward].reverse();
    for (const what of order) {
      if (what === 'limit') {
        const f = fioLimit(pair);
        fio.push(f);
        samples.limit.push({ seconds: pair.bytes / f.bytesPerSecond });
      } else if (what === 'ddBuffered') {
        samples.ddBuffered.push(timed(pair, tool('dd'), [`if=${pair.src}`, `of=${pair.dst}`, 'bs=512K', 'conv=fsync', 'status=none']));
      } else if (what === 'ddDirect') {
        samples.ddDirect.push(timed(pair, tool('dd'), [`if=${pair.src}`, `of=${pair.dst}`, 'bs=512K', 'iflag=direct', 'oflag=direct', 'status=none']));
      } else if (what === 'devmoveCleanEnv') {
        samples.devmoveCleanEnv.push(devmove(pair, [], cleanEnv()));
      } else {
        samples.devmove.push(devmove(pair));
      }
      log(`${pair.kind} run ${i + 1}/${runs}: ${what} ${(pair.bytes / samples[what].at(-1).seconds / 1e9).toFixed(2)} GB/s`);
    }
  }
  const result = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, summarize(v, pair.bytes)]));
  result.devices = { src: pair.src, dst: pair.dst, queueReset: pair.queueReset };
  result.limit.readGbPerSecond = median(fio.map((f) => f.readBytesPerSecond)) / 1e9;
  result.limit.writeGbPerSecond = median(fio.map((f) => f.writeBytesPerSecond)) / 1e9;
  const dm = result.devmove;
  if (withCleanEnv) result.devmoveCleanEnv.envRemoved = MACHINE_NODE_VARS.filter((k) => process.env[k] !== undefined);
  result.ratios = {
    devmoveVsLimit: dm.gbPerSecond.median / result.limit.gbPerSecond.median,
    engineVsLimit: dm.engineGbPerSecond.median / result.limit.gbPerSecond.median,
    ...(withCleanEnv ? { devmoveCleanEnvVsLimit: result.devmoveCleanEnv.gbPerSecond.median / result.limit.gbPerSecond.median } : {}),
    speedupVsDdDirect: result.ddDirect.seconds / dm.seconds,
    speedupVsDdBuffered: result.ddBuffered.seconds / dm.seconds,
    cpuPerGiBVsDdDirect: dm.cpuSecondsPerGiB / result.ddDirect.cpuSecondsPerGiB,
  };
  return result;
}

/**
 * The I/O drivers side by side on one pair, order alternated: io_uring, the worker threads used
 * where io_uring is forbidden, and (--baseline) the same copy by an earlier build, to show the
 * engine split left the io_uring copy as it was.
 */
function engines(pair, runs, before) {
  const env = (engine) => ({ ...process.env, DEVMOVE_IO_ENGINE: engine });
  const variants = [
    ['io_uring', (p) => devmove(p, [], env('io_uring'))],
    ['threads', (p) => devmove(p, [], env('threads'))],
  ];
  if (before) variants.push(['io_uring before', (p) => devmove(p, [], env(''), path.join(before, 'dist', 'cli', 'main.js'))]);
  const samples = new Map(variants.map(([name]) => [name, []]));
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? variants : [...variants].reverse();
    for (const [name, run] of order) {
      samples.get(name).push(run(pair));
      log(`${pair.kind} engines run ${i + 1}/${runs}: ${name} ${(pair.bytes / samples.get(name).at(-1).seconds / 1e9).toFixed(2)} GB/s`);
    }
  }
  const result = Object.fromEntries(variants.map(([name]) => [name, summarize(samples.get(name), pair.bytes)]));
  const uring = result.io_uring;
  result.ratios = {
    threadsVsIoUring: result.threads.gbPerSecond.median / uring.gbPerSecond.median,
    threadsVsIoUringEngineAlone: result.threads.engineGbPerSecond.median / uring.engineGbPerSecond.median,
    threadsCpuPerGiBVsIoUring: result.threads.cpuSecondsPerGiB / uring.cpuSecondsPerGiB,
    ...(before
      ? {
          afterVsBefore: uring.gbPerSecond.median / result['io_uring before'].gbPerSecond.median,
          afterVsBeforeEngineAlone: uring.engineGbPerSecond.median / result['io_uring before'].engineGbPerSecond.median,
          afterCpuPerGiBVsBefore: uring.cpuSecondsPerGiB / result['io_uring before'].cpuSecondsPerGiB,
        }
      : {}),
  };
  return result;
}

/** Wall seconds of a shell pipeline (caches dropped first); throws when any stage fails. */
function pipeline(command) {
  dropCaches();
  const t0 = process.hrtime.bigint();
  const run = spawnSync('bash', ['-c', `set -o pipefail; ${command}`], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${command} failed (${run.status}): ${run.stderr}`);
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/**
 * A device image through a compressor and back: `devmove if=DEV | zstd -T0` against zstd reading
 * the device itself (the slower stage alone), and `zstd -dc | devmove of=DEV` against zstd
 * decompressing to /dev/null. A ratio near 1 means devmove runs at the slower stage's speed.
 */
function pipes(pair, runs) {
  if (!have('zstd', ['--version'])) throw new Error('--only pipes needs zstd (Debian package zstd)');
  const zst = path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), `devmove-bench-${process.pid}.zst`);
  atCleanup(() => fs.rmSync(zst, { force: true }));
  const zstd = tool('zstd');
  const dm = `'${process.execPath}' '${CLI}'`;
  const cases = [
    ['zstd alone (reads the device)', () => pipeline(`'${zstd}' -q -T0 -1 < '${pair.src}' > '${zst}'`)],
    ['devmove | zstd', () => pipeline(`${dm} if='${pair.src}' status=none | '${zstd}' -q -T0 -1 > '${zst}'`)],
    ['dd bs=1M | zstd', () => pipeline(`dd if='${pair.src}' bs=1M status=none | '${zstd}' -q -T0 -1 > '${zst}'`)],
    ['zstd -d alone (to /dev/null)', () => pipeline(`'${zstd}' -q -dc '${zst}' > /dev/null`)],
    ['zstd -d | devmove', () => pipeline(`'${zstd}' -q -dc '${zst}' | ${dm} of='${pair.dst}' status=none`)],
    ['zstd -d | dd bs=1M oflag=direct', () => pipeline(`'${zstd}' -q -dc '${zst}' | dd of='${pair.dst}' bs=1M iflag=fullblock oflag=direct conv=fsync status=none`)],
  ];
  const samples = new Map(cases.map(([name]) => [name, []]));
  for (let i = 0; i < runs; i++) {
    // Compression first in every round (the decompression cases read its output), order inside each half alternated.
    const halves = [cases.slice(0, 3), cases.slice(3)].map((h) => (i % 2 === 0 ? h : [...h].reverse()));
    for (const [name, run] of halves.flat()) {
      samples.get(name).push(run());
      log(`${pair.kind} pipes run ${i + 1}/${runs}: ${name} ${(pair.bytes / samples.get(name).at(-1).seconds / 1e9).toFixed(2)} GB/s`);
    }
    verify(pair);
  }
  const result = Object.fromEntries(cases.map(([name]) => [name, summarize(samples.get(name), pair.bytes)]));
  const gbps = (name) => result[name].gbPerSecond.median;
  result.ratios = {
    compressVsZstdAlone: gbps('devmove | zstd') / gbps('zstd alone (reads the device)'),
    decompressVsZstdAlone: gbps('zstd -d | devmove') / gbps('zstd -d alone (to /dev/null)'),
  };
  return result;
}

function sweep(pair, runs) {
  const queueDepths = [1, 2, 3, 4, 8, 16, 32];
  const blockSizes = ['64K', '128K', '256K', '512K', '1M', '2M', '4M'];
  const byDepth = queueDepths.map((qd) => {
    const r = summarize(Array.from({ length: runs }, () => devmove(pair, [`--queue-depth=${qd}`])), pair.bytes);
    log(`${pair.kind} sweep qd=${qd}: ${r.gbPerSecond.median.toFixed(2)} GB/s`);
    return { queueDepth: qd, ...r };
  });
  const bySize = blockSizes.map((bs) => {
    const r = summarize(Array.from({ length: runs }, () => devmove(pair, [`--block-size=${bs}`])), pair.bytes);
    log(`${pair.kind} sweep bs=${bs}: ${r.gbPerSecond.median.toFixed(2)} GB/s`);
    return { blockSize: bs, ...r };
  });
  return { byDepth, bySize };
}

function ablation(pair, runs) {
  const variants = [
    ['default', []],
    ['no fixed buffers', ['--no-fixed-buffers']],
    ['no fixed files', ['--no-fixed-files']],
    ['no read→write links', ['--no-link']],
    ['no batching', ['--no-batch']],
    ['SQPOLL', ['--sqpoll']],
  ];
  const samples = new Map(variants.map(([name]) => [name, []]));
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? variants : [...variants].reverse();
    for (const [name, flags] of order) samples.get(name).push(devmove(pair, flags));
  }
  return variants.map(([name, flags]) => {
    const r = summarize(samples.get(name), pair.bytes);
    log(`${pair.kind} ablation ${name}: ${r.gbPerSecond.median.toFixed(2)} GB/s, ${r.cpuSecondsPerGiB.toFixed(3)} CPU s/GiB`);
    return { variant: name, flags: flags.join(' '), ...r };
  });
}

/**
 * Peak RSS of copies of growing size (default N and 4N bytes): the ring bounds memory, not the
 * copy size. One pair at a time (made, measured `runs` times, torn down), so the largest size
 * needs only its own two images.
 */
function rssCheck(kind, sizes, runs) {
  const bySize = [];
  for (const bytes of sizes) {
    const pair = makePair(kind, bytes);
    const samples = [];
    for (let i = 0; i < runs; i++) samples.push(devmove(pair));
    cleanupAll(); // the rss check runs after every other experiment: nothing else is attached
    const rss = samples.map((r) => r.peakRssBytes);
    bySize.push({
      bytes,
      devices: { src: pair.src, dst: pair.dst, queueReset: pair.queueReset },
      runs,
      peakRssBytes: { median: median(rss), min: Math.min(...rss), max: Math.max(...rss), all: rss },
      gbPerSecond: median(samples.map((r) => bytes / r.seconds)) / 1e9,
    });
    log(`rss ${kind} ${bytes / GiB} GiB: peak RSS ${rss.map((b) => (b / MiB).toFixed(1)).join(', ')} MiB`);
  }
  const first = bySize[0];
  const last = bySize.at(-1);
  return {
    pair: kind,
    bySize,
    // Largest copy vs smallest: medians, and the worst case (largest max ÷ smallest min).
    ratio: last.peakRssBytes.median / first.peakRssBytes.median,
    worstRatio: last.peakRssBytes.max / first.peakRssBytes.min,
  };
}

// ---------- cold start ----------

/** Wall time of one process started right after `sync; echo 3 > drop_caches`. */
function coldRun(cmd, args, env) {
  dropCaches();
  const spawnedAt = performance.timeOrigin + performance.now();
  const t0 = process.hrtime.bigint();
  const run = spawnSync(cmd, args, { encoding: 'utf8', env, maxBuffer: 64 * MiB });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (run.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${run.status ?? run.signal}): ${run.stderr}`);
  return { seconds, spawnedAt, stdout: run.stdout, stderr: run.stderr };
}

/** Phases of one hooked devmove copy (ms): see bench/cold-hook.js. */
function phases(run) {
  const line = run.stderr.split('\n').find((l) => l.startsWith('DEVMOVE_COLD_HOOK '));
  if (!line) throw new Error(`no DEVMOVE_COLD_HOOK line in: ${run.stderr.slice(0, 300)}`);
  const h = JSON.parse(line.slice('DEVMOVE_COLD_HOOK '.length));
  const wallMs = run.seconds * 1000;
  const execToOrigin = h.timeOrigin - run.spawnedAt;
  return {
    wallMs,
    // fork/exec, dynamic linking and paging in the node binary, up to Node's time origin
    execToNodeStartMs: execToOrigin,
    // Node's per-process set-up: OpenSSL (and NODE_EXTRA_CA_CERTS), ICU, the V8 platform
    nodeProcessInitMs: h.v8Start,
    // V8 isolate and Node's bootstrap (from its built-in snapshot)
    nodeBootstrapMs: h.bootstrapComplete - h.v8Start,
    // ours: loading dist/*.js, parsing the operands, planning, safety checks, loading the addon
    devmoveJsToEngineStartMs: h.jobCreated - h.bootstrapComplete,
    // the CPU this process spent over that stretch (user + system; robust against neighbours)
    devmoveJsToEngineStartCpuMs: h.jobCreatedCpuMs - h.preloadCpuMs,
    // of which: reading and compiling the modules cli/main.js requires (copy, devices, safety, …)
    ourModuleLoadMs: h.ourModuleLoadMs,
    // the checks before the first write (stat, sysfs, mountinfo)
    safetyChecksMs: h.safetyChecksMs,
    // dlopen of build/Release/devmove.node
    addonLoadMs: h.addonLoadMs,
    // the rest: cli/main.js itself, the operands, the plan
    otherJsMs: h.jobCreated - h.bootstrapComplete - h.ourModuleLoadMs - h.safetyChecksMs - h.addonLoadMs,
    engineMs: h.jobDone - h.jobCreated,
    engineReportedMs: h.engineMs,
    engineDoneToExitMs: h.exitEvent - h.jobDone,
    // process teardown until the parent sees the exit
    exitMs: wallMs - (execToOrigin + h.exitEvent),
    ourModules: h.ourModules,
  };
}

/**
 * Where a devmove process's fixed cost goes when it starts cold (the protocol drops caches before
 * every timed run): `node -e 0`, `devmove --version` and a real copy on the pair, each with the
 * environment as inherited and (when it sets NODE_EXTRA_CA_CERTS) without it, each with the node
 * binary shared with this benchmark process (its pages stay resident: they are mapped here) and
 * with a private copy of the binary on disk (paged in from disk, as for the first Node process
 * after boot). Then the same copies under bench/cold-hook.js for a per-phase breakdown.
 */
function coldStart(pair, runs, baseline) {
  const dir = fs.mkdtempSync(path.join('/var/tmp', 'devmove-bench-node-'));
  atCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  const privateNode = path.join(dir, 'node');
  fs.copyFileSync(process.execPath, privateNode);
  fs.chmodSync(privateNode, 0o755);
  const envs = inheritedEnvIsClean() ? [['inherited env', process.env]] : [['inherited env', process.env], ['without NODE_EXTRA_CA_CERTS', cleanEnv()]];
  const binaries = [['shared node', process.execPath], ['private node', privateNode]];
  // --baseline: the same processes from another checkout, in the same rounds (before/after).
  const clis = [['', CLI], ...(baseline ? [[', baseline', path.join(baseline, 'dist', 'cli', 'main.js')]] : [])];
  const whats = [['node -e 0', ['-e', '0']]];
  for (const [suffix, cli] of clis) {
    const copyArgs = [cli, `if=${pair.src}`, `of=${pair.dst}`, 'status=none', '--json'];
    whats.push([`devmove --version${suffix}`, [cli, '--version']], [`devmove copy${suffix}`, copyArgs], [`devmove copy (hooked${suffix})`, ['-r', COLD_HOOK, ...copyArgs]]);
  }
  const variants = [];
  for (const [what, args] of whats) for (const [envName, env] of envs) for (const [binName, bin] of binaries) variants.push({ what, envName, binName, bin, args, env, samples: [] });
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) {
      const run = coldRun(v.bin, v.args, v.env);
      if (v.what.startsWith('devmove copy')) {
        verify(pair);
        run.engineSeconds = engineSeconds(run.stdout);
      }
      v.samples.push(run);
    }
    log(`cold start round ${i + 1}/${runs} done`);
  }
  return variants.map((v) => {
    const out = { what: v.what, env: v.envName, binary: v.binName, runs: v.samples.length, wallSeconds: median(v.samples.map((r) => r.seconds)), all: v.samples.map((r) => r.seconds) };
    if (v.samples[0].engineSeconds !== undefined) {
      out.engineSeconds = median(v.samples.map((r) => r.engineSeconds));
      out.outsideEngineSeconds = median(v.samples.map((r) => r.seconds - r.engineSeconds));
    }
    if (v.what.includes('(hooked')) {
      const ps = v.samples.map(phases);
      out.phasesMs = Object.fromEntries(Object.keys(ps[0]).filter((k) => k !== 'ourModules').map((k) => [k, median(ps.map((p) => p[k]))]));
      out.ourModulesMs = Object.fromEntries(Object.keys(ps[0].ourModules).map((k) => [k, median(ps.map((p) => p.ourModules[k] ?? 0))]));
    }
    log(`cold ${v.what}, ${v.envName}, ${v.binName}: ${(out.wallSeconds * 1000).toFixed(0)} ms${out.outsideEngineSeconds !== undefined ? ` (${(out.outsideEngineSeconds * 1000).toFixed(0)} ms outside the engine)` : ''}`);
    return out;
  });
}

// ---------- report ----------

function markdown(report) {
  const lines = [];
  lines.push(`Benchmark ${report.date} on ${report.machine} (${report.sizeBytes / GiB} GiB per device, ${report.runs} runs each, medians):`);
  lines.push('');
  if (report.compare) {
    lines.push('| pair | fio limit (read ∥ write) | devmove | ÷ limit | engine alone ÷ limit | dd direct | dd conv=fsync | speed-up vs dd direct | vs dd fsync | CPU s/GiB devmove / dd direct | reqs/GiB src, dst | peak RSS |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const [kind, c] of Object.entries(report.compare)) {
      const d = c.devmove;
      lines.push(
        `| ${kind} | ${fmt(c.limit.gbPerSecond.median)} GB/s | ${fmt(d.gbPerSecond.median)} GB/s (${fmt(d.gbPerSecond.min)}–${fmt(d.gbPerSecond.max)}) | ${fmt(c.ratios.devmoveVsLimit)} | ${fmt(c.ratios.engineVsLimit)} | ` +
          `${fmt(c.ddDirect.gbPerSecond.median)} GB/s | ${fmt(c.ddBuffered.gbPerSecond.median)} GB/s | ${fmt(c.ratios.speedupVsDdDirect)}× | ${fmt(c.ratios.speedupVsDdBuffered)}× | ` +
          `${fmt(d.cpuSecondsPerGiB, 3)} / ${fmt(c.ddDirect.cpuSecondsPerGiB, 3)} | ${fmt(d.sourceReadsPerGiB, 0)}, ${fmt(d.targetWritesPerGiB, 0)} | ${fmt(d.peakRssBytes / MiB, 0)} MiB |`,
      );
    }
    for (const [kind, c] of Object.entries(report.compare)) {
      const d = c.devmove;
      let line = `${kind}: ${fmt(d.outsideEngineSeconds * 1000, 0)} ms of devmove's ${fmt(d.seconds * 1000, 0)} ms wall (medians) are outside the engine.`;
      if (c.devmoveCleanEnv) {
        line += ` Without ${c.devmoveCleanEnv.envRemoved.join(', ')}: ${fmt(c.devmoveCleanEnv.gbPerSecond.median)} GB/s, ${fmt(c.ratios.devmoveCleanEnvVsLimit)} × limit, ${fmt(c.devmoveCleanEnv.outsideEngineSeconds * 1000, 0)} ms outside the engine.`;
      }
      lines.push('');
      lines.push(line);
    }
  }
  if (report.ablation) {
    lines.push('');
    lines.push('| engine variant | ' + Object.keys(report.ablation).map((k) => `${k} GB/s | ${k} CPU s/GiB`).join(' | ') + ' |');
    lines.push('|---|' + Object.keys(report.ablation).map(() => '---|---|').join('') );
    const kinds = Object.keys(report.ablation);
    for (let i = 0; i < report.ablation[kinds[0]].length; i++) {
      const name = report.ablation[kinds[0]][i].variant;
      lines.push(`| ${name} | ` + kinds.map((k) => `${fmt(report.ablation[k][i].gbPerSecond.median)} | ${fmt(report.ablation[k][i].cpuSecondsPerGiB, 3)}`).join(' | ') + ' |');
    }
  }
  if (report.engines) {
    lines.push('');
    lines.push('| pair | I/O driver | GB/s (min–max) | engine alone GB/s | CPU s/GiB |');
    lines.push('|---|---|---|---|---|');
    for (const [kind, e] of Object.entries(report.engines)) {
      for (const [name, r] of Object.entries(e)) {
        if (name === 'ratios') continue;
        lines.push(`| ${kind} | ${name} | ${fmt(r.gbPerSecond.median)} (${fmt(r.gbPerSecond.min)}–${fmt(r.gbPerSecond.max)}) | ${fmt(r.engineGbPerSecond.median)} | ${fmt(r.cpuSecondsPerGiB, 3)} |`);
      }
      lines.push('');
      lines.push(`${kind}: ${Object.entries(e.ratios).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`);
    }
  }
  if (report.pipes) {
    lines.push('');
    lines.push('| pair | pipeline | GB/s (min–max) |');
    lines.push('|---|---|---|');
    for (const [kind, p] of Object.entries(report.pipes)) {
      for (const [name, r] of Object.entries(p)) {
        if (name !== 'ratios') lines.push(`| ${kind} | ${name.replaceAll('|', '\\|')} | ${fmt(r.gbPerSecond.median)} (${fmt(r.gbPerSecond.min)}–${fmt(r.gbPerSecond.max)}) |`);
      }
      lines.push('');
      lines.push(`${kind}: ${Object.entries(p.ratios).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`);
    }
  }
  if (report.rss) {
    lines.push('');
    const sizes = report.rss.bySize.map((r) => `${fmt(r.peakRssBytes.median / MiB, 1)} MiB (${fmt(r.peakRssBytes.min / MiB, 1)}–${fmt(r.peakRssBytes.max / MiB, 1)}) copying ${r.bytes / GiB} GiB`);
    lines.push(`Peak RSS on the ${report.rss.pair} pair, median of ${report.rss.bySize[0].runs}: ${sizes.join(', ')}; largest ÷ smallest ${fmt(report.rss.ratio, 3)} (worst case ${fmt(report.rss.worstRatio, 3)}).`);
  }
  if (report.cold) {
    for (const [kind, rows] of Object.entries(report.cold)) {
      lines.push('');
      lines.push(`Cold start (${kind} pair, caches dropped before each run, medians of ${rows[0].runs}; ms):`);
      lines.push('');
      lines.push('| process | environment | node binary | wall | outside the engine |');
      lines.push('|---|---|---|---|---|');
      for (const r of rows.filter((x) => !x.phasesMs)) {
        lines.push(`| ${r.what} | ${r.env} | ${r.binary} | ${fmt(r.wallSeconds * 1000, 0)} | ${r.outsideEngineSeconds !== undefined ? fmt(r.outsideEngineSeconds * 1000, 0) : ''} |`);
      }
      const hooked = rows.filter((x) => x.phasesMs);
      const keys = Object.keys(hooked[0].phasesMs);
      lines.push('');
      lines.push('| phase of a hooked copy (ms) | ' + hooked.map((r) => `${r.what.includes('baseline') ? 'baseline: ' : ''}${r.env}, ${r.binary}`).join(' | ') + ' |');
      lines.push('|---|' + hooked.map(() => '---|').join(''));
      for (const k of keys) lines.push(`| ${k} | ` + hooked.map((r) => fmt(r.phasesMs[k], 1)).join(' | ') + ' |');
    }
  }
  return lines.join('\n') + '\n';
}

function charts(report, outDir, tag) {
  const files = [];
  const named = (file) => (tag ? file.replace(/\.svg$/, `-${tag}.svg`) : file);
  if (report.compare) {
    const groups = Object.entries(report.compare).map(([kind, c]) => ({
      label: `${kind} pair`,
      bars: [
        { label: 'fio limit', value: c.limit.gbPerSecond.median },
        { label: 'devmove', value: c.devmove.gbPerSecond.median },
        { label: 'dd direct', value: c.ddDirect.gbPerSecond.median },
        { label: 'dd conv=fsync', value: c.ddBuffered.gbPerSecond.median },
      ],
    }));
    const file = path.join(outDir, named('compare.svg'));
    fs.writeFileSync(file, renderBars({ title: `Copy throughput, ${report.sizeBytes / GiB} GiB, median of ${report.runs} (${report.date})`, unit: 'GB/s', groups }));
    files.push(file);
  }
  if (report.sweep) {
    const kinds = Object.keys(report.sweep);
    // One line chart per sweep dimension: a line per pair, a dashed line for its fio limit.
    const sweepChart = (name, title, xLabel, rowsKey, xKey) => {
      const file = path.join(outDir, named(name));
      fs.writeFileSync(
        file,
        renderLines({
          title,
          xLabel,
          yLabel: 'GB/s',
          xs: report.sweep[kinds[0]][rowsKey].map((r) => r[xKey]),
          series: kinds.map((k) => ({ label: `${k} pair`, ys: report.sweep[k][rowsKey].map((r) => r.gbPerSecond.median) })),
          limits: kinds.map((k) => ({ label: `${k} fio limit`, y: report.compare?.[k]?.limit.gbPerSecond.median })).filter((l) => l.y),
        }),
      );
      files.push(file);
    };
    sweepChart('sweep-queue-depth.svg', 'devmove throughput vs queue depth (512 KiB buffers)', 'buffers in flight (queue depth)', 'byDepth', 'queueDepth');
    sweepChart('sweep-block-size.svg', 'devmove throughput vs block size (default queue depth)', 'block size', 'bySize', 'blockSize');
  }
  return files;
}

// ---------- main ----------

/** The commit measured, with "+dirty" when the work tree differs from it. */
function gitDescribe() {
  let gitPath;
  try {
    gitPath = tool('git');
  } catch {
    return undefined;
  }
  const git = (args) => spawnSync(gitPath, ['-C', ROOT, ...args], { encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  if (head.status !== 0) return undefined;
  const dirty = git(['status', '--porcelain', '--untracked-files=no']).stdout.trim() !== '';
  return `${head.stdout.trim()}${dirty ? '+dirty' : ''}`;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  preflight();
  const date = new Date().toISOString().slice(0, 10);
  const report = {
    date,
    machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / GiB)} GiB, Linux ${os.release()}`,
    node: process.version,
    commit: gitDescribe(),
    sizeBytes: args.sizeBytes,
    runs: args.runs,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
  };
  const pairExperiments = ['compare', 'sweep', 'ablation', 'cold', 'engines', 'pipes'].filter((e) => args.only.includes(e));
  for (const kind of pairExperiments.length ? args.pairs : []) {
    const pair = makePair(kind, args.sizeBytes);
    if (args.only.includes('compare')) (report.compare ??= {})[kind] = compare(pair, args.runs);
    if (args.only.includes('sweep')) (report.sweep ??= {})[kind] = sweep(pair, args.runs);
    if (args.only.includes('ablation')) (report.ablation ??= {})[kind] = ablation(pair, args.runs);
    if (args.only.includes('cold')) (report.cold ??= {})[kind] = coldStart(pair, Math.max(args.runs, 5), args.baseline);
    if (args.only.includes('engines')) (report.engines ??= {})[kind] = engines(pair, args.runs, args.baseline);
    if (args.only.includes('pipes')) (report.pipes ??= {})[kind] = pipes(pair, args.runs);
    cleanupAll(); // free this pair's memory/disk before the next
  }
  if (args.only.includes('rss')) report.rss = rssCheck(args.rssPair, args.rssSizeBytes, args.runs);
  fs.mkdirSync(args.out, { recursive: true });
  const stem = `bench-${date}${args.tag ? `-${args.tag}` : ''}`;
  const json = path.join(args.out, `${stem}.json`);
  fs.writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  const md = markdown(report);
  fs.writeFileSync(path.join(args.out, `${stem}.md`), md);
  const svgs = charts(report, args.out, args.tag);
  process.stdout.write(md);
  log(`wrote ${[json, ...svgs].join(', ')}`);
}

try {
  main();
} catch (e) {
  cleanupAll();
  process.stderr.write(`bench: ${e.message}\n`);
  process.exitCode = 1;
}
