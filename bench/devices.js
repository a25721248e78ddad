#!/usr/bin/env node
// What the content probe (libblkid) costs `devices.list()` and `devmove devices` (issue 15:
// "probing must stay cheap"). As root it makes --count loop devices over image files, each with a
// GPT table of three partitions (ext4 with a label, swap with a label, vfat), so the machine has
// count × 4 more block devices to list, then measures a devmove without the probe (--baseline, a
// built checkout) against this one:
//   - inside one process: the median time of one list() call, repeated (no Node start-up);
//   - whole processes under hyperfine: node -e "devices.list()", and lsblk -J -O and `blkid -p` of
//     every device as the tools people know;
// each in --rounds rounds with the order alternated (../../shared/BENCH_PROTOCOL.md), warm page
// cache, and with --cold also after `sync; drop_caches` before every run. Everything it attached
// or wrote is removed at the end, on failure and on Ctrl-C.
//
//   sudo node bench/devices.js --baseline /path/to/devmove-checkout [--count 24] [--runs 20] [--rounds 3] [--cold] [--tag T]
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { MiB, atCleanup, fmt, have, installExitHandlers, log, median, scratchDir } = require('./lib');

const ROOT = path.join(__dirname, '..');
const RESULTS = path.join(__dirname, 'results');

function parseArgs(argv) {
  const options = { baseline: undefined, count: 24, runs: 20, rounds: 3, cold: false, tag: 'devices' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--baseline') options.baseline = path.resolve(value());
    else if (arg === '--count') options.count = Number(value());
    else if (arg === '--runs') options.runs = Number(value());
    else if (arg === '--rounds') options.rounds = Number(value());
    else if (arg === '--cold') options.cold = true;
    else if (arg === '--tag') options.tag = value();
    else throw new Error(`unknown option ${arg}`);
  }
  if (!options.baseline || !fs.existsSync(path.join(options.baseline, 'dist', 'index.js'))) {
    throw new Error('--baseline must name a built devmove checkout (with dist/ and build/)');
  }
  for (const key of ['count', 'runs', 'rounds']) {
    if (!Number.isInteger(options[key]) || options[key] < 1) throw new Error(`--${key} must be a positive integer`);
  }
  return options;
}

const GPT = `label: gpt

size=8MiB, type=linux, name="data"
size=4MiB, type=swap, name="swap"
type=linux, name="efi"
`;

/** count loop devices, each with a GPT table of three formatted, labelled partitions. */
function makeDevices(dir, count) {
  const devices = [];
  for (let i = 0; i < count; i++) {
    const image = path.join(dir, `disk${i}.img`);
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 24 * MiB);
    execFileSync('sfdisk', ['-q', image], { input: GPT });
    // --partscan: detaching then removes the partitions partx added. Without it they would
    // outlive the detach and turn up under the next user of this loop device.
    const dev = execFileSync('losetup', ['--find', '--show', '--direct-io=on', '--partscan', image], { encoding: 'utf8' }).trim();
    atCleanup(() => execFileSync('losetup', ['--detach', dev]));
    if (fs.readdirSync(`/sys/block/${path.basename(dev)}`).every((e) => !e.startsWith(`${path.basename(dev)}p`))) {
      execFileSync('partx', ['--add', dev]); // kernels without the EFI parser find none themselves
    }
    for (let p = 1; p <= 3; p++) waitFor(`${dev}p${p}`);
    execFileSync('mkfs.ext4', ['-q', '-F', '-L', `backup-${i}`, `${dev}p1`]);
    execFileSync('mkswap', ['-q', '-L', `swap-${i}`, `${dev}p2`]);
    execFileSync('mkfs.vfat', ['-n', `EFI${i}`, `${dev}p3`], { stdio: 'ignore' });
    devices.push(dev);
  }
  return devices;
}

function waitFor(node) {
  const end = Date.now() + 5000;
  while (!fs.existsSync(node) && Date.now() < end) spawnSync('sleep', ['0.02']);
  if (!fs.existsSync(node)) throw new Error(`${node} did not appear`);
}

function readable(node) {
  if (Number(fs.readFileSync(`/sys/class/block/${path.basename(node)}/size`, 'utf8')) === 0) return false;
  try {
    fs.closeSync(fs.openSync(node, 'r'));
    return true;
  } catch {
    return false;
  }
}

/** Median milliseconds of one list() call inside one process, and how many devices it returned. */
function inProcess(dist, calls) {
  const script = `
    const { devices } = require(${JSON.stringify(dist)});
    for (let i = 0; i < 3; i++) devices.list();
    const ms = [];
    let n = 0;
    for (let i = 0; i < ${calls}; i++) { const t = process.hrtime.bigint(); n = devices.list().length; ms.push(Number(process.hrtime.bigint() - t) / 1e6); }
    ms.sort((a, b) => a - b);
    console.log(JSON.stringify({ ms: ms[ms.length >> 1], devices: n }));
  `;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }));
}

/** Median ms to probe `nodes` with this build's addon: one device per call, and all in one call (on its threads). */
function probeOnly(nodes, calls) {
  const script = `
    const native = require(${JSON.stringify(path.join(ROOT, 'build', 'Release', 'devmove.node'))});
    native.blkidStatus();
    const requests = ${JSON.stringify(nodes)}.map((path) => ({ path, partitions: [] }));
    const time = (fn) => { const ms = []; for (let i = 0; i < ${calls}; i++) { const t = process.hrtime.bigint(); fn(); ms.push(Number(process.hrtime.bigint() - t) / 1e6); } ms.sort((a, b) => a - b); return ms[ms.length >> 1]; };
    const serial = time(() => { for (const r of requests) native.blkidProbe([r]); });
    const batch = time(() => native.blkidProbe(requests));
    console.log(JSON.stringify({ serial, batch }));
  `;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }));
}

/** hyperfine over the commands in this order; medians in ms by name. */
function hyperfine(commands, runs, cold, file) {
  // -i: `blkid -p` exits non-zero for devices it cannot open (empty loop devices, this CI's own disk).
  const args = ['-N', '-i', '--warmup', cold ? '0' : '3', '--runs', String(runs), '--export-json', file, '--style', 'none'];
  if (cold) args.push('--prepare', 'sh -c "sync; echo 3 > /proc/sys/vm/drop_caches"');
  for (const [name, command] of commands) args.push('-n', name, command);
  execFileSync('hyperfine', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const out = {};
  for (const r of JSON.parse(fs.readFileSync(file, 'utf8')).results) out[r.command] = r.median * 1000;
  return out;
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  if (process.getuid() !== 0) throw new Error('run as root: it attaches loop devices');
  for (const tool of ['hyperfine', 'sfdisk', 'partx', 'mkswap', 'mkfs.vfat', 'lsblk', 'blkid']) {
    if (!have(tool, tool === 'mkfs.vfat' ? ['--help'] : ['--version'])) throw new Error(`${tool} is missing`);
  }
  installExitHandlers();
  const { dir } = scratchDir('/var/tmp');
  log(`making ${options.count} GPT loop devices with 3 formatted partitions each`);
  makeDevices(dir, options.count);
  const dists = { baseline: path.join(options.baseline, 'dist'), probe: path.join(ROOT, 'dist') };
  // hyperfine -N splits the command like a shell: the script goes in single quotes.
  const list = (dist) => `${process.execPath} -e 'require(${JSON.stringify(dist)}).devices.list()'`;
  // The devices a probe can read: non-empty, and open to us.
  const nodes = fs.readdirSync('/sys/class/block').map((n) => `/dev/${n}`).filter(readable);
  const commands = [
    ['baseline', list(dists.baseline)],
    ['probe', list(dists.probe)],
    ['lsblk', 'lsblk -J -O'],
    // `blkid -p A B` stops at the first device without a signature: one process per device, as a script would.
    ['blkid -p', `sh -c 'for d in ${nodes.join(' ')}; do blkid -p $d; done'`],
  ];
  const samples = { inProcess: { baseline: [], probe: [] }, probeOnly: { serial: [], batch: [] }, warm: {}, cold: {} };
  let deviceCount = 0;
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? commands : [...commands].reverse();
    for (const [name] of order.filter(([n]) => n in dists)) {
      const r = inProcess(dists[name], options.runs);
      samples.inProcess[name].push(r.ms);
      deviceCount = r.devices;
    }
    const only = probeOnly(nodes, options.runs);
    samples.probeOnly.serial.push(only.serial);
    samples.probeOnly.batch.push(only.batch);
    for (const mode of options.cold ? ['warm', 'cold'] : ['warm']) {
      const runs = hyperfine(order, mode === 'cold' ? Math.min(options.runs, 10) : options.runs, mode === 'cold', path.join(dir, 'h.json'));
      for (const [name, ms] of Object.entries(runs)) (samples[mode][name] ??= []).push(ms);
    }
    log(`round ${round + 1}/${options.rounds} done`);
  }
  report(options, deviceCount, nodes.length, samples);
}

function report(options, deviceCount, readableCount, samples) {
  const m = (xs) => (xs && xs.length ? median(xs) : undefined);
  const rows = [
    ['list() inside one process', m(samples.inProcess.baseline), m(samples.inProcess.probe)],
    ['`node -e devices.list()`, warm', m(samples.warm.baseline), m(samples.warm.probe)],
  ];
  if (options.cold) rows.push(['`node -e devices.list()`, after drop_caches', m(samples.cold.baseline), m(samples.cold.probe)]);
  const lines = [
    `# devices.list() with and without the content probe (${new Date().toISOString().slice(0, 10)})`,
    '',
    `${deviceCount} block devices listed (${options.count} GPT loop devices × 4 made by the benchmark, plus the machine's own); medians of ${options.rounds} alternating rounds of ${options.runs} runs, ms.`,
    '',
    '| measure | without the probe | with it | difference | ratio |',
    '|---|---|---|---|---|',
    ...rows.map(([what, a, b]) => `| ${what} | ${fmt(a, 1)} | ${fmt(b, 1)} | +${fmt(b - a, 1)} | ${fmt(b / a, 2)}× |`),
    '',
    `The probes alone (this build's addon, the ${readableCount} readable non-empty devices): one device per call ${fmt(m(samples.probeOnly.serial), 1)} ms, all in one call on up to 8 threads ${fmt(m(samples.probeOnly.batch), 1)} ms.`,
    '',
    `Reference tools, warm: \`lsblk -J -O\` ${fmt(m(samples.warm.lsblk), 1)} ms; \`blkid -p\` of each of those devices, one process each, ${fmt(m(samples.warm['blkid -p']), 1)} ms` +
      (options.cold ? `; after drop_caches: ${fmt(m(samples.cold.lsblk), 1)} ms and ${fmt(m(samples.cold['blkid -p']), 1)} ms.` : '.'),
    '',
    `Command: \`sudo node bench/devices.js --baseline ${options.baseline} --count ${options.count} --runs ${options.runs} --rounds ${options.rounds}${options.cold ? ' --cold' : ''}\``,
  ];
  const text = `${lines.join('\n')}\n`;
  process.stdout.write(text);
  fs.mkdirSync(RESULTS, { recursive: true });
  const base = path.join(RESULTS, `${options.tag}-${new Date().toISOString().slice(0, 10)}`);
  fs.writeFileSync(`${base}.md`, text);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify({ options, deviceCount, samples }, null, 2)}\n`);
  log(`wrote ${base}.md and .json`);
}

main();
