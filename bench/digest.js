#!/usr/bin/env node
// GB/s per core of every digest implementation devmove has, side by side in
// one run (../shared/BENCH_PROTOCOL.md: ratios, medians, alternating order):
// BLAKE3 on each SIMD kernel and XXH3-128 (bench/digest_bench.cc, built here
// with CMake in Release), the parallel BLAKE3 digest on 1..N pool threads,
// OpenSSL's SHA-256 through Node (what --hash=sha256 runs), and b3sum on one
// thread as the outside reference. Rates are per CPU-second of the hashing
// thread, so other work on a shared machine distorts them less than wall time.
//
//   node bench/digest.js [--mib 256] [--runs 5] [--out bench/results]
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { have, log, median } = require('./lib');

const ROOT = path.join(__dirname, '..');
const BUILD = path.join(ROOT, 'build-bench');

function parseArgs(argv) {
  const args = { mib: 256, runs: 5, out: path.join(__dirname, 'results') };
  for (let i = 0; i < argv.length; i++) {
    const [key, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (key === '--mib') args.mib = Number(value());
    else if (key === '--runs') args.runs = Number(value());
    else if (key === '--out') args.out = value();
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!Number.isInteger(args.mib) || args.mib < 1) throw new Error('--mib takes a positive integer');
  if (!Number.isInteger(args.runs) || args.runs < 1) throw new Error('--runs takes a positive integer');
  return args;
}

function buildBench() {
  log('building digest_bench (CMake, Release) in build-bench/');
  execFileSync('cmake', ['-S', ROOT, '-B', BUILD, '-DCMAKE_BUILD_TYPE=Release'], { stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync('cmake', ['--build', BUILD, '--target', 'digest_bench', '--parallel', String(os.availableParallelism())], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return path.join(BUILD, 'digest_bench');
}

// SHA-256 of 512 KiB buffers in Node's OpenSSL, as the engine's hash stage feeds it.
function sha256Rows(region, runs) {
  const cpu = [];
  const wall = [];
  for (let r = 0; r < runs; r++) {
    const c0 = process.cpuUsage();
    const w0 = process.hrtime.bigint();
    const h = crypto.createHash('sha256');
    for (let at = 0; at < region.length; at += 512 * 1024) h.update(region.subarray(at, at + 512 * 1024));
    h.digest();
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e6);
    wall.push(Number(process.hrtime.bigint() - w0) / 1e9);
  }
  return { what: 'one-thread', name: 'sha256 (openssl via node)', bytes: region.length, runs, cpu_s: median(cpu), wall_s: median(wall) };
}

function b3sumRow(file, bytes, runs) {
  const cpu = [];
  const wall = [];
  for (let r = 0; r < runs; r++) {
    const t = spawnSync('/usr/bin/time', ['-f', '%U %S %e', 'b3sum', '--num-threads', '1', '--no-names', file], { encoding: 'utf8' });
    const [user, sys, elapsed] = t.stderr.trim().split('\n').pop().split(' ').map(Number);
    cpu.push(user + sys);
    wall.push(elapsed);
  }
  return { what: 'one-thread', name: 'b3sum --num-threads 1 (reference)', bytes, runs, cpu_s: median(cpu), wall_s: median(wall) };
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const bench = buildBench();
  const rows = execFileSync(bench, ['--mib', String(args.mib), '--runs', String(args.runs)], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const setup = rows.find((r) => r.what === 'setup');
  const region = crypto.randomBytes(args.mib * 1024 * 1024);
  rows.push(sha256Rows(region, args.runs));
  if (have('b3sum')) {
    const file = path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), `devmove-digest-bench-${process.pid}`);
    fs.writeFileSync(file, region);
    try {
      rows.push(b3sumRow(file, region.length, args.runs));
    } finally {
      fs.rmSync(file, { force: true });
    }
  }
  for (const r of rows) {
    if (r.cpu_s === undefined) continue;
    r.gb_per_cpu_s = r.bytes / r.cpu_s / 1e9;
    r.gb_per_wall_s = r.bytes / r.wall_s / 1e9;
  }
  const lines = [
    `# Digests, ${new Date().toISOString().slice(0, 10)}: ${args.mib} MiB in 512 KiB buffers, median of ${args.runs}, ${setup.usable_cpus} CPUs, best BLAKE3 kernel ${setup.best_kernel}`,
    '',
    '| implementation | GB/s per CPU-second | GB/s wall | CPU s | wall s |',
    '|---|---|---|---|---|',
  ];
  for (const r of rows.filter((x) => x.cpu_s !== undefined)) {
    lines.push(`| ${r.name} | ${r.gb_per_cpu_s.toFixed(2)} | ${r.gb_per_wall_s.toFixed(2)} | ${r.cpu_s.toFixed(3)} | ${r.wall_s.toFixed(3)} |`);
  }
  const text = lines.join('\n') + '\n';
  process.stdout.write(text);
  fs.mkdirSync(args.out, { recursive: true });
  const stem = path.join(args.out, `digest-${new Date().toISOString().slice(0, 10)}`);
  fs.writeFileSync(`${stem}.json`, JSON.stringify({ setup, rows }, null, 2) + '\n');
  fs.writeFileSync(`${stem}.md`, text);
  log(`wrote ${stem}.{json,md}`);
}

main();
