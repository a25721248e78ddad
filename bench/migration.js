#!/usr/bin/env node
// Migration-job benchmark (issue "Migration jobs"), following ../../shared/BENCH_PROTOCOL.md: it makes
// its own loop devices (--direct-io=on over /dev/shm = ram pair, over /var/tmp = disk pair), drops caches
// before timed runs, alternates the order of peers, takes medians, and removes everything it attached or
// created on exit, failure or Ctrl-C.
//   fanout      1 source → 2 targets vs → 1 target (ram): GB/s, ratio (target ≥ 0.8), CPU s/GiB
//   rate        --rate pacing: bytes per exact 1 s interval, J = |real − expected| / expected (target mean ≤ 1 %)
//   background  fio 4k random-read p99 on the SOURCE: idle / under a default copy / under --background (≤ 2× idle)
//   zeros       ~90 %-zero source: --zero-blocks=write vs --target-is-zero vs --zero-blocks=discard (cmp-verified)
//
//   sudo node bench/migration.js [--size 2G] [--runs 3] [--only fanout,rate,background,zeros] [--out bench/results]
//        [--rate 200M] [--fio-seconds 10] [--background-pairs ram,disk]
'use strict';

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const L = require('./lib');
const { GiB, MiB, log, median, mean, fmt } = L;

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const EXPERIMENTS = ['fanout', 'rate', 'background', 'zeros'];
const RATE_RUN_SECONDS = 12;
const ZERO_BLOCK = 512 * 1024;

// ---------- arguments ----------

function parseArgs(argv) {
  const args = {
    size: '2G', runs: 3, only: EXPERIMENTS, out: path.join(__dirname, 'results'),
    rate: '200M', fioSeconds: 10, backgroundPairs: ['ram', 'disk'],
  };
  for (let i = 0; i < argv.length; i++) {
    const [key, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (key === '--size') args.size = value();
    else if (key === '--runs') args.runs = Number(value());
    else if (key === '--only') args.only = value().split(',');
    else if (key === '--out') args.out = value();
    else if (key === '--rate') args.rate = value();
    else if (key === '--fio-seconds') args.fioSeconds = Number(value());
    else if (key === '--background-pairs') args.backgroundPairs = value().split(',');
    else if (key === '--help' || key === '-h') {
      process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 14).join('\n') + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${argv[i]}`);
  }
  args.sizeBytes = L.parseSize(args.size);
  args.rateBytes = L.parseSize(args.rate);
  if (args.sizeBytes % ZERO_BLOCK) throw new Error('--size must be a multiple of 512K');
  if (!Number.isInteger(args.runs) || args.runs < 1) throw new Error('--runs must be a positive integer');
  if (!(args.fioSeconds >= 3)) throw new Error('--fio-seconds must be at least 3');
  for (const x of args.only) if (!EXPERIMENTS.includes(x)) throw new Error(`unknown experiment ${x}: use ${EXPERIMENTS.join(',')}`);
  for (const p of args.backgroundPairs) if (!['ram', 'disk'].includes(p)) throw new Error(`unknown pair ${p}: use ram and/or disk`);
  return args;
}

function preflight(args) {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root: it attaches loop devices and drops caches');
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: build the TypeScript first (npx tsc -p .)`);
  const missing = [];
  if (!L.have('fio')) missing.push('fio (Debian package fio)');
  if (!L.have('/usr/bin/time', ['--version'])) missing.push('GNU time (Debian package time)');
  if (!L.have('losetup')) missing.push('losetup (Debian package mount)');
  if (!L.have('cmp')) missing.push('cmp (Debian package diffutils)');
  if (missing.length) throw new Error(`missing tools; install them first:\n  ${missing.join('\n  ')}`);
  // At most three 2 GiB images live in /dev/shm at once (source + 2 targets, or zero-heavy source + target + source).
  const shmNeed = 3 * args.sizeBytes + GiB;
  if (L.freeBytes('/dev/shm') < shmNeed) throw new Error(`/dev/shm needs ${fmt(shmNeed / GiB, 1)} GiB free`);
  if (args.only.includes('background') && args.backgroundPairs.includes('disk') && L.freeBytes('/var/tmp') < 2 * args.sizeBytes + GiB) {
    throw new Error(`/var/tmp needs ${fmt((2 * args.sizeBytes + GiB) / GiB, 1)} GiB free for the disk pair`);
  }
}

// ---------- devices (created lazily, released as soon as no experiment needs them) ----------

class Pool {
  constructor(kind, bytes) {
    this.kind = kind;
    this.bytes = bytes;
    this.base = kind === 'ram' ? '/dev/shm' : '/var/tmp';
    this.devices = new Map();
    this.scratch = undefined;
  }
  /** A loop device over a fresh image named `name`, filled once by `fill(file)`. */
  get(name, fill) {
    if (this.devices.has(name)) return this.devices.get(name).dev;
    this.scratch ??= L.scratchDir(this.base);
    const image = path.join(this.scratch.dir, `${name}.img`);
    const t0 = Date.now();
    fill(image);
    const { dev, detach } = L.attach(image);
    this.devices.set(name, { dev, image, detach });
    log(`${this.kind}: ${name} = ${dev} over ${image} (${fmt(this.bytes / GiB, 2)} GiB, prepared in ${fmt((Date.now() - t0) / 1000, 1)} s)`);
    return dev;
  }
  random(name) {
    return this.get(name, (f) => L.writeImage(f, this.bytes, 'random'));
  }
  zeroed(name) {
    return this.get(name, (f) => L.writeImage(f, this.bytes, 'zero')); // pre-written: tmpfs allocates on first write
  }
  release(name) {
    const d = this.devices.get(name);
    if (!d) return;
    this.devices.delete(name);
    d.detach();
    fs.rmSync(d.image, { force: true });
  }
  releaseAll() {
    for (const name of [...this.devices.keys()]) this.release(name);
    this.scratch?.remove();
    this.scratch = undefined;
  }
}

// ---------- helpers ----------

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves at hrtime `targetNs` (bigint): a timer to ~2 ms before, then a short spin. */
async function waitUntil(targetNs) {
  for (;;) {
    const leftMs = Number(targetNs - process.hrtime.bigint()) / 1e6;
    if (leftMs <= 0) return;
    if (leftMs > 3) await sleep(leftMs - 2);
    else {
      while (process.hrtime.bigint() < targetNs);
      return;
    }
  }
}

function devmoveCli(args, devices) {
  const m = L.timed(process.execPath, [CLI, ...args, '--json', 'status=none'], devices);
  const lines = m.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const result = lines.filter((l) => l.type === 'result').pop();
  if (!result) throw new Error(`devmove ${args.join(' ')} printed no result`);
  return { ...m, result };
}

function loadLibrary() {
  return require(path.join(ROOT, 'dist', 'index.js'));
}

// ---------- 1. fan-out ----------

function fanout(ram, runs) {
  const size = ram.bytes;
  const src = ram.random('source');
  const t1 = ram.zeroed('target1');
  const t2 = ram.zeroed('target2');
  // single and fanout are judged; singleNoLink only explains the gap: single-target copies chain each
  // read to its write (IOSQE_IO_LINK), fan-out cannot.
  const variants = {
    single: { targets: [t1], flags: [] },
    singleNoLink: { targets: [t1], flags: ['--no-link'], diagnostic: 'single target without read→write links (as fan-out runs)' },
    fanout: { targets: [t1, t2], flags: [] },
  };
  const names = Object.keys(variants);
  const samples = Object.fromEntries(names.map((n) => [n, []]));
  const limits = { single: [], fanout: [] };
  for (let i = 0; i < runs; i++) {
    // fio's limit for each shape (read ∥ write, read ∥ write ∥ write) runs next to the copies it bounds.
    const steps = ['limit:single', 'single', 'singleNoLink', 'limit:fanout', 'fanout'];
    const order = i % 2 === 0 ? steps : [...steps].reverse();
    for (const step of order) {
      if (step.startsWith('limit:')) {
        const name = step.slice(6);
        const f = L.fioLimit(src, variants[name].targets, size);
        limits[name].push(f);
        log(`fanout run ${i + 1}/${runs}: fio limit ${name} ${fmt(f.bytesPerSecond / 1e9)} GB/s (read ${fmt(f.readBytesPerSecond / 1e9)}, write ${f.writeBytesPerSecond.map((w) => fmt(w / 1e9)).join(' + ')})`);
        continue;
      }
      const name = step;
      const { targets, flags } = variants[name];
      // Scribble over the targets first, so the cmp afterwards proves this run wrote every byte.
      const pattern = 0x11 + ((i * steps.length + order.indexOf(name)) % 200);
      for (const t of targets) L.fillDevice(t, size, pattern);
      const p0 = L.pressure();
      const m = devmoveCli([`if=${src}`, ...targets.map((t) => `of=${t}`), ...flags], [src, ...targets]);
      m.cpuPressure = (L.pressure().cpuUs - p0.cpuUs) / 1e6 / m.seconds; // share of the wall time some task waited for a CPU
      for (const t of targets) L.cmpEqual(src, t, size);
      samples[name].push(m);
      log(`fanout run ${i + 1}/${runs}: ${name} ${fmt(size / m.seconds / 1e9)} GB/s wall, ${fmt(size / m.result.seconds / 1e9)} GB/s engine, ${fmt(m.cpuSeconds / (size / GiB), 3)} CPU s/GiB, CPU pressure ${fmt(m.cpuPressure * 100, 0)} %`);
    }
  }
  const summary = (name) => {
    const ms = samples[name];
    return {
      command: `devmove if=SRC ${variants[name].targets.map((_, i) => `of=T${i + 1}`).join(' ')} ${variants[name].flags.join(' ')}`.trim(),
      diagnostic: variants[name].diagnostic,
      runs: ms.length,
      gbPerSecond: median(ms.map((m) => size / m.seconds / 1e9)),
      gbPerSecondRuns: ms.map((m) => size / m.seconds / 1e9),
      engineGbPerSecond: median(ms.map((m) => size / m.result.seconds / 1e9)),
      seconds: median(ms.map((m) => m.seconds)),
      cpuSecondsPerGiB: median(ms.map((m) => m.cpuSeconds)) / (size / GiB),
      peakRssBytes: Math.max(...ms.map((m) => m.peakRssBytes)),
      sourceReadsPerGiB: median(ms.map((m) => m.requests[0].reads)) / (size / GiB),
      targetWritesPerGiB: median(ms.map((m) => m.requests[1].writes)) / (size / GiB),
      linkReadWrite: ms[0].result.engine.linkReadWrite,
      queueDepth: ms[0].result.queueDepth,
      cpuPressureRuns: ms.map((m) => m.cpuPressure),
    };
  };
  const v = Object.fromEntries(names.map((n) => [n, summary(n)]));
  for (const name of ['single', 'fanout']) {
    v[name].limitGbPerSecond = median(limits[name].map((f) => f.bytesPerSecond)) / 1e9;
    v[name].limitRuns = limits[name].map((f) => ({ read: f.readBytesPerSecond / 1e9, write: f.writeBytesPerSecond.map((w) => w / 1e9) }));
    v[name].vsLimit = v[name].gbPerSecond / v[name].limitGbPerSecond;
  }
  // Per-round ratios (both copies in the same round, a few seconds apart), then their median.
  const pairRatios = samples.single.map((s, i) => s.seconds / samples.fanout[i].seconds);
  const ratio = v.fanout.gbPerSecond / v.single.gbPerSecond;
  return {
    sizeBytes: size,
    command: 'devmove if=SRC of=T1 [of=T2] [flags] --json status=none (CLI, under /usr/bin/time, caches dropped, targets scribbled before and cmp-verified after every run)',
    ...v,
    ratio,
    ratioPerRun: pairRatios,
    ratioMedianOfRuns: median(pairRatios),
    engineRatio: v.fanout.engineGbPerSecond / v.single.engineGbPerSecond,
    ratioVsSingleNoLink: v.fanout.gbPerSecond / v.singleNoLink.gbPerSecond,
    limitRatio: v.fanout.limitGbPerSecond / v.single.limitGbPerSecond,
    cpuRatio: v.fanout.cpuSecondsPerGiB / v.single.cpuSecondsPerGiB,
    target: 0.8,
    met: ratio >= 0.8,
  };
}

// ---------- 2. rate jitter ----------

/**
 * Runs one paced copy in-process and samples job.progress.bytesDone at exact 1 s boundaries from the start.
 * changes: [{ after: k, rate }] — setRate(rate) right after the k-th sample.
 */
async function pacedRun(lib, { source, target, rate, length, changes = [] }) {
  L.dropCaches();
  const t0 = process.hrtime.bigint();
  const job = lib.copy({ source, target, rate, length });
  let settled = false;
  job.promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  const samples = [{ k: 0, t: 0, bytes: 0, rate, finished: false, ...L.pressure() }];
  let rateNow = rate;
  for (let k = 1; ; k++) {
    await waitUntil(t0 + BigInt(k) * 1_000_000_000n);
    const now = process.hrtime.bigint();
    const bytes = job.progress.bytesDone;
    const finished = settled || bytes >= length;
    for (const c of changes) {
      if (c.after === k) {
        job.setRate(c.rate);
        rateNow = c.rate;
      }
    }
    // A sample's rate is the cap in force from it on, i.e. during the next interval.
    samples.push({ k, t: Number(now - t0) / 1e9, bytes, rate: rateNow, finished, ...L.pressure() });
    if (finished) break;
    if (k > 600) throw new Error('paced copy did not finish in 600 s');
  }
  const result = await job;
  const intervals = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const expected = a.rate * (b.t - a.t); // the rate in force during the interval × its measured length
    const real = b.bytes - a.bytes;
    intervals.push({
      second: i,
      startSeconds: a.t,
      seconds: b.t - a.t,
      rate: a.rate,
      bytes: real,
      expectedBytes: expected,
      J: (Math.abs(real - expected) / expected) * 100,
      // Share of the interval some task on the machine waited for a CPU / for I/O (PSI 'some').
      cpuPressure: (b.cpuUs - a.cpuUs) / 1e6 / (b.t - a.t),
      ioPressure: (b.ioUs - a.ioUs) / 1e6 / (b.t - a.t),
      // The first interval holds the copy's start-up, the last one its end: both are partial.
      counted: i > 1 && !b.finished,
    });
  }
  return { rate, length, wallSeconds: result.seconds, bytesCopied: result.bytesCopied, resultRate: result.rate, intervals };
}

function jStats(intervals) {
  const js = intervals.map((x) => x.J);
  if (!js.length) return { seconds: 0, meanJ: NaN, maxJ: NaN };
  return { seconds: js.length, meanJ: mean(js), maxJ: Math.max(...js), medianJ: median(js) };
}

async function rateJitter(ram, args) {
  const lib = loadLibrary();
  const size = ram.bytes;
  const src = ram.random('source');
  const t1 = ram.zeroed('target1');
  let rate = args.rateBytes;
  let note;
  if (rate * RATE_RUN_SECONDS > size) {
    rate = Math.floor(size / RATE_RUN_SECONDS / MiB) * MiB;
    note = `--rate ${args.rate} would copy the ${fmt(size / GiB, 2)} GiB source in under ${RATE_RUN_SECONDS} s: rate lowered to ${rate / MiB} MiB/s`;
    log(note);
  }
  const length = rate * RATE_RUN_SECONDS;
  const steady = [];
  for (let i = 0; i < args.runs; i++) {
    const r = await pacedRun(lib, { source: src, target: t1, rate, length });
    const s = jStats(r.intervals.filter((x) => x.counted));
    steady.push({ ...r, ...s });
    log(`rate run ${i + 1}/${args.runs} at ${rate / MiB} MiB/s: mean J ${fmt(s.meanJ)} %, max J ${fmt(s.maxJ)} % over ${s.seconds} s; per second MiB: ${r.intervals.map((x) => fmt(x.bytes / MiB, 1)).join(' ')}; CPU pressure %: ${r.intervals.map((x) => fmt(x.cpuPressure * 100, 0)).join(' ')}`);
  }
  // Live change: R1 for 4 s, then setRate(R1/2) at the 4 s boundary, 8 s more.
  const r1 = rate;
  const r2 = Math.floor(rate / 2 / MiB) * MiB;
  const changeAfter = 4;
  const changeLength = r1 * changeAfter + r2 * 8;
  const ch = await pacedRun(lib, { source: src, target: t1, rate: r1, length: changeLength, changes: [{ after: changeAfter, rate: r2 }] });
  const before = ch.intervals.filter((x) => x.counted && x.second <= changeAfter);
  const after = ch.intervals.filter((x) => x.counted && x.second > changeAfter);
  const change = {
    ...ch,
    rateBefore: r1,
    rateAfter: r2,
    changeAtSeconds: changeAfter,
    before: jStats(before),
    after: jStats(after),
    firstSecondAfterJ: after[0]?.J,
    afterExcludingFirst: jStats(after.slice(1)),
  };
  log(`rate change ${r1 / MiB} → ${r2 / MiB} MiB/s at ${changeAfter} s: J after: mean ${fmt(change.after.meanJ)} %, max ${fmt(change.after.maxJ)} % (first second ${fmt(change.firstSecondAfterJ)} %); per second MiB: ${ch.intervals.map((x) => fmt(x.bytes / MiB, 1)).join(' ')}; CPU pressure %: ${ch.intervals.map((x) => fmt(x.cpuPressure * 100, 0)).join(' ')}`);
  const meanJ = median(steady.map((s) => s.meanJ));
  return {
    method: 'in-process copy({source, target, rate, length}); job.progress.bytesDone read at exact 1 s boundaries from copy() (hrtime timer + spin); first and last (partial) seconds skipped; J = |bytes − rate × interval| / (rate × interval) × 100',
    note,
    rateBytesPerSecond: rate,
    lengthBytes: length,
    runs: steady.map(({ intervals, ...rest }) => ({ ...rest, intervals })),
    meanJ,
    maxJ: Math.max(...steady.map((s) => s.maxJ)),
    achievedOverCap: median(steady.map((s) => s.bytesCopied / s.wallSeconds / rate)),
    change,
    target: 1,
    met: meanJ <= 1,
  };
}

// ---------- 3. background mode vs foreground latency ----------

const running = new Set();

function runFio(dev, seconds) {
  return new Promise((resolve, reject) => {
    const args = [
      '--name=lat', `--filename=${dev}`, '--readonly', '--rw=randread', '--bs=4k', '--iodepth=1', '--direct=1',
      '--ioengine=io_uring', '--time_based', `--runtime=${seconds}`, '--percentile_list=50:90:99:99.9', '--output-format=json',
    ];
    const child = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const release = L.atCleanup(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      release();
      if (code !== 0) return reject(new Error(`fio failed (${code}): ${err}`));
      const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0].read;
      const p = job.clat_ns.percentile;
      resolve({
        iops: job.iops,
        ios: job.total_ios,
        clatMeanUs: job.clat_ns.mean / 1e3,
        p50Us: p['50.000000'] / 1e3,
        p90Us: p['90.000000'] / 1e3,
        p99Us: p['99.000000'] / 1e3,
        p999Us: p['99.900000'] / 1e3,
      });
    });
  });
}

/** Copies source → target over and over (each copy a full, durable job) until stop(). */
function startCopyLoop(lib, pair, background) {
  let stopping = false;
  let current;
  let doneBytes = 0;
  let copies = 0;
  const results = [];
  let error;
  const cancelAtExit = L.atCleanup(() => current?.cancel());
  const loop = (async () => {
    while (!stopping) {
      current = lib.copy({ source: pair.src, target: pair.dst, background });
      try {
        const r = await current;
        doneBytes += r.bytesCopied;
        copies++;
        results.push({ blockSize: r.blockSize, queueDepth: r.queueDepth });
      } catch (e) {
        if (stopping && e instanceof lib.CopyAbortError) doneBytes += e.bytesCopied ?? 0;
        else {
          error = e;
          stopping = true;
        }
      }
      current = undefined;
    }
  })();
  running.add(loop);
  return {
    bytes: () => doneBytes + (current ? current.progress.bytesDone : 0),
    async stop() {
      stopping = true;
      current?.cancel();
      await loop;
      running.delete(loop);
      cancelAtExit();
      if (error) throw error;
      return { copiesCompleted: copies, blockSize: results[0]?.blockSize, queueDepth: results[0]?.queueDepth };
    },
  };
}

async function latencyUnder(lib, pair, mode, seconds) {
  L.dropCaches();
  let loop;
  if (mode !== 'idle') {
    loop = startCopyLoop(lib, pair, mode === 'background');
    await sleep(1000); // let the copy reach steady state before fio starts
  }
  const b0 = loop?.bytes();
  const t0 = process.hrtime.bigint();
  const fio = await runFio(pair.src, seconds);
  const window = Number(process.hrtime.bigint() - t0) / 1e9;
  const b1 = loop?.bytes();
  const copy = loop ? await loop.stop() : undefined;
  return { ...fio, copyGbPerSecond: loop ? (b1 - b0) / window / 1e9 : undefined, copyBytes: loop ? b1 - b0 : undefined, windowSeconds: window, ...(copy ?? {}) };
}

async function backgroundLatency(pool, args) {
  const lib = loadLibrary();
  const pair = { kind: pool.kind, src: pool.random('source'), dst: pool.zeroed('target1') };
  const modes = ['idle', 'default', 'background'];
  const samples = Object.fromEntries(modes.map((m) => [m, []]));
  for (let i = 0; i < args.runs; i++) {
    const order = i % 2 === 0 ? modes : [...modes].reverse();
    for (const mode of order) {
      const r = await latencyUnder(lib, pair, mode, args.fioSeconds);
      samples[mode].push(r);
      log(`${pair.kind} latency run ${i + 1}/${args.runs} ${mode}: fio 4k randread p50 ${fmt(r.p50Us, 1)} µs, p99 ${fmt(r.p99Us, 1)} µs, ${fmt(r.iops, 0)} IOPS` +
        (r.copyGbPerSecond !== undefined ? `; copy ${fmt(r.copyGbPerSecond)} GB/s (${r.blockSize ?? '?'} B × ${r.queueDepth ?? '?'})` : ''));
    }
  }
  const summary = Object.fromEntries(modes.map((m) => {
    const s = samples[m];
    return [m, {
      p50Us: median(s.map((x) => x.p50Us)),
      p99Us: median(s.map((x) => x.p99Us)),
      p999Us: median(s.map((x) => x.p999Us)),
      iops: median(s.map((x) => x.iops)),
      p99UsRuns: s.map((x) => x.p99Us),
      copyGbPerSecond: m === 'idle' ? undefined : median(s.map((x) => x.copyGbPerSecond)),
      runs: s,
    }];
  }));
  // Ratios per run (each mode's run sits next to the idle one in time), then the median.
  const perRun = (m) => samples[m].map((x, i) => x.p99Us / samples.idle[i].p99Us);
  return {
    pair: pair.kind,
    fio: `fio --name=lat --filename=SRC --readonly --rw=randread --bs=4k --iodepth=1 --direct=1 --ioengine=io_uring --time_based --runtime=${args.fioSeconds}`,
    copy: 'in-process copy({source: SRC, target: DST [, background: true]}) repeated back to back from 1 s before fio starts until it ends',
    ...summary,
    p99RatioDefault: summary.default.p99Us / summary.idle.p99Us,
    p99RatioBackground: summary.background.p99Us / summary.idle.p99Us,
    p99RatioDefaultPerRun: perRun('default'),
    p99RatioBackgroundPerRun: perRun('background'),
    target: 2,
    met: summary.background.p99Us / summary.idle.p99Us <= 2,
  };
}

// ---------- 4. zero-heavy source ----------

/** ~90 % zero: in every run of ten 512 KiB blocks one, at a random place, holds random data. */
function writeZeroHeavy(file, bytes) {
  const blocks = bytes / ZERO_BLOCK;
  L.writeImage(file, bytes, 'zero');
  const fd = fs.openSync(file, 'r+');
  let dataBlocks = 0;
  try {
    const buf = Buffer.alloc(ZERO_BLOCK);
    for (let g = 0; g < blocks; g += 10) {
      const b = g + crypto.randomInt(Math.min(10, blocks - g));
      crypto.randomFillSync(buf);
      fs.writeSync(fd, buf, 0, ZERO_BLOCK, b * ZERO_BLOCK);
      dataBlocks++;
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { blocks, dataBlocks };
}

function zeroHeavy(ram, runs) {
  const size = ram.bytes;
  let layout;
  const src = ram.get('zero-heavy-source', (f) => (layout = writeZeroHeavy(f, size)));
  const dst = ram.zeroed('target1');
  const modes = {
    write: { flags: [], prefill: 0xa5, what: '--zero-blocks=write (default) on a target holding old non-zero data' },
    skip: { flags: ['--target-is-zero'], prefill: 0, what: '--target-is-zero (skip) on a freshly zeroed target' },
    discard: { flags: ['--zero-blocks=discard'], prefill: 0xa5, what: '--zero-blocks=discard on a target holding old non-zero data' },
  };
  const names = Object.keys(modes);
  const samples = Object.fromEntries(names.map((n) => [n, []]));
  const readLimits = [];
  for (let i = 0; i < runs; i++) {
    // The whole source is read in every mode: fio reading it alone bounds what skipping writes can gain.
    const steps = ['limit', ...names];
    const order = i % 2 === 0 ? steps : [...steps].reverse();
    for (const name of order) {
      if (name === 'limit') {
        const f = L.fioLimit(src, [], size);
        readLimits.push(f.readBytesPerSecond);
        log(`zeros run ${i + 1}/${runs}: fio read-only limit ${fmt(f.readBytesPerSecond / 1e9)} GB/s`);
        continue;
      }
      const m = modes[name];
      L.fillDevice(dst, size, m.prefill);
      const r = devmoveCli([`if=${src}`, `of=${dst}`, ...m.flags], [src, dst]);
      L.cmpEqual(src, dst, size);
      samples[name].push(r);
      log(`zeros run ${i + 1}/${runs}: ${name} ${fmt(size / r.seconds / 1e9)} GB/s wall, zero ${fmt(r.result.zero.bytes / MiB, 0)} MiB (skipped ${fmt(r.result.zero.skipped / MiB, 0)}, discarded ${fmt(r.result.zero.discarded / MiB, 0)}), ${r.requests[1].writes} target writes, cmp ok`);
    }
  }
  const out = {
    sizeBytes: size,
    layout: { ...layout, dataFraction: layout ? layout.dataBlocks / layout.blocks : undefined, blockBytes: ZERO_BLOCK },
    command: 'devmove if=ZSRC of=DST [--target-is-zero | --zero-blocks=discard] --json status=none (CLI under /usr/bin/time, caches dropped; target re-filled before and cmp-verified after every run)',
    readLimitGbPerSecond: median(readLimits) / 1e9,
    readLimitRuns: readLimits.map((x) => x / 1e9),
  };
  for (const name of names) {
    const s = samples[name];
    out[name] = {
      what: modes[name].what,
      gbPerSecond: median(s.map((x) => size / x.seconds / 1e9)),
      gbPerSecondRuns: s.map((x) => size / x.seconds / 1e9),
      engineGbPerSecond: median(s.map((x) => size / x.result.seconds / 1e9)),
      seconds: median(s.map((x) => x.seconds)),
      cpuSecondsPerGiB: median(s.map((x) => x.cpuSeconds)) / (size / GiB),
      targetWrites: median(s.map((x) => x.requests[1].writes)),
      zero: s[0].result.zero,
      zeroNote: s[0].result.target.zeroNote,
      discards: s[0].result.io.discards,
    };
  }
  for (const name of names) {
    out[name].speedupVsWrite = out.write.seconds / out[name].seconds;
    out[name].speedupVsWritePerRun = samples[name].map((x, i) => samples.write[i].seconds / x.seconds);
    out[name].vsReadLimit = out[name].gbPerSecond / out.readLimitGbPerSecond;
  }
  return out;
}

// ---------- report ----------

function markdown(report, args) {
  const L2 = [];
  const yes = (b) => (b ? '**met**' : '**missed**');
  L2.push(`# Migration jobs benchmark, ${report.date}`);
  L2.push('');
  L2.push(`Machine: ${report.machine}. ${fmt(report.sizeBytes / GiB, 2)} GiB per device, ${report.runs} runs per figure (medians, alternating order, caches dropped before each timed run). The machine is shared, so only ratios taken in the same run are judged.`);
  L2.push('');
  L2.push('Command:');
  L2.push('');
  L2.push('```');
  L2.push(report.command);
  L2.push('```');
  if (report.fanout) {
    const f = report.fanout;
    L2.push('');
    L2.push('## 1. Fan-out (ram: loop devices with --direct-io=on over /dev/shm)');
    L2.push('');
    L2.push('`devmove if=SRC of=T1` vs `devmove if=SRC of=T1 of=T2` (CLI, wall time incl. process start; targets scribbled before and cmp-verified after every run).');
    L2.push('');
    L2.push('| copy | GB/s (source bytes ÷ wall) | runs | engine GB/s | fio limit GB/s | ÷ limit | CPU s/GiB | peak RSS | CPU pressure during runs |');
    L2.push('|---|---|---|---|---|---|---|---|---|');
    for (const name of ['single', 'fanout', 'singleNoLink']) {
      const v = f[name];
      const label = `\`${v.command}\`${v.diagnostic ? ` (diagnostic: ${v.diagnostic})` : ''}`;
      L2.push(`| ${label} | ${fmt(v.gbPerSecond)} | ${v.gbPerSecondRuns.map((x) => fmt(x)).join(', ')} | ${fmt(v.engineGbPerSecond)} | ${fmt(v.limitGbPerSecond)} | ${fmt(v.vsLimit)} | ${fmt(v.cpuSecondsPerGiB, 3)} | ${fmt(v.peakRssBytes / MiB, 0)} MiB | ${v.cpuPressureRuns.map((x) => fmt(x * 100, 0) + ' %').join(', ')} |`);
    }
    L2.push('');
    L2.push(`Ratio 2 targets ÷ 1 target: **${fmt(f.ratio)}×** (per round: ${f.ratioPerRun.map((x) => fmt(x)).join(', ')}; engine-timed ${fmt(f.engineRatio)}×); CPU per GiB ${fmt(f.cpuRatio)}×. Fan-out ÷ single without links: ${fmt(f.ratioVsSingleNoLink)}×. fio's limit, read ∥ write ∥ write ÷ read ∥ write: ${fmt(f.limitRatio)}×. Target ≥ 0.8×: ${yes(f.met)}.`);
  }
  if (report.rate) {
    const r = report.rate;
    L2.push('');
    L2.push('## 2. Rate pacing jitter (ram)');
    L2.push('');
    L2.push(`In-process \`copy({rate})\` of ${fmt(r.lengthBytes / MiB, 0)} MiB at ${r.rateBytesPerSecond / MiB} MiB/s; \`job.progress.bytesDone\` sampled at exact 1 s boundaries; first and last (partial) seconds skipped; J = |real − expected| ÷ expected × 100 per second.${r.note ? ` (${r.note}.)` : ''}`);
    L2.push('');
    L2.push('| run | seconds counted | mean J | max J | MiB moved in each counted second | machine CPU pressure (PSI some) each second |');
    L2.push('|---|---|---|---|---|---|');
    const secs = (x, keep) => x.intervals.filter(keep);
    const mibs = (xs) => xs.map((y) => fmt(y.bytes / MiB, 1)).join(' ');
    const psis = (xs) => xs.map((y) => fmt(y.cpuPressure * 100, 0)).join(' ');
    r.runs.forEach((x, i) => {
      const xs = secs(x, (y) => y.counted);
      L2.push(`| ${i + 1} | ${x.seconds} | ${fmt(x.meanJ)} % | ${fmt(x.maxJ)} % | ${mibs(xs)} | ${psis(xs)} % |`);
    });
    const c = r.change;
    const pre = secs(c, (y) => y.counted && y.second <= c.changeAtSeconds);
    const post = secs(c, (y) => y.counted && y.second > c.changeAtSeconds);
    L2.push(`| live change ${c.rateBefore / MiB} → ${c.rateAfter / MiB} MiB/s at ${c.changeAtSeconds} s: before | ${c.before.seconds} | ${fmt(c.before.meanJ)} % | ${fmt(c.before.maxJ)} % | ${mibs(pre)} | ${psis(pre)} % |`);
    L2.push(`| live change: after | ${c.after.seconds} | ${fmt(c.after.meanJ)} % | ${fmt(c.after.maxJ)} % | ${mibs(post)} | ${psis(post)} % |`);
    L2.push('');
    L2.push(`Mean J (median over runs) **${fmt(r.meanJ)} %**, max J ${fmt(r.maxJ)} %; achieved ÷ cap over the whole copy ${fmt(r.achievedOverCap, 3)}. After the live change: mean J ${fmt(c.after.meanJ)} %, max ${fmt(c.after.maxJ)} % (first second after the change ${fmt(c.firstSecondAfterJ)} %). Target mean J ≤ 1 %: ${yes(r.met)}.`);
  }
  if (report.background) {
    L2.push('');
    L2.push('## 3. Background mode vs foreground latency');
    L2.push('');
    const b0 = Object.values(report.background)[0];
    L2.push(`\`${b0.fio}\` on the SOURCE device, idle, while default copies run (512 KiB × 8 in flight), and while \`background: true\` copies run (128 KiB × 2); copies repeated back to back over the whole fio run; p = fio completion latency (clat).`);
    L2.push('');
    L2.push('| pair | idle p50 / p99 | default copy p50 / p99 | background copy p50 / p99 | p99 ÷ idle default / background | copy GB/s default / background | target bg p99 ≤ 2× idle |');
    L2.push('|---|---|---|---|---|---|---|');
    for (const [kind, b] of Object.entries(report.background)) {
      L2.push(`| ${kind} | ${fmt(b.idle.p50Us, 1)} / ${fmt(b.idle.p99Us, 1)} µs | ${fmt(b.default.p50Us, 1)} / ${fmt(b.default.p99Us, 1)} µs | ${fmt(b.background.p50Us, 1)} / ${fmt(b.background.p99Us, 1)} µs | ${fmt(b.p99RatioDefault)}× / ${fmt(b.p99RatioBackground)}× | ${fmt(b.default.copyGbPerSecond)} / ${fmt(b.background.copyGbPerSecond)} | ${yes(b.met)} |`);
    }
    L2.push('');
    for (const [kind, b] of Object.entries(report.background)) {
      L2.push(`- ${kind}: p99 per run (µs) idle ${b.idle.p99UsRuns.map((x) => fmt(x, 1)).join(', ')}; default ${b.default.p99UsRuns.map((x) => fmt(x, 1)).join(', ')}; background ${b.background.p99UsRuns.map((x) => fmt(x, 1)).join(', ')}; fio IOPS idle/default/background ${fmt(b.idle.iops, 0)} / ${fmt(b.default.iops, 0)} / ${fmt(b.background.iops, 0)}.`);
    }
  }
  if (report.zeros) {
    const z = report.zeros;
    L2.push('');
    L2.push('## 4. Zero-heavy source (ram)');
    L2.push('');
    L2.push(`Source: ${fmt(z.sizeBytes / GiB, 2)} GiB, ${z.layout.dataBlocks} of ${z.layout.blocks} 512 KiB blocks random (one at a random place in every ten), the rest zero. Every result cmp-verified against the source.`);
    L2.push('');
    L2.push('| mode | GB/s (wall) | runs | engine GB/s | speed-up vs write | ÷ fio read-only limit | CPU s/GiB | target write requests | zero bytes skipped / discarded |');
    L2.push('|---|---|---|---|---|---|---|---|---|');
    for (const name of ['write', 'skip', 'discard']) {
      const m = z[name];
      L2.push(`| ${m.what} | ${fmt(m.gbPerSecond)} | ${m.gbPerSecondRuns.map((x) => fmt(x)).join(', ')} | ${fmt(m.engineGbPerSecond)} | ${fmt(m.speedupVsWrite)}× | ${fmt(m.vsReadLimit)} | ${fmt(m.cpuSecondsPerGiB, 3)} | ${fmt(m.targetWrites, 0)} | ${fmt(m.zero.skipped / MiB, 0)} / ${fmt(m.zero.discarded / MiB, 0)} MiB${m.zeroNote ? ` (${m.zeroNote})` : ''} |`);
    }
  }
  const notes = analysis(report);
  if (notes.length) {
    L2.push('');
    L2.push('## Targets: met or missed, and why');
    L2.push('');
    for (const n of notes) L2.push(`- ${n}`);
  }
  if (report.notes?.length) {
    L2.push('');
    L2.push('## Notes');
    L2.push('');
    for (const n of report.notes) L2.push(`- ${n}`);
  }
  return L2.join('\n') + '\n';
}

/** Data-driven reading of the figures (the numbers behind each verdict). */
function analysis(report) {
  const out = [];
  const f = report.fanout;
  if (f) {
    out.push(
      `Fan-out ≥ 0.8× single: ${f.met ? 'met' : 'missed'} at ${fmt(f.ratio)}× (per round ${f.ratioPerRun.map((x) => fmt(x)).join(', ')}). ` +
        `On the ram pair every target write is a memory copy done by that loop device's worker thread, so two targets cost ~1.5× the CPU work of one on a 2-core machine: ` +
        `fio itself, with no devmove involved, gets ${fmt(f.limitRatio)}× of its single-target limit when it writes two targets (limits ${fmt(f.fanout.limitGbPerSecond)} vs ${fmt(f.single.limitGbPerSecond)} GB/s). ` +
        `devmove's fan-out reaches ${fmt(f.fanout.vsLimit)} of its own limit vs ${fmt(f.single.vsLimit)} for one target. ` +
        (f.singleNoLink.gbPerSecond < f.single.gbPerSecond
          ? `Part of the gap is the read→write link single-target copies use and fan-out cannot: a single-target copy without it runs at ${fmt(f.singleNoLink.gbPerSecond / f.single.gbPerSecond)}× (fan-out ÷ single-without-links = ${fmt(f.ratioVsSingleNoLink)}×).`
          : `The read→write link (single target only) made no measurable difference in this run (single without it: ${fmt(f.singleNoLink.gbPerSecond)} GB/s vs ${fmt(f.single.gbPerSecond)}).`) +
        ` The runs are noisy (the machine's CPU pressure was ${fmt(Math.min(...f.single.cpuPressureRuns, ...f.fanout.cpuPressureRuns) * 100, 0)}–${fmt(Math.max(...f.single.cpuPressureRuns, ...f.fanout.cpuPressureRuns) * 100, 0)} % during them); the ratio is the median of each variant's runs.`,
    );
  }
  const r = report.rate;
  if (r) {
    const bad = [];
    r.runs.forEach((x, i) => {
      for (const y of x.intervals) if (y.counted && y.J > 1) bad.push(`run ${i + 1} s${y.second}: ${fmt(y.bytes / MiB, 1)} MiB (J ${fmt(y.J, 1)} %, CPU pressure ${fmt(y.cpuPressure * 100, 0)} %)`);
    });
    out.push(
      `Rate mean J ≤ 1 %: ${r.met ? 'met' : 'missed'} at ${fmt(r.meanJ)} % (median of the runs' means; per run ${r.runs.map((x) => fmt(x.meanJ)).join(', ')} %), max J ${fmt(r.maxJ)} %. ` +
        (bad.length
          ? `Seconds off by more than 1 %: ${bad.join('; ')}. The pacer limits bytes started to rate × time since the rate was set (+ one buffer), with no cap on unused credit, so a second in which the copy was held up (the machine's CPU pressure is shown) is followed by a catch-up burst above the cap: the average over the copy stays exact (achieved ÷ cap ${fmt(r.achievedOverCap, 3)}), the per-second figure does not.`
          : `Every counted second was within 1 % (the granularity is one 512 KiB buffer = ${fmt((0.5 / (r.rateBytesPerSecond / MiB)) * 100, 2)} % of a second's bytes).`) +
        ` After the live change ${r.change.rateBefore / MiB} → ${r.change.rateAfter / MiB} MiB/s: mean J ${fmt(r.change.after.meanJ)} %, max ${fmt(r.change.after.maxJ)} %, first second after it ${fmt(r.change.firstSecondAfterJ)} %.`,
    );
  }
  for (const [kind, b] of Object.entries(report.background ?? {})) {
    out.push(
      `Background p99 ≤ 2× idle on the ${kind} pair: ${b.met ? 'met' : 'missed'} at ${fmt(b.p99RatioBackground)}× (idle ${fmt(b.idle.p99Us, 1)} µs, background ${fmt(b.background.p99Us, 1)} µs; per run ${b.p99RatioBackgroundPerRun.map((x) => fmt(x)).join(', ')}×), ` +
        `against ${fmt(b.p99RatioDefault)}× for a default copy (${fmt(b.default.p99Us, 1)} µs). The background copy still moved ${fmt(b.background.copyGbPerSecond)} GB/s ` +
        `(${fmt((b.background.copyGbPerSecond / b.default.copyGbPerSecond) * 100, 0)} % of the default copy's ${fmt(b.default.copyGbPerSecond)} GB/s): background mode shrinks requests and in-flight count but does not pace itself or back off when other I/O appears, so a 4 KiB read still queues behind up to two 128 KiB requests${kind === 'ram' ? ' and competes for the 2 CPUs with the loop workers copying them' : ''}.`,
    );
  }
  const z = report.zeros;
  if (z) {
    out.push(
      `Zero-heavy source: --target-is-zero ${fmt(z.skip.speedupVsWrite)}× and --zero-blocks=discard ${fmt(z.discard.speedupVsWrite)}× the speed of writing the zeros (${fmt(z.write.gbPerSecond)} → ${fmt(z.skip.gbPerSecond)} / ${fmt(z.discard.gbPerSecond)} GB/s; per round skip ${z.skip.speedupVsWritePerRun.map((x) => fmt(x)).join(', ')}×, discard ${z.discard.speedupVsWritePerRun.map((x) => fmt(x)).join(', ')}×), every result cmp-verified. ` +
        `Skip issues ${fmt(z.skip.targetWrites, 0)} target writes instead of ${fmt(z.write.targetWrites, 0)}, but the whole source is still read: fio reads it alone at ${fmt(z.readLimitGbPerSecond)} GB/s, and skip runs at ${fmt(z.skip.vsReadLimit)} of that (write mode also gets the read→write link, which the zero modes give up). ` +
        `Discard sends each 512 KiB zero block as its own fallocate (${z.discard.discards} of them; the block layer counts the resulting write-zeroes requests as writes, hence ${fmt(z.discard.targetWrites, 0)} target \"writes\"), which the loop driver turns into hole punches in the tmpfs file` +
        (z.discard.speedupVsWrite < 1 ? `; that is slower than writing the zeros here, i.e. ~${fmt(((z.discard.seconds - z.write.seconds) / z.discard.discards) * 1e6, 0)} µs more per zero block.` : '.'),
    );
  }
  return out;
}

// ---------- main ----------

async function main() {
  const args = parseArgs(process.argv.slice(2));
  L.installExitHandlers();
  process.on('unhandledRejection', (e) => {
    process.stderr.write(`bench: ${e?.stack ?? e}\n`);
    L.cleanupAll();
    process.exit(1);
  });
  preflight(args);
  const started = Date.now();
  const date = new Date().toISOString().slice(0, 10);
  const report = {
    date,
    machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / GiB)} GiB, Linux ${os.release()}, Node ${process.version}`,
    sizeBytes: args.sizeBytes,
    runs: args.runs,
    command: `node bench/migration.js ${process.argv.slice(2).join(' ')}`.trim(),
  };
  const ram = new Pool('ram', args.sizeBytes);
  const want = (x) => args.only.includes(x);
  report.sectionSeconds = {};
  let mark = Date.now();
  const lap = (name) => {
    report.sectionSeconds[name] = (Date.now() - mark) / 1000;
    log(`${name} took ${fmt(report.sectionSeconds[name], 0)} s`);
    mark = Date.now();
  };
  try {
    if (want('fanout')) {
      report.fanout = fanout(ram, args.runs);
      ram.release('target2');
      lap('fanout');
    }
    if (want('rate')) {
      report.rate = await rateJitter(ram, args);
      lap('rate');
    }
    if (want('background')) {
      report.background = {};
      for (const kind of args.backgroundPairs) {
        const pool = kind === 'ram' ? ram : new Pool('disk', args.sizeBytes);
        report.background[kind] = await backgroundLatency(pool, args);
        if (pool !== ram) pool.releaseAll();
        lap(`background-${kind}`);
      }
    }
    if (want('zeros')) {
      ram.release('source');
      report.zeros = zeroHeavy(ram, args.runs);
      lap('zeros');
    }
  } finally {
    ram.releaseAll();
    L.cleanupAll();
  }
  report.wallSeconds = (Date.now() - started) / 1000;
  fs.mkdirSync(args.out, { recursive: true });
  const json = path.join(args.out, `migration-${date}.json`);
  fs.writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  const md = markdown(report, args);
  const mdFile = path.join(args.out, `migration-${date}.md`);
  fs.writeFileSync(mdFile, md);
  process.stdout.write(md);
  log(`wrote ${json} and ${mdFile} in ${fmt(report.wallSeconds, 0)} s`);
}

if (require.main === module) {
  main().catch((e) => {
    L.cleanupAll();
    process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
    process.exitCode = 1;
  });
}

module.exports = { markdown, analysis };
