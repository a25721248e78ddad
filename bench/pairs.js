#!/usr/bin/env node
// Many pairs in one job (issue 16), side by side in one run, following
// ../shared/BENCH_PROTOCOL.md (medians of --runs, order rotated every round, caches dropped
// before every timed run, everything made here and removed on exit). For each N:
//
//   job      one `devmove run` job of N ram pairs (loop devices over /dev/shm images,
//            --direct-io=on), each pair TOTAL/N bytes, default options (512 KiB, depth 8 a pair)
//   fio      the limit: N readers of the N sources while N writers write the N targets, all at
//            once (io_uring, O_DIRECT, 512 KiB, iodepth 8 each, as the protocol's one-pair limit);
//            rate = TOTAL / the slower side's last job to finish
//   one      the same TOTAL bytes as one pair (devmove if= of=)
//
// Figures: job ÷ fio (whole process, and the job's own seconds from its --json result), and
// job ÷ one (one's wall ÷ job's wall: > 1 = the N pairs were faster). Each job run is verified.
//
//   sudo node bench/pairs.js [--total 2G] [--ns 1,2,4,8] [--runs 3] [--out bench/results] [--tag pairs]
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { GiB, MiB, attach, cmpEqual, dropCaches, fmt, installExitHandlers, log, median, parseSize, scratchDir, timed, writeImage } = require('./lib');

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

function parseArgs(argv) {
  const args = { total: '2G', ns: [1, 2, 4, 8], runs: 3, out: path.join(__dirname, 'results'), tag: 'pairs' };
  for (let i = 0; i < argv.length; i++) {
    const [key, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (key === '--total') args.total = value();
    else if (key === '--ns') args.ns = value().split(',').map(Number);
    else if (key === '--runs') args.runs = Number(value());
    else if (key === '--out') args.out = value();
    else if (key === '--tag') args.tag = value();
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  args.totalBytes = parseSize(args.total);
  for (const n of args.ns) {
    if (!Number.isInteger(n) || n < 1 || args.totalBytes % (n * MiB) !== 0) throw new Error(`--ns: ${n} must divide --total into whole MiB`);
  }
  if (!Number.isInteger(args.runs) || args.runs < 1) throw new Error('--runs must be a positive integer');
  return args;
}

/** N ram pairs of `bytes` each: random sources, targets pre-written (tmpfs allocates on first write). */
function makePairs(n, bytes) {
  const { dir, remove } = scratchDir('/dev/shm');
  const pairs = [];
  for (let i = 0; i < n; i++) {
    const srcImage = path.join(dir, `source${i}.img`);
    const dstImage = path.join(dir, `target${i}.img`);
    writeImage(srcImage, bytes, 'random');
    writeImage(dstImage, bytes, 0);
    const src = attach(srcImage);
    const dst = attach(dstImage);
    pairs.push({ src: src.dev, dst: dst.dev, bytes, detach: () => (dst.detach(), src.detach()) });
  }
  log(`${n} ram pair(s) of ${bytes / MiB} MiB: ${pairs.map((p) => `${p.src}→${p.dst}`).join(', ')}`);
  return { pairs, dir, teardown: () => (pairs.forEach((p) => p.detach()), remove()) };
}

function devicesOf(pairs) {
  return pairs.flatMap((p) => [p.src, p.dst]);
}

/** fio: a reader per source and a writer per target, all at once; the rate at which all N are done. */
function fioAll(pairs) {
  dropCaches();
  const bytes = pairs[0].bytes;
  const args = ['--ioengine=io_uring', '--direct=1', '--bs=512k', '--iodepth=8', `--size=${bytes}`, '--output-format=json'];
  pairs.forEach((p, i) => args.push(`--name=read${i}`, `--filename=${p.src}`, '--rw=read', `--name=write${i}`, `--filename=${p.dst}`, '--rw=write'));
  const t0 = process.hrtime.bigint();
  const run = spawnSync('fio', args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (run.status !== 0) throw new Error(`fio failed: ${run.stderr}`);
  const jobs = JSON.parse(run.stdout.slice(run.stdout.indexOf('{'))).jobs;
  const total = bytes * pairs.length;
  const slowest = (prefix) => Math.max(...jobs.filter((j) => j.jobname.startsWith(prefix)).map((j) => j.job_runtime)) / 1e3;
  const readSeconds = slowest('read');
  const writeSeconds = slowest('write');
  return { seconds: Math.max(readSeconds, writeSeconds), wall, readBytesPerSecond: total / readSeconds, writeBytesPerSecond: total / writeSeconds };
}

function resultLine(stdout) {
  const line = stdout.trim().split('\n').reverse().find((l) => l.startsWith('{"type":"result"'));
  if (!line) throw new Error(`devmove printed no result line: ${stdout.slice(0, 200)}`);
  return JSON.parse(line);
}

function runJobOnce(pairs, jobFile) {
  const m = timed(process.execPath, [CLI, 'run', jobFile, '--json', '--quiet'], devicesOf(pairs));
  for (const p of pairs) cmpEqual(p.src, p.dst, p.bytes);
  const result = resultLine(m.stdout);
  if (!result.ok) throw new Error(`the job failed: ${JSON.stringify(result).slice(0, 400)}`);
  return { seconds: m.seconds, engineSeconds: result.seconds, cpuSeconds: m.cpuSeconds, peakRssBytes: m.peakRssBytes };
}

function runOnePair(one) {
  const m = timed(process.execPath, [CLI, `if=${one.src}`, `of=${one.dst}`, 'status=none', '--json'], [one.src, one.dst]);
  cmpEqual(one.src, one.dst, one.bytes);
  return { seconds: m.seconds, engineSeconds: resultLine(m.stdout).seconds, cpuSeconds: m.cpuSeconds };
}

/** One N: its pairs made, the three measured in rotated order every round, torn down. */
function measureN(n, args, one) {
  const perPair = args.totalBytes / n;
  const made = makePairs(n, perPair);
  try {
    const jobFile = path.join(made.dir, 'job.json');
    fs.writeFileSync(jobFile, JSON.stringify({ version: 1, pairs: made.pairs.map((p, i) => ({ name: `p${i}`, source: p.src, target: p.dst })) }));
    const runs = { job: [], fio: [], one: [] };
    const kinds = { job: () => runJobOnce(made.pairs, jobFile), fio: () => fioAll(made.pairs), one: () => runOnePair(one) };
    const order = Object.keys(kinds);
    for (let r = 0; r < args.runs; r++) {
      for (let k = 0; k < order.length; k++) {
        const kind = order[(r + k) % order.length];
        runs[kind].push(kinds[kind]());
      }
      log(`N=${n} round ${r + 1}: job ${fmt(runs.job[r].seconds, 3)} s, fio ${fmt(runs.fio[r].seconds, 3)} s, one pair ${fmt(runs.one[r].seconds, 3)} s`);
    }
    return summarize(n, args.totalBytes, runs);
  } finally {
    made.teardown();
  }
}

function summarize(n, total, runs) {
  const med = (xs, f) => median(xs.map(f));
  const ratios = runs.job.map((j, i) => ({ fio: runs.fio[i].seconds / j.seconds, engineFio: runs.fio[i].seconds / j.engineSeconds, one: runs.one[i].seconds / j.seconds }));
  return {
    n,
    bytesPerPair: total / n,
    job: { gbPerSecond: total / med(runs.job, (r) => r.seconds) / 1e9, engineGbPerSecond: total / med(runs.job, (r) => r.engineSeconds) / 1e9, cpuSecondsPerGiB: med(runs.job, (r) => r.cpuSeconds) / (total / GiB), peakRssMiB: med(runs.job, (r) => r.peakRssBytes) / MiB },
    fio: { gbPerSecond: total / med(runs.fio, (r) => r.seconds) / 1e9 },
    one: { gbPerSecond: total / med(runs.one, (r) => r.seconds) / 1e9, engineGbPerSecond: total / med(runs.one, (r) => r.engineSeconds) / 1e9 },
    jobOverFio: { median: median(ratios.map((r) => r.fio)), min: Math.min(...ratios.map((r) => r.fio)), max: Math.max(...ratios.map((r) => r.fio)) },
    engineOverFio: { median: median(ratios.map((r) => r.engineFio)) },
    jobOverOne: { median: median(ratios.map((r) => r.one)), min: Math.min(...ratios.map((r) => r.one)), max: Math.max(...ratios.map((r) => r.one)) },
    runs,
  };
}

function markdown(report) {
  const lines = [
    `# Many pairs in one job — ${report.date}, ${report.git}`,
    '',
    `${report.totalBytes / GiB} GiB in all, split over N ram pairs; medians of ${report.runs} rounds, order rotated. ${report.note}`,
    '',
    '| N | MiB a pair | fio N∥N GB/s | job GB/s (engine) | one pair GB/s | job ÷ fio (min–max) | engine ÷ fio | job ÷ one pair (min–max) | job CPU s/GiB | job peak RSS MiB |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of report.results) {
    lines.push(
      `| ${r.n} | ${r.bytesPerPair / MiB} | ${fmt(r.fio.gbPerSecond)} | ${fmt(r.job.gbPerSecond)} (${fmt(r.job.engineGbPerSecond)}) | ${fmt(r.one.gbPerSecond)} | ` +
        `${fmt(r.jobOverFio.median)} (${fmt(r.jobOverFio.min)}–${fmt(r.jobOverFio.max)}) | ${fmt(r.engineOverFio.median)} | ` +
        `${fmt(r.jobOverOne.median)} (${fmt(r.jobOverOne.min)}–${fmt(r.jobOverOne.max)}) | ${fmt(r.job.cpuSecondsPerGiB)} | ${fmt(r.job.peakRssMiB, 0)} |`,
    );
  }
  return lines.join('\n') + '\n';
}

function gitDescribe() {
  const r = spawnSync('git', ['-C', ROOT, 'describe', '--always', '--dirty'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid() !== 0) throw new Error('run as root (loop devices, drop_caches)');
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} missing: build first (npm run build)`);
  if (spawnSync('fio', ['--version']).status !== 0) throw new Error('fio is missing (Debian package fio): it measures the limit');
  installExitHandlers();
  const oneMade = makePairs(1, args.totalBytes);
  const one = oneMade.pairs[0];
  const results = [];
  for (const n of args.ns) results.push(measureN(n, args, one));
  oneMade.teardown();
  const report = { date: new Date().toISOString(), git: gitDescribe(), totalBytes: args.totalBytes, runs: args.runs, note: process.env.BENCH_NOTE ?? '', results };
  fs.mkdirSync(args.out, { recursive: true });
  const base = path.join(args.out, `bench-${report.date.slice(0, 10)}-${args.tag}`);
  fs.writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + '\n');
  fs.writeFileSync(`${base}.md`, markdown(report));
  process.stdout.write(markdown(report));
  log(`wrote ${base}.json and ${base}.md`);
}

main();
