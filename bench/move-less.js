#!/usr/bin/env node
// "Move less, prove more" (issue 14), side by side in one run, following
// ../shared/BENCH_PROTOCOL.md (medians of --runs, alternating order, caches
// dropped before every timed run, everything made here and removed on exit):
//
//   sparse        4 GiB raw image with 10 % data (40 × 10 MiB), file → file on the root disk:
//                 devmove (default: holes never read, kept; conv=sparse; --holes=read as before) vs
//                 qemu-img convert, nbdcopy, cp --sparse=always
//   sparse-block  the same image (on an ext4 on its own loop device, so its reads can be counted)
//                 onto a loop device with --zero-blocks=skip: source and target requests per GiB of data
//   domain        ext4 with ~10 % used: --domain-mapfile from partclone.extfs -D vs the whole copy (ram pair)
//   changed       second pass after changing 1 % of the blocks: --only-changed vs a full copy (ram pair)
//   changed-slow-writes  the same with the target's writes capped at 200 MiB/s by blk-throttle
//                 (blkio.throttle.write_bps_device on the bench's own loop device; reads stay at
//                 RAM speed): a target whose writes cost more than its reads, as an SSD past its
//                 write cache or a network disk
//   verify        --verify (one read: XXH3-128, and the BLAKE3 fallback), --verify=behind and --verify=strict ÷ plain copy (ram pair)
//   digest        --hash=sha256 and --hash=blake3 ÷ plain copy (ram pair), on the hash pool and
//                 on the I/O thread (DEVMOVE_HASH_THREADS=io)
//
//   sudo node bench/move-less.js [--runs 3] [--only sparse,domain,...] [--out bench/results] [--tag NAME]
//
// A row whose devmove option does not exist yet (devmove --help) is reported as such, not skipped silently.
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { GiB, MiB, attach, atCleanup, cmpEqual, dropCaches, fmt, installExitHandlers, log, median, scratchDir, timed, writeImage } = require('./lib');

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const EXPERIMENTS = ['sparse', 'sparse-block', 'domain', 'changed', 'changed-slow-writes', 'verify', 'digest'];

function parseArgs(argv) {
  const args = { runs: 3, only: EXPERIMENTS, out: path.join(__dirname, 'results'), tag: 'move-less' };
  for (let i = 0; i < argv.length; i++) {
    const [key, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (key === '--runs') args.runs = Number(value());
    else if (key === '--only') args.only = value().split(',');
    else if (key === '--out') args.out = value();
    else if (key === '--tag') args.tag = value();
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!Number.isInteger(args.runs) || args.runs < 1) throw new Error('--runs takes a positive integer');
  for (const o of args.only) if (!EXPERIMENTS.includes(o)) throw new Error(`unknown experiment ${o}: one of ${EXPERIMENTS.join(', ')}`);
  return args;
}

const HELP = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' }).stdout;
const devmoveHas = (option) => HELP.includes(option);
const installed = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;

function devmove(args) {
  return [process.execPath, [CLI, ...args, '--json']];
}

/** devmove's --json result line from a run's stdout (undefined for other tools). */
function resultOf(stdout) {
  const line = (stdout ?? '').split('\n').find((l) => l.includes('"type":"result"'));
  return line === undefined ? undefined : JSON.parse(line);
}

/**
 * timed(), once more when another engineer's test had io_uring switched off for a moment
 * (test/integration/errors.test.ts sets kernel.io_uring_disabled=2 for a fraction of a second).
 */
function timedOnce(cmd, args, devices) {
  try {
    return timed(cmd, args, devices);
  } catch (error) {
    if (!/io_uring_disabled/.test(String(error.message))) throw error;
    log('io_uring was disabled for a moment (another test): running that command again');
    spawnSync('sleep', ['2']);
    return timed(cmd, args, devices);
  }
}

/** Runs each named command `runs` times, rotating the order every run; medians per name. */
function sideBySide(commands, runs, devices = [], before = () => {}) {
  const samples = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
  const names = Object.keys(commands);
  for (let r = 0; r < runs; r++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + r) % names.length];
      before(name);
      const [cmd, args] = commands[name]();
      samples[name].push(timedOnce(cmd, args, devices));
    }
  }
  return Object.fromEntries(
    names.map((n) => [n, {
      seconds: median(samples[n].map((s) => s.seconds)),
      secondsAll: samples[n].map((s) => Number(s.seconds.toFixed(3))),
      cpuSeconds: median(samples[n].map((s) => s.cpuSeconds)),
      // devmove's own 'seconds' (the engine, without Node's start-up), when it reports one.
      engineSeconds: median(samples[n].map((s) => resultOf(s.stdout)?.seconds ?? NaN)),
      requests: samples[n][samples[n].length - 1].requests,
      result: resultOf(samples[n][samples[n].length - 1].stdout),
    }]),
  );
}

function allocated(file) {
  return Number(execFileSync('du', ['-B1', file], { encoding: 'utf8' }).split('\t')[0]);
}

// ---------- sparse images ----------

const SPARSE_SIZE = 4 * GiB;
const EXTENT = 10 * MiB;
const EXTENTS = 40;

function writeSparseImage(file) {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, SPARSE_SIZE);
    const data = crypto.randomBytes(EXTENT);
    for (let i = 0; i < EXTENTS; i++) fs.writeSync(fd, data, 0, EXTENT, i * (SPARSE_SIZE / EXTENTS) + 3 * MiB);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function sparseFileToFile(args) {
  const { dir } = scratchDir('/var/tmp');
  const src = path.join(dir, 'sparse.img');
  writeSparseImage(src);
  const dst = path.join(dir, 'copy.img');
  const fresh = () => fs.rmSync(dst, { force: true });
  const commands = {
    'devmove (default)': () => devmove([`if=${src}`, `of=${dst}`]),
    'devmove conv=sparse': () => devmove([`if=${src}`, `of=${dst}`, 'conv=sparse']),
    // The engine before holes were skipped: every hole read, then seeked over.
    'devmove conv=sparse --holes=read': () => devmove([`if=${src}`, `of=${dst}`, 'conv=sparse', '--holes=read']),
    'qemu-img convert -t none -T none -W -m 16': () => ['qemu-img', ['convert', '-t', 'none', '-T', 'none', '-W', '-m', '16', '-f', 'raw', '-O', 'raw', src, dst]],
    // devmove and qemu-img -t none end with the copy on the disk (fdatasync / O_DIRECT and a flush);
    // cp and nbdcopy without --flush end with it in the page cache, and the untimed sync before the
    // next run writes it back for free. Their durable forms are the fair peers.
    'cp --sparse=always (not durable: no flush)': () => ['cp', ['--sparse=always', src, dst]],
    'cp --sparse=always && sync FILE': () => ['sh', ['-c', 'cp --sparse=always "$0" "$1" && sync "$1"', src, dst]],
  };
  if (installed('nbdcopy')) {
    commands['nbdcopy (not durable: no flush)'] = () => (fs.writeFileSync(dst, ''), ['nbdcopy', [src, dst]]);
    commands['nbdcopy --flush'] = () => (fs.writeFileSync(dst, ''), ['nbdcopy', ['--flush', src, dst]]);
  }
  const rows = sideBySide(commands, args.runs, [], fresh);
  // One more run each, to record how much of the target each one allocates.
  for (const [name, make] of Object.entries(commands)) {
    fresh();
    const [cmd, a] = make();
    execFileSync(cmd, a, { stdio: 'ignore' });
    rows[name].targetAllocatedBytes = allocated(dst);
  }
  fresh();
  const peers = Object.keys(rows).filter((n) => !n.startsWith('devmove'));
  const fastestPeer = Math.min(...peers.map((n) => rows[n].seconds));
  const fastestDurablePeer = Math.min(...peers.filter((n) => !n.includes('not durable')).map((n) => rows[n].seconds));
  for (const r of Object.values(rows)) {
    r.speedupVsFastestPeer = fastestPeer / r.seconds;
    r.speedupVsFastestDurablePeer = fastestDurablePeer / r.seconds;
    // The engine's own read count: a hole read costs a request even where the disk sees none.
    if (r.result) r.engineReadsPerDataGiB = r.result.io.reads / ((EXTENT * EXTENTS) / GiB);
  }
  return { sourceBytes: SPARSE_SIZE, dataBytes: EXTENT * EXTENTS, rows };
}

/** The sparse image on an ext4 on a loop device of its own (its reads are countable), copied onto a loop device. */
function sparseToBlock(args) {
  const { dir } = scratchDir('/dev/shm');
  const fsImage = path.join(dir, 'fs.img');
  writeImage(fsImage, 1 * GiB, 'zero');
  const { dev: fsDev } = attach(fsImage);
  execFileSync('mkfs.ext4', ['-q', '-F', fsDev]);
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'devmove-bench-mnt-'));
  execFileSync('mount', [fsDev, mnt]);
  atCleanup(() => {
    spawnSync('umount', [mnt]);
    fs.rmSync(mnt, { recursive: true, force: true });
  });
  const src = path.join(mnt, 'sparse.img');
  writeSparseImage(src);
  const dstImage = path.join(dir, 'dst.img');
  writeImage(dstImage, SPARSE_SIZE, 'zero');
  const { dev: dst } = attach(dstImage);
  const rows = sideBySide({ 'devmove --zero-blocks=skip': () => devmove([`if=${src}`, `of=${dst}`, '--zero-blocks=skip']) }, args.runs, [fsDev, dst]);
  const dataGiB = (EXTENT * EXTENTS) / GiB;
  for (const r of Object.values(rows)) {
    r.engineReadsPerDataGiB = r.result.io.reads / dataGiB;
    r.sourceDeviceReadRequestsPerDataGiB = r.requests[0].reads / dataGiB;
    r.targetWriteRequestsPerDataGiB = r.requests[1].writes / dataGiB;
  }
  return { dataBytes: EXTENT * EXTENTS, rows };
}

// ---------- ram pair: domain, changed, verify, digest ----------

function ramPair(size) {
  const { dir } = scratchDir('/dev/shm');
  const srcImage = path.join(dir, 'src.img');
  const dstImage = path.join(dir, 'dst.img');
  writeImage(srcImage, size, 'random');
  writeImage(dstImage, size, 'zero');
  return { dir, srcImage, dstImage, src: attach(srcImage).dev, dst: attach(dstImage).dev };
}

const DOMAIN_FS_BYTES = 4 * GiB;

function domainRows(args) {
  const { dir } = scratchDir('/dev/shm');
  const image = path.join(dir, 'fs.img');
  writeImage(image, DOMAIN_FS_BYTES, 'zero');
  const { dev: src } = attach(image);
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', src]);
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'devmove-bench-mnt-'));
  execFileSync('mount', [src, mnt]);
  // ~10 % of the filesystem in use once its metadata (journal, inode tables) counts too.
  for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(mnt, `f${i}`), crypto.randomBytes(10 * MiB));
  execFileSync('umount', [mnt]);
  fs.rmSync(mnt, { recursive: true, force: true });
  const domain = path.join(dir, 'used.map');
  execFileSync('partclone.extfs', ['-D', '-s', src, '-o', domain], { stdio: 'ignore' });
  const dstImage = path.join(dir, 'dst.img');
  writeImage(dstImage, DOMAIN_FS_BYTES, 'zero');
  const { dev: dst } = attach(dstImage);
  const used = fs.readFileSync(domain, 'utf8').split('\n').filter((l) => /^0x\S+\s+0x\S+\s+\+/.test(l)).reduce((n, l) => n + parseInt(l.split(/\s+/)[1], 16), 0);
  const commands = { 'whole copy': () => devmove([`if=${src}`, `of=${dst}`]) };
  if (devmoveHas('--domain-mapfile')) commands['--domain-mapfile (partclone -D)'] = () => devmove([`if=${src}`, `of=${dst}`, `--domain-mapfile=${domain}`]);
  const rows = sideBySide(commands, args.runs, [src, dst]);
  const whole = rows['whole copy'];
  for (const r of Object.values(rows)) {
    r.speedupVsWhole = whole.seconds / r.seconds;
    r.engineSpeedupVsWhole = whole.engineSeconds / r.engineSeconds;
  }
  return { fsBytes: DOMAIN_FS_BYTES, domainBytes: used, rows };
}

const WRITE_BPS_FILE = '/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device';

/** Caps writes to `dev` (blk-throttle, cgroup v1 root); the rule is removed at cleanup. */
function throttleWrites(dev, bytesPerSecond) {
  const majMin = execFileSync('lsblk', ['-dno', 'MAJ:MIN', dev], { encoding: 'utf8' }).trim();
  fs.writeFileSync(WRITE_BPS_FILE, `${majMin} ${bytesPerSecond}`);
  atCleanup(() => fs.writeFileSync(WRITE_BPS_FILE, `${majMin} 0`));
}

function changedRows(args, writeBps = 0) {
  if (!devmoveHas('--only-changed')) return { missing: 'devmove has no --only-changed yet' };
  if (writeBps > 0 && !fs.existsSync(WRITE_BPS_FILE)) return { missing: `no ${WRITE_BPS_FILE} (blk-throttle, cgroup v1)` };
  const size = 2 * GiB;
  const p = ramPair(size);
  if (writeBps > 0) throttleWrites(p.dst, writeBps);
  execFileSync(process.execPath, [CLI, `if=${p.src}`, `of=${p.dst}`, 'status=none']);
  // 1 % of the 512 KiB blocks, spread over the device, changed on the source; their old bytes are
  // kept, and written back onto the target before every run, so each run (full copy or
  // --only-changed) starts from the same second-pass state: the target one pass behind.
  const block = 512 * 1024;
  const blocks = size / block;
  const changed = Array.from({ length: blocks / 100 }, (_, i) => Math.floor((i * 100 + 37) % blocks) * block);
  const old = changed.map(() => Buffer.alloc(block));
  const fd = fs.openSync(p.src, 'r+');
  changed.forEach((at, i) => {
    fs.readSync(fd, old[i], 0, block, at);
    fs.writeSync(fd, crypto.randomBytes(block), 0, block, at);
  });
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  const rewind = () => {
    const t = fs.openSync(p.dst, 'r+');
    changed.forEach((at, i) => fs.writeSync(t, old[i], 0, block, at));
    fs.fsyncSync(t);
    fs.closeSync(t);
  };
  const rows = sideBySide({
    'full copy': () => devmove([`if=${p.src}`, `of=${p.dst}`]),
    '--only-changed': () => devmove([`if=${p.src}`, `of=${p.dst}`, '--only-changed']),
  }, args.runs, [p.src, p.dst], rewind);
  cmpEqual(p.src, p.dst, size);
  const ceiling = fioChangedCeiling(p.src, p.dst, size, args.runs);  // overwrites the target: after the check
  const full = rows['full copy'];
  for (const r of Object.values(rows)) {
    r.speedupVsFull = full.seconds / r.seconds;
    r.engineSpeedupVsFull = full.engineSeconds / r.engineSeconds;
    r.targetWriteRequests = r.requests[1].writes;
    r.targetReadRequests = r.requests[1].reads;
    r.bytesWritten = r.result?.changed?.bytesWritten ?? r.result?.bytesCopied;
  }
  return { changedBytes: changed.length * block, ...(writeBps > 0 ? { targetWriteBytesPerSecond: writeBps } : {}), ...ceiling, rows };
}

/**
 * fio's seconds for each shape (fio job arguments, all jobs at once: 512 KiB, QD 8, O_DIRECT,
 * io_uring) — the slowest job's runtime, medians of `runs`, order alternated.
 */
function fioShapes(shapes, bytes, runs) {
  const common = ['--ioengine=io_uring', '--direct=1', '--bs=512k', '--iodepth=8', `--size=${bytes}`, '--output-format=json'];
  const samples = Object.fromEntries(Object.keys(shapes).map((k) => [k, []]));
  for (let r = 0; r < runs; r++) {
    for (const name of r % 2 ? Object.keys(shapes).reverse() : Object.keys(shapes)) {
      dropCaches();
      const run = spawnSync('fio', [...common, ...shapes[name]], { encoding: 'utf8', maxBuffer: 64 * MiB });
      if (run.status !== 0) throw new Error(`fio failed: ${run.stderr}`);
      const jobs = JSON.parse(run.stdout.slice(run.stdout.indexOf('{'))).jobs;
      samples[name].push(Math.max(...jobs.map((j) => j.job_runtime)) / 1000);
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
}

const fioJob = (name, file, rw) => [`--name=${name}`, `--filename=${file}`, `--rw=${rw}`];

/**
 * fio's ceiling for verifying behind a copy on the same devices: (read source ∥ write target ∥ read
 * target) ÷ (read source ∥ write target). On a ram pair every transfer is a memory copy by a loop
 * device's worker, so the extra read costs CPU the copy also needs: no verify beats this ratio there.
 */
function fioVerifyCeiling(src, dst, bytes, runs) {
  const copy = [...fioJob('read', src, 'read'), ...fioJob('write', dst, 'write')];
  const s = fioShapes({ copy, both: [...copy, ...fioJob('readback', dst, 'read')] }, bytes, runs);
  return { fioCopySeconds: Number(s.copy.toFixed(3)), fioCopyAndReadBackSeconds: Number(s.both.toFixed(3)), fioCeiling: Number((s.both / s.copy).toFixed(3)) };
}

/**
 * fio's ceiling for a second pass that writes next to nothing: (read source ∥ write target) ÷ (read
 * source ∥ read target) — the most --only-changed can gain over a full copy on these devices.
 */
function fioChangedCeiling(src, dst, bytes, runs) {
  const s = fioShapes({
    copy: [...fioJob('read', src, 'read'), ...fioJob('write', dst, 'write')],
    compare: [...fioJob('read', src, 'read'), ...fioJob('readback', dst, 'read')],
  }, bytes, runs);
  return { fioCopySeconds: Number(s.copy.toFixed(3)), fioReadBothSeconds: Number(s.compare.toFixed(3)), fioCeilingSpeedup: Number((s.copy / s.compare).toFixed(3)) };
}

function ratioRows(args, variants, ceiling = false) {
  const p = ramPair(2 * GiB);
  const commands = { 'plain copy': () => devmove([`if=${p.src}`, `of=${p.dst}`]) };
  for (const [name, extra] of Object.entries(variants)) {
    // { env, args }: the same command with environment variables (DEVMOVE_HASH_THREADS=io).
    const { env = [], args: more = extra } = Array.isArray(extra) ? {} : extra;
    commands[name] = () => {
      const [cmd, a] = devmove([`if=${p.src}`, `of=${p.dst}`, ...more]);
      return env.length ? ['env', [...env, cmd, ...a]] : [cmd, a];
    };
  }
  const rows = sideBySide(commands, args.runs, [p.src, p.dst]);
  const plain = rows['plain copy'];
  for (const r of Object.values(rows)) {
    r.ratioToPlain = r.seconds / plain.seconds;
    r.engineRatioToPlain = r.engineSeconds / plain.engineSeconds;
  }
  return { bytes: 2 * GiB, ...(ceiling ? fioVerifyCeiling(p.src, p.dst, 2 * GiB, args.runs) : {}), rows };
}

// ---------- report ----------

function markdown(results, args) {
  const lines = [`# Move less, prove more — ${new Date().toISOString().slice(0, 10)} (median of ${args.runs}; load average at start ${os.loadavg()[0].toFixed(1)})`, ''];
  for (const [name, r] of Object.entries(results)) {
    lines.push(`## ${name}`, '');
    if (r.missing) {
      lines.push(`not measured: ${r.missing}`, '');
      continue;
    }
    const extra = Object.entries(r).filter(([k]) => k !== 'rows').map(([k, v]) => `${k} ${v}`).join(', ');
    if (extra) lines.push(extra, '');
    const keys = [...new Set(Object.values(r.rows).flatMap((row) => Object.keys(row)))].filter((k) => !['requests', 'secondsAll', 'result'].includes(k));
    lines.push(`| command | ${keys.join(' | ')} | all runs (s) |`, `|---|${keys.map(() => '---').join('|')}|---|`);
    for (const [cmd, row] of Object.entries(r.rows)) lines.push(`| ${cmd} | ${keys.map((k) => (typeof row[k] === 'number' ? fmt(row[k], 3) : '')).join(' | ')} | ${row.secondsAll.join(', ')} |`);
    lines.push('');
  }
  return lines.join('\n');
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid() !== 0) throw new Error('run as root: the benchmark makes loop devices and drops caches');
  installExitHandlers();
  const results = {};
  const run = (name, fn) => {
    if (!args.only.includes(name)) return;
    log(`${name}…`);
    results[name] = fn();
  };
  run('sparse', () => sparseFileToFile(args));
  run('sparse-block', () => sparseToBlock(args));
  run('domain', () => (installed('partclone.extfs') ? domainRows(args) : { missing: 'partclone.extfs not installed' }));
  run('changed', () => changedRows(args));
  run('changed-slow-writes', () => changedRows(args, 200 * MiB));
  run('verify', () => ratioRows(args, {
    '--verify': ['--verify'],
    // Each range read back as soon as every target has it, while the copy goes on.
    ...(devmoveHas('--verify=behind') ? { '--verify=behind': ['--verify=behind'] } : {}),
    // The built-in fallback where libxxhash0 is missing.
    '--verify (blake3-128 digests)': { env: ['DEVMOVE_VERIFY_DIGEST=blake3'], args: ['--verify'] },
    // The source read again (the pass before verify with one read).
    '--verify=strict': devmoveHas('--verify=strict') ? ['--verify=strict'] : ['--verify'],
  }, true));
  run('digest', () => ratioRows(args, {
    '--hash=sha256': ['--hash=sha256'],
    '--hash=blake3': ['--hash=blake3'],
    // The digest on the engine's I/O thread, as before the digest stage: the same run, side by side.
    '--hash=sha256 (I/O thread)': { env: ['DEVMOVE_HASH_THREADS=io'], args: ['--hash=sha256'] },
    '--hash=blake3 (I/O thread)': { env: ['DEVMOVE_HASH_THREADS=io'], args: ['--hash=blake3'] },
  }));
  const text = markdown(results, args);
  process.stdout.write(text + '\n');
  fs.mkdirSync(args.out, { recursive: true });
  const stem = path.join(args.out, `bench-${new Date().toISOString().slice(0, 10)}-${args.tag}`);
  fs.writeFileSync(`${stem}.json`, JSON.stringify({ args: { runs: args.runs, only: args.only }, loadavg: os.loadavg(), results }, null, 2) + '\n');
  fs.writeFileSync(`${stem}.md`, text + '\n');
  log(`wrote ${stem}.{json,md}`);
  dropCaches();
}

main();
