// NBD servers for the benchmarks: nbdkit (any plugin and filters) on a unix
// socket or a loopback TCP port, started in the foreground as our child and
// killed at cleanup (bench/lib.js atCleanup), never any other process.
'use strict';

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const L = require('./lib');

const READY_TIMEOUT_MS = 10_000;
const PORT_TRIES = 20;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until nbdkit has written its pidfile (it does so once it accepts connections). */
async function waitReady(child, pidfile) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    if (fs.existsSync(pidfile) && fs.readFileSync(pidfile, 'utf8').trim() !== '') return true;
    await sleep(20);
  }
  return false;
}

/** Whether a child of ours has exited (a zombie counts: it holds no memory or socket). */
function dead(pid) {
  try {
    return (/^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 'Z') === 'Z';
  } catch {
    return true;
  }
}

/** Waits up to 2 s for a child of ours to exit. */
function gone(pid) {
  for (let i = 0; i < 100; i++) {
    if (dead(pid)) return true;
    spawnSync('sleep', ['0.02']);
  }
  return false;
}

/**
 * Starts `nbdkit [filters] plugin args` on `transport` ('unix' | 'tcp') in dir. Returns
 * { uri, qemuUri, transport, socket?, port?, stop }. The export name is empty.
 */
async function startNbdkit(dir, transport, pluginArgs, { filters = [], extra = [] } = {}) {
  for (let attempt = 0; attempt < PORT_TRIES; attempt++) {
    const pidfile = path.join(dir, `nbdkit-${process.pid}-${attempt}.pid`);
    const socket = path.join(dir, `nbdkit-${process.pid}-${attempt}.sock`);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const where = transport === 'unix' ? ['--unix', socket] : ['--ipaddr', '127.0.0.1', '--port', String(port)];
    const args = ['-f', '--exit-with-parent', '--pidfile', pidfile, ...where, ...filters.map((f) => `--filter=${f}`), ...extra, ...pluginArgs];
    const logFile = path.join(dir, `nbdkit-${process.pid}-${attempt}.log`);
    const log = fs.openSync(logFile, 'w');
    const child = spawn('nbdkit', args, { stdio: ['ignore', 'ignore', log] });
    fs.closeSync(log);
    const stderrText = () => fs.readFileSync(logFile, 'utf8');
    if (!(await waitReady(child, pidfile))) {
      child.kill('SIGKILL');
      await sleep(50);
      if (transport === 'tcp' && /Address already in use/.test(stderrText())) continue;
      throw new Error(`nbdkit ${args.join(' ')} did not start: ${stderrText()}`);
    }
    const stop = L.atCleanup(() => {
      child.kill('SIGTERM');
      if (!gone(child.pid)) child.kill('SIGKILL');
      fs.rmSync(pidfile, { force: true });
      fs.rmSync(socket, { force: true });
    });
    // Whether it still runs, and if not, why (its exit and what it printed).
    // (/proc, not child.exitCode: the benchmark runs tools synchronously, so Node's event loop has not seen the exit.)
    const alive = () => !dead(child.pid);
    const why = () => `nbdkit ${child.pid} is gone: ${stderrText() || 'it printed nothing'}`;
    const common = { transport, pid: child.pid, alive, why, stop };
    return transport === 'unix'
      ? { ...common, socket, uri: `nbd+unix:///?socket=${socket}`, qemuUri: `nbd+unix:///?socket=${socket}` }
      : { ...common, port, uri: `nbd://127.0.0.1:${port}/`, qemuUri: `nbd://127.0.0.1:${port}` };
  }
  throw new Error('no free TCP port found for nbdkit');
}

/**
 * Starts `qemu-nbd` over the raw image `image` on `transport`, like startNbdkit: --persistent (it would
 * end with its first client otherwise) and --shared=8 (devmove's up to 4 connections, nbdcopy's).
 */
async function startQemuNbd(dir, transport, image) {
  for (let attempt = 0; attempt < PORT_TRIES; attempt++) {
    const socket = path.join(dir, `qemu-nbd-${process.pid}-${attempt}.sock`);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const where = transport === 'unix' ? [`--socket=${socket}`] : ['--bind=127.0.0.1', `--port=${port}`];
    const args = ['--format=raw', '--persistent', '--shared=8', ...where, image];
    const logFile = path.join(dir, `qemu-nbd-${process.pid}-${attempt}.log`);
    const log = fs.openSync(logFile, 'w');
    const child = spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', log] });
    fs.closeSync(log);
    const stderrText = () => fs.readFileSync(logFile, 'utf8');
    const uri = transport === 'unix' ? `nbd+unix:///?socket=${socket}` : `nbd://127.0.0.1:${port}/`;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let ready = false;
    while (!ready && !dead(child.pid) && Date.now() < deadline) {
      ready = spawnSync('nbdinfo', ['--size', uri], { stdio: 'ignore' }).status === 0;
      if (!ready) await sleep(50);
    }
    if (!ready) {
      child.kill('SIGKILL');
      await sleep(50);
      if (transport === 'tcp' && /Address already in use/.test(stderrText())) continue;
      throw new Error(`qemu-nbd ${args.join(' ')} did not start: ${stderrText()}`);
    }
    const stop = L.atCleanup(() => {
      child.kill('SIGTERM');
      if (!gone(child.pid)) child.kill('SIGKILL');
      fs.rmSync(socket, { force: true });
    });
    const alive = () => !dead(child.pid);
    const why = () => `qemu-nbd ${child.pid} is gone: ${stderrText() || 'it printed nothing'}`;
    const common = { transport, pid: child.pid, alive, why, stop };
    return transport === 'unix' ? { ...common, socket, uri, qemuUri: uri } : { ...common, port, uri, qemuUri: `nbd://127.0.0.1:${port}` };
  }
  throw new Error('no free TCP port found for qemu-nbd');
}

module.exports = { startNbdkit, startQemuNbd };
