#!/usr/bin/env node
// devmove benchmark, following ../shared/BENCH_PROTOCOL.md: it builds the
// device pairs itself (loop devices over tmpfs and over the root disk, with
// --direct-io=on), measures the pair's limit with fio (read ∥ write), runs dd
// (buffered with conv=fsync, and O_DIRECT) and devmove alternately, verifies
// every devmove copy, and reports ratios taken in the same run. Everything it
// attaches or creates is removed on exit, failure or Ctrl-C.
//
//   sudo npm run bench -- [--size 2G] [--runs 3] [--pairs ram,disk] [--only compare,sweep,ablation,rss]
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { renderBars, renderLines } = require('./svg');

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

// ---------- arguments ----------

function parseArgs(argv) {
  const args = { size: '2G', runs: 3, pairs: ['ram', 'disk'], only: ['compare', 'sweep', 'ablation', 'rss'], out: path.join(__dirname, 'results') };
  for (let i = 0; i < argv.length; i++) {
    const [key, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (key === '--size') args.size = value();
    else if (key === '--runs') args.runs = Number(value());
    else if (key === '--pairs') args.pairs = value().split(',');
    else if (key === '--only') args.only = value().split(',');
    else if (key === '--out') args.out = value();
    else if (key === '--help' || key === '-h') {
      process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 10).join('\n') + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${argv[i]}`);
  }
  args.sizeBytes = parseSize(args.size);
  if (!Number.isInteger(args.runs) || args.runs < 1) throw new Error('--runs must be a positive integer');
  for (const p of args.pairs) if (!['ram', 'disk'].includes(p)) throw new Error(`unknown pair ${p}: use ram and/or disk`);
  return args;
}

function parseSize(text) {
  const m = /^(\d+)([KMGT]?)$/i.exec(text);
  if (!m) throw new Error(`--size takes a size like 512M or 2G (got ${text})`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}

// ---------- environment checks ----------

function have(cmd, args = ['--version']) {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

function preflight() {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root: it attaches loop devices and drops caches');
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm ci (or npm run build) first`);
  const missing = [];
  if (!have('fio')) missing.push('fio (Debian package fio) — measures the device pair limit');
  if (!have('/usr/bin/time', ['--version'])) missing.push('GNU time (Debian package time) — CPU seconds and peak RSS per process');
  if (!have('losetup')) missing.push('losetup (Debian package mount)');
  if (missing.length) throw new Error(`missing tools; install them first (the benchmark installs nothing itself):\n  ${missing.join('\n  ')}`);
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
  const dev = execFileSync('losetup', ['--find', '--show', '--direct-io=on', image], { encoding: 'utf8' }).trim();
  atCleanup(() => execFileSync('losetup', ['--detach', dev]));
  return dev;
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
  log(`${kind} pair: ${src} → ${dst}`);
  return { kind, src, dst, bytes };
}

// ---------- measurement ----------

function log(line) {
  process.stderr.write(`bench: ${line}\n`);
}

function dropCaches() {
  execFileSync('sync');
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** Completed reads and writes of a block device, from /sys/block/<dev>/stat. */
function diskStat(dev) {
  const f = fs.readFileSync(`/sys/block/${path.basename(dev)}/stat`, 'utf8').trim().split(/\s+/).map(Number);
  return { reads: f[0], writes: f[4] };
}

/** Runs a command under GNU time: wall seconds, CPU seconds (user+sys), peak RSS, device requests. */
function timed(pair, cmd, args) {
  dropCaches();
  const timeFile = path.join(os.tmpdir(), `devmove-bench-time-${process.pid}`);
  const before = { src: diskStat(pair.src), dst: diskStat(pair.dst) };
  const t0 = process.hrtime.bigint();
  const run = spawnSync('/usr/bin/time', ['-o', timeFile, '-f', '%e %U %S %M', cmd, ...args], { encoding: 'utf8', maxBuffer: 64 * MiB });
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
    'fio',
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
  const r = spawnSync('cmp', ['-s', '-n', String(pair.bytes), pair.src, pair.dst]);
  if (r.status === 1) throw new Error(`verification failed: ${pair.dst} differs from ${pair.src}`);
  if (r.status !== 0) throw new Error(`verification could not run: cmp ended with ${r.status ?? r.signal}`);
}

function devmove(pair, extra = []) {
  const m = timed(pair, process.execPath, [CLI, `if=${pair.src}`, `of=${pair.dst}`, 'status=none', ...extra]);
  verify(pair);
  return m;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
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
  return out;
}

// ---------- experiments ----------

function compare(pair, runs) {
  const samples = { limit: [], ddBuffered: [], ddDirect: [], devmove: [] };
  const fio = [];
  for (let i = 0; i < runs; i++) {
    // Alternate the order from run to run so drift does not favour one tool.
    const order = i % 2 === 0 ? ['limit', 'ddBuffered', 'ddDirect', 'devmove'] : ['devmove', 'ddDirect', 'ddBuffered', 'limit'];
    for (const what of order) {
      if (what === 'limit') {
        const f = fioLimit(pair);
        fio.push(f);
        samples.limit.push({ seconds: pair.bytes / f.bytesPerSecond });
      } else if (what === 'ddBuffered') {
        samples.ddBuffered.push(timed(pair, 'dd', [`if=${pair.src}`, `of=${pair.dst}`, 'bs=512K', 'conv=fsync', 'status=none']));
      } else if (what === 'ddDirect') {
        samples.ddDirect.push(timed(pair, 'dd', [`if=${pair.src}`, `of=${pair.dst}`, 'bs=512K', 'iflag=direct', 'oflag=direct', 'status=none']));
      } else {
        samples.devmove.push(devmove(pair));
      }
      log(`${pair.kind} run ${i + 1}/${runs}: ${what} ${(pair.bytes / samples[what].at(-1).seconds / 1e9).toFixed(2)} GB/s`);
    }
  }
  const result = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, summarize(v, pair.bytes)]));
  result.limit.readGbPerSecond = median(fio.map((f) => f.readBytesPerSecond)) / 1e9;
  result.limit.writeGbPerSecond = median(fio.map((f) => f.writeBytesPerSecond)) / 1e9;
  const dm = result.devmove;
  result.ratios = {
    devmoveVsLimit: dm.gbPerSecond.median / result.limit.gbPerSecond.median,
    speedupVsDdDirect: result.ddDirect.seconds / dm.seconds,
    speedupVsDdBuffered: result.ddBuffered.seconds / dm.seconds,
    cpuPerGiBVsDdDirect: dm.cpuSecondsPerGiB / result.ddDirect.cpuSecondsPerGiB,
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

/** Peak RSS of a copy of N bytes vs 4N bytes: the ring bounds memory, not the copy size. */
function rssCheck(bytes) {
  const small = makePair('disk', bytes);
  const large = makePair('disk', bytes * 4);
  const a = devmove(small);
  const b = devmove(large);
  return {
    smallBytes: bytes,
    largeBytes: bytes * 4,
    smallPeakRssBytes: a.peakRssBytes,
    largePeakRssBytes: b.peakRssBytes,
    ratio: b.peakRssBytes / a.peakRssBytes,
  };
}

// ---------- report ----------

function fmt(x, digits = 2) {
  return Number.isFinite(x) ? x.toFixed(digits) : '–';
}

function markdown(report) {
  const lines = [];
  lines.push(`Benchmark ${report.date} on ${report.machine} (${report.sizeBytes / GiB} GiB per device, ${report.runs} runs each, medians):`);
  lines.push('');
  lines.push('| pair | fio limit (read ∥ write) | devmove | ÷ limit | dd direct | dd conv=fsync | speed-up vs dd direct | vs dd fsync | CPU s/GiB devmove / dd direct | reqs/GiB src, dst | peak RSS |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const [kind, c] of Object.entries(report.compare)) {
    const d = c.devmove;
    lines.push(
      `| ${kind} | ${fmt(c.limit.gbPerSecond.median)} GB/s | ${fmt(d.gbPerSecond.median)} GB/s (${fmt(d.gbPerSecond.min)}–${fmt(d.gbPerSecond.max)}) | ${fmt(c.ratios.devmoveVsLimit)} | ` +
        `${fmt(c.ddDirect.gbPerSecond.median)} GB/s | ${fmt(c.ddBuffered.gbPerSecond.median)} GB/s | ${fmt(c.ratios.speedupVsDdDirect)}× | ${fmt(c.ratios.speedupVsDdBuffered)}× | ` +
        `${fmt(d.cpuSecondsPerGiB, 3)} / ${fmt(c.ddDirect.cpuSecondsPerGiB, 3)} | ${fmt(d.sourceReadsPerGiB, 0)}, ${fmt(d.targetWritesPerGiB, 0)} | ${fmt(d.peakRssBytes / MiB, 0)} MiB |`,
    );
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
  if (report.rss) {
    lines.push('');
    lines.push(`Peak RSS: ${fmt(report.rss.smallPeakRssBytes / MiB, 1)} MiB copying ${report.rss.smallBytes / GiB} GiB, ${fmt(report.rss.largePeakRssBytes / MiB, 1)} MiB copying ${report.rss.largeBytes / GiB} GiB (ratio ${fmt(report.rss.ratio, 3)}).`);
  }
  return lines.join('\n') + '\n';
}

function charts(report, outDir) {
  const files = [];
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
    const file = path.join(outDir, 'compare.svg');
    fs.writeFileSync(file, renderBars({ title: `Copy throughput, ${report.sizeBytes / GiB} GiB, median of ${report.runs} (${report.date})`, unit: 'GB/s', groups }));
    files.push(file);
  }
  if (report.sweep) {
    const kinds = Object.keys(report.sweep);
    // One line chart per sweep dimension: a line per pair, a dashed line for its fio limit.
    const sweepChart = (name, title, xLabel, rowsKey, xKey) => {
      const file = path.join(outDir, name);
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

function main() {
  const args = parseArgs(process.argv.slice(2));
  preflight();
  const date = new Date().toISOString().slice(0, 10);
  const report = {
    date,
    machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / GiB)} GiB, Linux ${os.release()}`,
    sizeBytes: args.sizeBytes,
    runs: args.runs,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
  };
  for (const kind of args.pairs) {
    const pair = makePair(kind, args.sizeBytes);
    if (args.only.includes('compare')) (report.compare ??= {})[kind] = compare(pair, args.runs);
    if (args.only.includes('sweep')) (report.sweep ??= {})[kind] = sweep(pair, args.runs);
    if (args.only.includes('ablation')) (report.ablation ??= {})[kind] = ablation(pair, args.runs);
    cleanupAll(); // free this pair's memory/disk before the next
  }
  if (args.only.includes('rss')) report.rss = rssCheck(Math.min(args.sizeBytes, 2 * GiB));
  fs.mkdirSync(args.out, { recursive: true });
  const json = path.join(args.out, `bench-${date}.json`);
  fs.writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  const md = markdown(report);
  fs.writeFileSync(path.join(args.out, `bench-${date}.md`), md);
  const svgs = charts(report, args.out);
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
