// NBD exports as sources and targets, against real servers this suite starts
// and always stops (test/helpers/nbd.ts): nbdkit memory and file, qemu-nbd
// over a file, on unix sockets and loopback TCP; nbdkit's error, delay and
// noparallel filters; a read-only export; a server killed mid-copy (an error
// naming the export, never a hang) and started again (the mapfile resumes to
// an identical export). What is on an export is read back with nbdcopy
// (libnbd), or from the server's file, never with devmove itself.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { copy } from '../../src/api/copy';
import { runJob } from '../../src/jobs/job';
import { validateJob } from '../../src/jobs/jobfile';
import { makeImage, sha256File, tempDir } from '../helpers/devices';
import { type NbdServer, skipWithoutNbd, startNbdkit, startQemuNbd, stopAllNbd } from '../helpers/nbd';
import { rejection } from '../helpers/outcome';

const MiB = 1024 * 1024;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const haveNbdcopy = spawnSync('nbdcopy', ['--version'], { stdio: 'ignore' }).status === 0;
const skip = skipWithoutNbd || !haveNbdcopy;

/** The export's bytes, read by libnbd's nbdcopy into a file of the test's. */
function readExport(server: NbdServer, dir: string, name: string): string {
  const out = path.join(dir, name);
  const run = spawnSync('nbdcopy', [server.uri, out], { encoding: 'utf8', timeout: 60_000 });
  if (run.status !== 0) throw new Error(`nbdcopy ${server.uri} failed: ${run.stderr}`);
  return out;
}

/** Fills an export with a file's bytes through nbdcopy. */
function fillExport(server: NbdServer, file: string): void {
  const run = spawnSync('nbdcopy', [file, server.uri], { encoding: 'utf8', timeout: 60_000 });
  if (run.status !== 0) throw new Error(`nbdcopy to ${server.uri} failed: ${run.stderr}`);
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stderr: string } {
  const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 90_000, env: { ...process.env, ...env } });
  return { status: run.status, stderr: run.stderr };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(skip)('NBD exports as source and target', () => {
  let dir: string;
  let source: string;
  beforeAll(() => {
    dir = tempDir('/var/tmp');
    source = makeImage(dir, 'source.img', 24 * MiB + 64 * 1024);
  });
  afterEach(async () => stopAllNbd());
  afterAll(async () => {
    await stopAllNbd();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const servers: Array<[string, (size: number, file: string) => Promise<NbdServer>]> = [
    ['nbdkit memory (unix socket)', (size) => startNbdkit({ plugin: 'memory', params: [`size=${size}`] })],
    ['nbdkit memory (TCP)', (size) => startNbdkit({ plugin: 'memory', params: [`size=${size}`], transport: 'tcp' })],
    ['nbdkit file (TCP)', (size, file) => {
      fs.writeFileSync(file, '');
      fs.truncateSync(file, size);
      return startNbdkit({ plugin: 'file', params: [file], transport: 'tcp' });
    }],
    ['qemu-nbd over a file (unix socket)', (size, file) => {
      fs.writeFileSync(file, '');
      fs.truncateSync(file, size);
      return startQemuNbd({ file });
    }],
    ['qemu-nbd over a file (TCP, export name)', (size, file) => {
      fs.writeFileSync(file, '');
      fs.truncateSync(file, size);
      return startQemuNbd({ file, transport: 'tcp', exportName: 'disk one' });
    }],
  ];

  describe.each(['io_uring', 'threads'] as const)('%s driver', (ioEngine) => {
    it.each(servers)('%s: a file to the export and back, byte-identical', async (_name, start) => {
      const size = fs.statSync(source).size;
      const server = await start(size, path.join(dir, `backing-${ioEngine}.img`));
      const to = await copy({ source, target: server.uri, ioEngine, blockSize: '1M', queueDepth: 8 });
      expect(to.bytesCopied).toBe(size);
      expect(to.target.kind).toBe('nbd');
      expect(sha256File(readExport(server, dir, `read-${ioEngine}.img`))).toBe(sha256File(source));
      const back = path.join(dir, `back-${ioEngine}.img`);
      fs.rmSync(back, { force: true });
      const from = await copy({ source: server.uri, target: back, ioEngine, verify: true, hash: 'sha256' });
      expect(from.bytesCopied).toBe(size);
      expect(sha256File(back)).toBe(sha256File(source));
      expect(from.hash?.hex).toBe(sha256File(source));
      expect(from.verify?.mismatchedBlocks).toBe(0);
    });
  });

  it('dd operands: if=/of= URIs, skip=/seek=/count= on exports, and of= repeated with a local file', async () => {
    const a = await startNbdkit({ plugin: 'memory', params: ['size=32M'] });
    const b = await startNbdkit({ plugin: 'memory', params: ['size=32M'], transport: 'tcp' });
    const local = path.join(dir, 'fan-local.img');
    fs.rmSync(local, { force: true });
    let run = cli([`if=${source}`, `of=${a.uri}`, `of=${local}`, 'bs=1M', 'count=8', 'status=none']);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    run = cli([`if=${a.uri}`, `of=${b.uri}`, 'bs=1M', 'skip=2', 'seek=5', 'count=3', 'conv=notrunc', 'status=none']);
    expect(run.status, run.stderr).toBe(0);
    const onB = fs.readFileSync(readExport(b, dir, 'b.img'));
    const src = fs.readFileSync(source);
    expect(onB.subarray(5 * MiB, 8 * MiB).equals(src.subarray(2 * MiB, 5 * MiB))).toBe(true);
    expect(onB.subarray(0, 5 * MiB).equals(Buffer.alloc(5 * MiB))).toBe(true);
    expect(onB.subarray(8 * MiB).equals(Buffer.alloc(24 * MiB))).toBe(true);
    expect(fs.readFileSync(local).equals(src.subarray(0, 8 * MiB))).toBe(true);
  });

  it('a sparse source (nbdkit sparse-random) copies as libnbd reads it', async () => {
    const server = await startNbdkit({ plugin: 'sparse-random', params: ['size=64M', 'seed=4242'] });
    const out = path.join(dir, 'sparse-out.img');
    fs.rmSync(out, { force: true });
    const result = await copy({ source: server.uri, target: out, zeroBlocks: 'skip' });
    expect(result.bytesCopied).toBe(64 * MiB);
    // Holes come from NBD_CMD_BLOCK_STATUS and are never read (sparse-random has about 1/8 data).
    expect(result.holes.note).toBe('NBD_CMD_BLOCK_STATUS');
    expect(result.holes.bytes).toBeGreaterThan(32 * MiB);
    expect(result.bytesRead).toBe(64 * MiB - result.holes.bytes);
    expect(sha256File(out)).toBe(sha256File(readExport(server, dir, 'sparse-ref.img')));
    // A digest sees the holes as zeros, still without reading them.
    const hashed = await copy({ source: server.uri, target: out, zeroBlocks: 'skip', hash: 'sha256' });
    expect(hashed.bytesRead).toBe(64 * MiB - hashed.holes.bytes);
    expect(hashed.holes.bytes).toBe(result.holes.bytes);
    expect(hashed.hash?.hex).toBe(sha256File(out));
  });

  it('zero blocks become NBD_CMD_WRITE_ZEROES with zeroBlocks discard, and read back as zeros', async () => {
    const half = makeImage(dir, 'half-zero.img', 8 * MiB, 'zero');
    const fd = fs.openSync(half, 'r+');
    fs.writeSync(fd, fs.readFileSync(source).subarray(0, 2 * MiB), 0, 2 * MiB, 3 * MiB);
    fs.closeSync(fd);
    const server = await startNbdkit({ plugin: 'memory', params: ['size=8M'] });
    fillExport(server, makeImage(dir, 'ones.img', 8 * MiB, { pattern: 0xff }));
    const result = await copy({ source: half, target: server.uri, zeroBlocks: 'discard' });
    expect(result.zero.discarded).toBe(6 * MiB);
    expect(result.target.zeroNote).toBeUndefined();
    expect(sha256File(readExport(server, dir, 'half-read.img'))).toBe(sha256File(half));
  });

  /** nbdkit's log filter: per connection, the commands it ran in order ('Write', 'Flush', ...). */
  function commandsByConnection(log: string): Map<number, string[]> {
    const by = new Map<number, string[]>();
    for (const m of log.matchAll(/connection=(\d+) (\w+) id=/g)) {
      const list = by.get(Number(m[1])) ?? [];
      list.push(m[2]);
      by.set(Number(m[1]), list);
    }
    return by;
  }

  it.each([
    ['multi-conn advertised: several connections', [] as string[], (n: number) => n > 1],
    ['no multi-conn (noparallel filter): one connection', ['noparallel'], (n: number) => n === 1],
  ])('%s, and each one flushed after its last write', async (_name, filters, connectionsOk) => {
    const logfile = path.join(dir, `log-${filters.length}.txt`);
    fs.rmSync(logfile, { force: true });
    const params = ['size=32M', `logfile=${logfile}`, ...(filters.length ? ['serialize=connections'] : [])];
    const server = await startNbdkit({ plugin: 'memory', params, filters: [...filters, 'log'] });
    const result = await copy({ source, target: server.uri, queueDepth: 16, blockSize: '256K' });
    expect(result.durability).toMatch(/NBD_CMD_FLUSH on every connection/);
    await server.stop();
    const by = commandsByConnection(fs.readFileSync(logfile, 'utf8'));
    expect(connectionsOk(by.size), `${by.size} connections`).toBe(true);
    for (const [connection, commands] of by) {
      expect(commands.at(-1), `connection ${connection}: ${commands.join(' ')}`).toBe('Flush');
    }
    expect([...by.values()].flat().filter((c) => c === 'Write').length).toBe(Math.ceil(fs.statSync(source).size / (256 * 1024)));
  });

  it('oflag=dsync over NBD: every write with FUA, no flush needed', async () => {
    const logfile = path.join(dir, 'log-fua.txt');
    fs.rmSync(logfile, { force: true });
    const server = await startNbdkit({ plugin: 'memory', params: ['size=32M', `logfile=${logfile}`], filters: ['log'] });
    const result = await copy({ source, target: server.uri, durability: 'dsync', blockSize: '1M' });
    expect(result.durability).toMatch(/FUA/);
    await server.stop();
    const writes = fs.readFileSync(logfile, 'utf8').split('\n').filter((l) => / Write id=\d+ /.test(l));
    expect(writes.length).toBeGreaterThan(0);
    for (const w of writes) expect(w).toMatch(/fua=1/);
  });

  it('latency (delay filter) and a rate cap: several requests in flight, the copy still exact', async () => {
    const server = await startNbdkit({ plugin: 'memory', params: ['size=32M', 'delay-write=20ms', 'delay-read=20ms'], filters: ['delay'] });
    const result = await copy({ source, target: server.uri, blockSize: '256K', queueDepth: 16, rate: '200M', verify: true });
    expect(result.bytesCopied).toBe(fs.statSync(source).size);
    expect(result.verify?.mismatchedBlocks).toBe(0);
  });

  it('a read-only export is refused as a target before anything is written to any target', async () => {
    const server = await startNbdkit({ plugin: 'memory', params: ['size=32M'], readOnly: true });
    const local = makeImage(dir, 'untouched.img', 4 * MiB, { pattern: 0x5a });
    const before = sha256File(local);
    const error = await rejection(copy({ source, targets: [local, server.uri], length: '4M', truncateTarget: false }));
    expect(error).toMatchObject({ code: 'EROFS', path: server.uri });
    expect(error.message).toMatch(/read-only/);
    expect(sha256File(local)).toBe(before);
  });

  it("the source's own export as a target is refused, under another spelling of the URI too", async () => {
    const server = await startNbdkit({ plugin: 'memory', params: ['size=32M'], transport: 'tcp' });
    const other = `nbd://localhost:${server.port}/`;
    const error = await rejection(copy({ source: server.uri, target: other }));
    expect(error).toMatchObject({ code: 'EINVAL', path: other });
    expect(error.detail).toMatch(/own export/);
    // Disjoint ranges too (README: whatever the ranges), and nothing written (found by the model test).
    fillExport(server, source);
    const before = fs.readFileSync(readExport(server, dir, 'own-before.img'));
    const disjoint = await rejection(copy({ source: server.uri, target: other, length: MiB, targetOffset: 2 * MiB }));
    expect(disjoint).toMatchObject({ code: 'EINVAL', path: other });
    expect(disjoint.detail).toMatch(/own export/);
    expect(fs.readFileSync(readExport(server, dir, 'own-after.img')).equals(before)).toBe(true);
  });

  it('server errors (error filter) are DevmoveErrors naming the URI, the NBD command and the offset', async () => {
    const writes = await startNbdkit({ plugin: 'memory', params: ['size=32M', 'error-pwrite=ENOSPC', 'error-pwrite-rate=100%'], filters: ['error'] });
    const w = await rejection(copy({ source, target: writes.uri }));
    expect(w).toMatchObject({ code: 'ENOSPC', syscall: 'NBD_CMD_WRITE', path: writes.uri });
    expect(w.offset).toBeGreaterThanOrEqual(0);
    expect(w.detail).toMatch(/ENOSPC/);
    const reads = await startNbdkit({ plugin: 'memory', params: ['size=8M', 'error-pread=EIO', 'error-pread-rate=100%'], filters: ['error'] });
    const out = path.join(dir, 'eio-out.img');
    // An empty memory export is all hole by its block status, never read: holes 'read' reads it.
    const r = await rejection(copy({ source: reads.uri, target: out, holes: 'read' }));
    expect(r).toMatchObject({ code: 'EIO', syscall: 'NBD_CMD_READ', path: reads.uri, offset: 0 });
  });

  it('a server killed mid-copy fails the copy with the export and an offset, never a hang', async () => {
    const server = await startNbdkit({ plugin: 'memory', params: ['size=32M', 'delay-write=30ms'], filters: ['delay'] });
    const job = copy({ source, target: server.uri, blockSize: '64K', queueDepth: 4 });
    while (job.progress.bytesDone < MiB) await sleep(20);
    await server.kill();
    const error = await rejection(job);
    expect(error.path).toBe(server.uri);
    expect(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ENOTCONN']).toContain(error.code);
    expect(error.syscall).toMatch(/^NBD_CMD_/);
  });

  it('a server that stops answering (SIGSTOP) does not hold a cancel: the copy ends aborted', async () => {
    const server = await startNbdkit({ plugin: 'memory', params: ['size=32M', 'delay-write=5ms'], filters: ['delay'] });
    const job = copy({ source, target: server.uri, blockSize: '64K', queueDepth: 8 });
    while (job.progress.bytesDone < MiB) await sleep(20);
    process.kill(server.pid, 'SIGSTOP');
    try {
      job.cancel();
      await expect(job.promise).rejects.toMatchObject({ name: 'AbortError' });
    } finally {
      process.kill(server.pid, 'SIGCONT');
    }
  });

  it('a server that stops answering mid-copy (SIGSTOP) is given up on after --nbd-timeout: ECONNABORTED naming the export, never a hang', async () => {
    const server = await startNbdkit({ plugin: 'memory', params: ['size=32M', 'delay-write=5ms'], filters: ['delay'] });
    const job = copy({ source, target: server.uri, blockSize: '64K', queueDepth: 8, nbdTimeout: 2 });
    while (job.progress.bytesDone < MiB) await sleep(20);
    process.kill(server.pid, 'SIGSTOP');
    try {
      const error = await rejection(job);
      expect(error).toMatchObject({ code: 'ECONNABORTED', path: server.uri });
      expect(error.message).toMatch(/the server sent nothing for \d+ s while it owed \d+ answer\(s\) \(--nbd-timeout\)/);
      expect(error.result?.bytesCopied).toBeLessThan(32 * MiB);
    } finally {
      process.kill(server.pid, 'SIGCONT');
    }
  });

  it('--nbd-timeout bounds the silence, not the copy: a server answering every 250 ms copies whole with a 2 s timeout', async () => {
    const server = await startNbdkit({ plugin: 'memory', params: ['size=4M', 'delay-write=250ms'], filters: ['delay'] });
    const small = path.join(dir, 'timeout-src.img');
    fs.writeFileSync(small, crypto.randomBytes(4 * MiB));
    const result = await copy({ source: small, target: server.uri, blockSize: '64K', queueDepth: 4, nbdTimeout: 2 });
    // 64 writes, 4 at a time, 250 ms each: about 4 s in all, twice the timeout.
    expect(result.bytesCopied).toBe(4 * MiB);
    const back = path.join(dir, 'timeout-back.img');
    await copy({ source: server.uri, target: back });
    expect(fs.readFileSync(back).equals(fs.readFileSync(small))).toBe(true);
  });

  /**
   * An empty export the source's size, served by `nbdkit file` with writes slowed (15 ms each) so a
   * test can kill the server mid-copy; the server survives a restart (the file keeps what it flushed).
   * With a mapfile path of its own, not yet there.
   */
  async function slowFileExport(stem: string): Promise<{ backing: string; server: NbdServer; mapfile: string }> {
    const backing = path.join(dir, `${stem}-backing.img`);
    fs.writeFileSync(backing, '');
    fs.truncateSync(backing, fs.statSync(source).size);
    const server = await startNbdkit({ plugin: 'file', params: [backing, 'delay-write=15ms'], filters: ['delay'] });
    const mapfile = path.join(dir, `${stem}.map`);
    fs.rmSync(mapfile, { force: true });
    return { backing, server, mapfile };
  }

  it('the mapfile resumes a copy after the server was killed and started again: the export ends identical', async () => {
    const { backing, server, mapfile } = await slowFileExport('resume');
    const first = copy({ source, target: server.uri, blockSize: '128K', queueDepth: 4, mapfile, checkpointInterval: 100 });
    while (first.progress.bytesDone < 6 * MiB) await sleep(20);
    await server.kill();
    await rejection(first);
    await server.run();
    const second = await copy({ source, target: server.uri, blockSize: '1M', mapfile });
    expect(second.bytesCopied).toBeLessThan(fs.statSync(source).size);
    expect(sha256File(backing)).toBe(sha256File(source));
  });

  it('--reconnect: a server killed mid-copy and started again, the copy goes on from its mapfile by itself; the export ends identical', async () => {
    const { backing, server, mapfile } = await slowFileExport('reconnect');
    const job = copy({ source, target: server.uri, blockSize: '128K', queueDepth: 4, mapfile, checkpointInterval: 100, reconnect: 5 });
    const events: Array<{ attempt: number; code?: string }> = [];
    job.on('reconnect', (e) => events.push({ attempt: e.attempt, code: (e.error as { code?: string }).code }));
    while (job.progress.bytesDone < 6 * MiB) await sleep(20);
    await server.kill();
    while (events.length === 0) await sleep(20);  // the copy noticed, and waits to start again
    await server.run();
    const result = await job;
    expect(result.reconnects).toBe(events.length);
    expect(events[0]).toMatchObject({ attempt: 1 });
    for (const e of events) expect(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ECONNREFUSED', 'ENOTCONN', 'ENOENT']).toContain(e.code);
    expect(result.bytesCopied).toBeLessThan(fs.statSync(source).size);  // the last run copied only what was left
    expect(result.mapfile).toMatchObject({ resumed: true, nonTried: 0, bad: 0, finished: fs.statSync(source).size });
    expect(sha256File(backing)).toBe(sha256File(source));
  });

  it('--reconnect does not retry a server\'s error reply: EIO on a write ends the copy at once', async () => {
    const server = await startNbdkit({ plugin: 'memory', params: ['size=32M', 'error-pwrite=EIO', 'error-pwrite-rate=100%'], filters: ['error'] });
    const mapfile = path.join(dir, 'no-reconnect.map');
    fs.rmSync(mapfile, { force: true });
    const job = copy({ source, target: server.uri, mapfile, reconnect: 3 });
    let reconnects = 0;
    job.on('reconnect', () => reconnects++);
    const error = await rejection(job);
    expect(error).toMatchObject({ code: 'EIO', syscall: 'NBD_CMD_WRITE', path: server.uri });
    expect(reconnects).toBe(0);
  });

  it('a job file with local and NBD pairs across two servers', async () => {
    const a = await startNbdkit({ plugin: 'memory', params: ['size=16M'] });
    const b = await startQemuNbd({ file: makeImage(dir, 'job-b.img', 16 * MiB, 'zero'), transport: 'tcp' });
    const spec = validateJob({
      version: 1,
      pairs: [
        { name: 'to-a', source, target: a.uri, length: '16M' },
        { name: 'to-b', source, target: b.uri, sourceOffset: '8M', length: '16M' },
      ],
    });
    const result = await runJob(spec);
    expect(result.pairs.map((p) => p.status)).toStrictEqual(['done', 'done']);
    const src = fs.readFileSync(source);
    expect(fs.readFileSync(readExport(a, dir, 'job-a.img')).equals(src.subarray(0, 16 * MiB))).toBe(true);
    expect(fs.readFileSync(readExport(b, dir, 'job-b-read.img')).equals(src.subarray(8 * MiB, 24 * MiB))).toBe(true);
  });

  it('a job writing overlapping ranges of one export is refused before anything runs', () => {
    const uri = 'nbd+unix:///disk?socket=/run/nowhere.sock';
    expect(() => validateJob({
      version: 1,
      pairs: [
        { name: 'one', source, target: uri, length: '8M' },
        { name: 'two', source, target: 'nbd+unix:///disk?socket=/run/../run/nowhere.sock', targetOffset: '4M', length: '8M' },
      ],
    })).toThrow(/same storage|also the target/);
  });
});
