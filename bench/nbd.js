#!/usr/bin/env node
// NBD benchmark (issue 13), following ../../shared/BENCH_PROTOCOL.md: a local ram device (loop over
// /dev/shm, --direct-io=on, random data) → an `nbdkit memory` export and back, over a unix socket and
// over TCP loopback; every tool side by side in one run, order rotated each round, medians; wall seconds
// and CPU seconds (user + sys of the client process, GNU time) per GiB. Everything it starts (nbdkit,
// loop devices, images) is removed on exit, failure or Ctrl-C.
//   client   phase-1 prototypes of the NBD client (libnbd over our io_uring vs our own protocol code
//            on io_uring) against nbdcopy (default, tuned) and qemu-img convert -W -m 16
//   sweep    connections × requests for the prototypes and nbdcopy (unix socket), to pick "tuned"
//   ab       the two prototypes only, alternating, for a tighter comparison of the two clients
//   devmove  the devmove CLI (its NbdEndpoint, phase 2) against nbdcopy (default, tuned) and qemu-img
//   sparse   an `nbdkit sparse-random` source → the local device: devmove against nbdcopy
//
//   sudo node bench/nbd.js [--size 2G] [--runs 5] [--only client,sweep] [--transports unix,tcp] [--tag T]
//                          [--servers nbdkit,qemu-nbd] [--sparse-target shm|disk]
//                          [--baseline-cli OTHER_TREE/dist/cli/main.js]
//
// --servers: the export is `nbdkit memory` (default) and/or `qemu-nbd` over a raw image in /dev/shm.
// --baseline-cli: another build of devmove runs beside this one (devmove and sparse experiments).
// Each row also gives the server's CPU (user + sys of its process, /proc/PID/stat) per GiB: client and
// server share this machine's cores, so what the server spends is part of every tool's throughput.
// NODE_EXTRA_CA_CERTS is removed from the tools' environment: Node 20 reads and parses that whole CA
// bundle at every start (60–70 ms of the 0.10–0.16 s devmove start on this machine, where it is set globally),
// a cost of the environment that neither devmove's copy nor the other tools have.
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const L = require('./lib');
const { startNbdkit, startQemuNbd } = require('./nbd-servers');
const { GiB, log, median, fmt } = L;

const ROOT = path.join(__dirname, '..');
const EXPERIMENTS = ['client', 'sweep', 'ab', 'devmove', 'sparse'];
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const PROTO_SOURCES = ['proto_libnbd', 'proto_uring'];

function parseArgs(argv) {
  const args = { size: '2G', runs: 5, only: ['client'], transports: ['unix', 'tcp'], out: path.join(__dirname, 'results'), tag: '', sparseTarget: 'shm', servers: ['nbdkit'] };
  for (let i = 0; i < argv.length; i++) {
    const [key, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (key === '--size') args.size = value();
    else if (key === '--runs') args.runs = Number(value());
    else if (key === '--only') args.only = value().split(',');
    else if (key === '--transports') args.transports = value().split(',');
    else if (key === '--out') args.out = value();
    else if (key === '--tag') args.tag = value();
    else if (key === '--servers') args.servers = value().split(',');
    else if (key === '--sparse-target') args.sparseTarget = value();
    else if (key === '--baseline-cli') args.baselineCli = path.resolve(value());
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  args.sizeBytes = L.parseSize(args.size);
  for (const x of args.only) if (!EXPERIMENTS.includes(x)) throw new Error(`unknown experiment ${x}`);
  for (const x of args.servers) if (!['nbdkit', 'qemu-nbd'].includes(x)) throw new Error(`unknown server ${x}`);
  return args;
}

function preflight(args) {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root: it attaches loop devices and drops caches');
  const missing = ['nbdkit', 'nbdcopy', 'qemu-img', 'g++', 'losetup', 'cmp'].filter((t) => !L.have(t, t === 'g++' ? ['--version'] : ['--version']));
  if (missing.length) throw new Error(`missing tools: ${missing.join(', ')} (Debian: nbdkit libnbd-bin qemu-utils g++ mount diffutils)`);
  // Two images and the nbdkit memory export.
  const need = 3 * args.sizeBytes + GiB;
  if (L.freeBytes('/dev/shm') < need || os.freemem() < need) throw new Error(`/dev/shm and free memory need ${fmt(need / GiB, 1)} GiB`);
}

/** Builds the phase-1 prototypes (bench/nbd-client/*.cc over native/io_uring_ring.cc and nbd_protocol.cc) into dir. */
function buildPrototypes(dir) {
  const bins = {};
  for (const name of PROTO_SOURCES) {
    const out = path.join(dir, name);
    execFileSync('g++', ['-O2', '-std=c++17', '-w', `-I${path.join(ROOT, 'native')}`, '-o', out,
      path.join(__dirname, 'nbd-client', `${name}.cc`), path.join(ROOT, 'native', 'io_uring_ring.cc'),
      path.join(ROOT, 'native', 'nbd_protocol.cc'), '-ldl']);
    bins[name] = out;
  }
  return bins;
}

// ---------- tools: each gives [command, args] for a direction ('write': local → NBD, 'read': NBD → local) ----------

function protoTool(bin, label, connections, requests) {
  return {
    name: `${label} C${connections} R${requests}`,
    argv: (dir, local, server) => [bin, ['--local', local, ...(server.transport === 'unix' ? ['--unix', server.socket] : ['--port', String(server.port)]),
      '--dir', dir, '--connections', String(connections), '--requests', String(requests)]],
  };
}

function nbdcopyTool(label, extra) {
  // --flush: the copy ends durable (NBD_CMD_FLUSH / fsync), as devmove's and qemu-img's do.
  return { name: label, argv: (dir, local, server) => ['nbdcopy', ['--flush', ...extra, ...(dir === 'write' ? [local, server.uri] : [server.uri, local])]] };
}

const qemuImgTool = {
  name: 'qemu-img -W -m 16',
  argv: (dir, local, server) => ['qemu-img', ['convert', '-n', '-W', '-m', '16', '-f', 'raw', '-O', 'raw',
    ...(dir === 'write' ? ['-T', 'none', local, server.qemuUri] : ['-t', 'none', server.qemuUri, local])]],
};

/** The devmove CLI as built (dist/), with its defaults: the process's CPU includes Node's start. */
function devmoveWith(label, extra, cli = CLI) {
  return {
    name: label,
    argv: (dir, local, server) => [process.execPath, [cli, ...(dir === 'write' ? [`if=${local}`, `of=${server.uri}`] : [`if=${server.uri}`, `of=${local}`]), 'status=none', ...extra]],
  };
}
const devmoveTool = devmoveWith('devmove', []);

// ---------- fixture ----------

async function fixture(args, transport, scratch, kind = 'nbdkit') {
  let server;
  if (kind === 'qemu-nbd') {
    const image = path.join(scratch.dir, 'export.img');
    L.writeImage(image, args.sizeBytes, 0);
    server = await startQemuNbd(scratch.dir, transport, image);
    const stop = server.stop;
    server.stop = () => { stop(); fs.rmSync(image, { force: true }); };
  } else {
    server = await startNbdkit(scratch.dir, transport, ['memory', String(args.sizeBytes)]);
  }
  // nbdkit's memory plugin allocates on first write (and a tmpfs image likewise): fill the export before
  // timing (also the read direction's data).
  execFileSync('nbdcopy', [scratch.src, server.uri]);
  return server;
}

/** Checks that one run of tool moves the right bytes: the destination is overwritten with other data first. */
function verifyTool(tool, dir, devs, server, scratch, size) {
  // nbdkit's pattern plugin (each 8 bytes hold their offset) as the other data: no extra image in memory.
  const pattern = ['--', '[', 'nbdkit', '--exit-with-parent', 'pattern', String(size), ']'];
  execFileSync('nbdcopy', [...pattern, dir === 'write' ? server.uri : devs.dst]);
  const [cmd, argv] = tool.argv(dir, dir === 'write' ? devs.src : devs.dst, server);
  const run = spawnSync(cmd, argv, { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${tool.name} ${dir} failed: ${run.stderr}`);
  const check = dir === 'write'
    ? spawnSync('sh', ['-c', 'nbdcopy "$1" - | cmp -s -n "$3" - "$2"', 'sh', server.uri, scratch.src, String(size)])
    : spawnSync('cmp', ['-s', '-n', String(size), devs.dst, scratch.src]);
  if (check.status !== 0) throw new Error(`${tool.name} ${dir}: the destination differs from the source`);
}

/** User + system CPU seconds the process has used so far (/proc/PID/stat, in clock ticks of 1/100 s). */
function processCpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function timeTool(tool, dir, devs, server) {
  const [cmd, argv] = tool.argv(dir, dir === 'write' ? devs.src : devs.dst, server);
  try {
    const before = processCpuSeconds(server.pid);
    const r = L.timed(cmd, argv);
    return { ...r, serverCpuSeconds: processCpuSeconds(server.pid) - before };
  } catch (e) {
    throw server.alive() ? e : new Error(`${e.message}\n${server.why()}`);
  }
}

/** Rounds of every tool in rotated order; returns per-tool { seconds[], cpuSeconds[] }. beforeRun() runs untimed before each run. */
function rounds(tools, dirs, devs, server, runs, beforeRun = () => {}) {
  const samples = {};
  for (let round = 0; round < runs; round++) {
    const order = tools.map((_, i) => tools[(i + round) % tools.length]);
    if (round % 2) order.reverse();
    for (const dir of dirs) {
      for (const tool of order) {
        beforeRun();
        const r = timeTool(tool, dir, devs, server);
        const key = `${dir}|${tool.name}`;
        (samples[key] ??= { seconds: [], cpuSeconds: [], serverCpuSeconds: [] });
        samples[key].seconds.push(r.seconds);
        samples[key].cpuSeconds.push(r.cpuSeconds);
        samples[key].serverCpuSeconds.push(r.serverCpuSeconds);
        log(`${server.transport} ${dir} ${tool.name}: ${fmt(r.seconds, 3)} s, ${fmt(r.cpuSeconds, 3)} CPU s, server ${fmt(r.serverCpuSeconds, 2)} CPU s`);
      }
    }
  }
  return samples;
}

function summarize(samples, bytes) {
  const rows = [];
  for (const [key, s] of Object.entries(samples)) {
    const [dir, tool] = key.split('|');
    const seconds = median(s.seconds);
    rows.push({ dir, tool, seconds, gbPerSecond: bytes / seconds / 1e9, cpuSecondsPerGiB: median(s.cpuSeconds) / (bytes / GiB),
      serverCpuSecondsPerGiB: median(s.serverCpuSeconds) / (bytes / GiB),
      secondsMin: Math.min(...s.seconds), secondsMax: Math.max(...s.seconds), samples: s });
  }
  return rows;
}

function table(title, rows) {
  const lines = [`### ${title}`, '', '| direction | tool | median s | GB/s | min–max s | CPU s/GiB | server CPU s/GiB |', '|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.dir} | ${r.tool} | ${fmt(r.seconds, 3)} | ${fmt(r.gbPerSecond)} | ${fmt(r.secondsMin, 2)}–${fmt(r.secondsMax, 2)} | ${fmt(r.cpuSecondsPerGiB, 3)} | ${fmt(r.serverCpuSecondsPerGiB, 3)} |`);
  }
  return lines.join('\n');
}

// ---------- experiments ----------

function clientTools(bins) {
  return [
    // 4 connections × 2 requests = 8 buffers in flight, devmove's default queue depth; the sweep
    // (--only sweep) found no configuration of either prototype clearly better.
    protoTool(bins.proto_uring, 'own client on io_uring', 4, 2),
    protoTool(bins.proto_libnbd, 'libnbd on io_uring', 4, 2),
    nbdcopyTool('nbdcopy', []),
    // The sweep's best nbdcopy configuration for reading (all were alike for writing).
    nbdcopyTool('nbdcopy -C 4 -R 2 --request-size 512K', ['--connections=4', '--requests=2', '--request-size=524288']),
    qemuImgTool,
  ];
}

function sweepTools(bins) {
  const tools = [];
  for (const c of [1, 2, 4]) {
    for (const r of [2, 4, 8]) {
      tools.push(protoTool(bins.proto_uring, 'own client on io_uring', c, r));
      tools.push(protoTool(bins.proto_libnbd, 'libnbd on io_uring', c, r));
      tools.push(nbdcopyTool(`nbdcopy -C ${c} -R ${r} --request-size 512K`, [`--connections=${c}`, `--requests=${r}`, '--request-size=524288']));
    }
  }
  return tools;
}

function devmoveTools(args) {
  const baseline = args.baselineCli ? [devmoveWith('baseline devmove', [], args.baselineCli)] : [];
  return [devmoveTool, ...caCertsTool(args), ...baseline, ...clientTools({}).slice(2)];
}

/** devmove with the NODE_EXTRA_CA_CERTS this process was started with (see the header), to show its cost. */
function caCertsTool(args) {
  if (!args.extraCaCerts) return [];
  return [{
    name: 'devmove, NODE_EXTRA_CA_CERTS set',
    argv: (...a) => {
      const [cmd, argv] = devmoveTool.argv(...a);
      return ['env', [`NODE_EXTRA_CA_CERTS=${args.extraCaCerts}`, cmd, ...argv]];
    },
  }];
}

/**
 * nbdkit sparse-random (about 1/8 data, the rest holes) → a local device, unix socket; each tool checked
 * against nbdcopy's copy. Two pairs that promise the same target: a fully allocated one (devmove's default
 * write policy, nbdcopy --allocated) and a sparse one (--zero-blocks=discard, nbdcopy's default). The device
 * is a loop over /dev/shm (--sparse-target shm) or over an image on the machine's own filesystem
 * (--sparse-target disk), attached afresh before every run: on tmpfs, one write-zeroes without unmap makes
 * the loop driver turn write-zeroes off for the device (tmpfs has no ZERO_RANGE), which would change the
 * next tool's path.
 */
async function sparseExperiment(args, devs, scratch, results, md) {
  const server = await startNbdkit(scratch.dir, 'unix', ['sparse-random', String(args.sizeBytes), 'seed=1']);
  const tools = [devmoveTool, nbdcopyTool('nbdcopy --allocated', ['--allocated']),
    devmoveWith('devmove --zero-blocks=discard', ['--zero-blocks=discard']), nbdcopyTool('nbdcopy', [])];
  // Before and after in the same run: another tree's build (e.g. main's dist/cli/main.js).
  if (args.baselineCli) {
    tools.push(devmoveWith('baseline devmove', [], args.baselineCli),
      devmoveWith('baseline devmove --zero-blocks=discard', ['--zero-blocks=discard'], args.baselineCli));
  }
  const base = args.sparseTarget === 'disk' ? L.scratchDir('/var/tmp').dir : scratch.dir;
  const image = path.join(base, 'sparse-dst.img');
  L.writeImage(image, args.sizeBytes, 0);
  let attached = null;
  const fresh = () => {
    if (attached) attached.detach();
    attached = L.attach(image);
    devs.sparse = attached.dev;
  };
  const sparseDevs = { get dst() { return devs.sparse; } };
  const reference = path.join(scratch.dir, 'sparse-ref.img');
  execFileSync('nbdcopy', [server.uri, reference]);
  for (const tool of tools) {
    fresh();
    execFileSync('nbdcopy', ['--', '[', 'nbdkit', '--exit-with-parent', 'pattern', String(args.sizeBytes), ']', sparseDevs.dst]);
    const [cmd, argv] = tool.argv('read', sparseDevs.dst, server);
    execFileSync(cmd, argv);
    L.cmpEqual(reference, sparseDevs.dst, args.sizeBytes);
  }
  fs.rmSync(reference);
  log('sparse: every tool verified');
  const rows = summarize(rounds(tools, ['read'], sparseDevs, server, args.runs, fresh), args.sizeBytes);
  results.experiments[`sparse-unix-${args.sparseTarget}`] = rows;
  md.push(table(`sparse-random source → device (loop over ${args.sparseTarget === 'disk' ? 'an ext4 image' : '/dev/shm'}), unix socket`, rows), '');
  attached.detach();
  server.stop();
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  preflight(args);
  // See the header: the tools inherit this process's environment.
  const extraCaCerts = process.env.NODE_EXTRA_CA_CERTS;
  args.extraCaCerts = extraCaCerts;
  delete process.env.NODE_EXTRA_CA_CERTS;
  L.installExitHandlers();
  const { dir } = L.scratchDir('/dev/shm');
  const scratch = { dir, src: path.join(dir, 'src.img'), dstImage: path.join(dir, 'dst.img') };
  log(`images in ${dir}`);
  L.writeImage(scratch.src, args.sizeBytes, 'random');
  L.writeImage(scratch.dstImage, args.sizeBytes, 0);
  const devs = { src: L.attach(scratch.src).dev, dst: L.attach(scratch.dstImage).dev };
  const bins = args.only.some((x) => ['client', 'sweep', 'ab'].includes(x)) ? buildPrototypes(dir) : {};
  const results = { date: new Date().toISOString(), host: os.hostname(), load: os.loadavg(), size: args.sizeBytes, runs: args.runs,
    note: 'other engineers\' builds and tests were running on this 2-core machine', experiments: {} };
  const md = [`# NBD benchmark ${results.date}`, '', `size ${args.size}, medians of ${args.runs}, load average at start ${os.loadavg().map((x) => fmt(x, 1)).join(' ')}`, ''];
  results.nodeExtraCaCerts = extraCaCerts ?? null;
  if (extraCaCerts) md.push(`NODE_EXTRA_CA_CERTS (${extraCaCerts}) was removed from the tools' environment (see bench/nbd.js).`, '');

  for (const experiment of args.only) {
    if (experiment === 'sparse') {
      await sparseExperiment(args, devs, scratch, results, md);
      continue;
    }
    const tools = experiment === 'client' ? clientTools(bins) : experiment === 'ab' ? clientTools(bins).slice(0, 2)
      : experiment === 'devmove' ? devmoveTools(args) : sweepTools(bins);
    const transports = experiment === 'sweep' ? ['unix'] : args.transports;
    const servers = experiment === 'devmove' ? args.servers : ['nbdkit'];
    for (const [transport, kind] of transports.flatMap((t) => servers.map((k) => [t, k]))) {
      const server = await fixture(args, transport, scratch, kind);
      for (const d of ['write', 'read']) for (const tool of tools) verifyTool(tool, d, devs, server, scratch, args.sizeBytes);
      log(`${experiment} ${transport}: every tool verified in both directions`);
      const rows = summarize(rounds(tools, ['write', 'read'], devs, server, experiment === 'sweep' ? Math.min(args.runs, 3) : args.runs), args.sizeBytes);
      results.experiments[`${experiment}-${kind === 'nbdkit' ? '' : `${kind}-`}${transport}`] = rows;
      const exportName = kind === 'nbdkit' ? 'nbdkit memory' : 'qemu-nbd over a /dev/shm image';
      md.push(table(`${experiment}, ${transport === 'unix' ? 'unix socket' : 'TCP loopback'}, ${exportName}`, rows), '');
      server.stop();
    }
  }
  fs.mkdirSync(args.out, { recursive: true });
  const stem = path.join(args.out, `nbd-${results.date.slice(0, 10)}${args.tag ? `-${args.tag}` : ''}`);
  fs.writeFileSync(`${stem}.json`, JSON.stringify(results, null, 1));
  fs.writeFileSync(`${stem}.md`, md.join('\n') + '\n');
  process.stdout.write(md.join('\n') + '\n');
  log(`wrote ${stem}.json and .md`);
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`bench: ${e.stack ?? e}\n`);
  L.cleanupAll();
  process.exit(1);
});
