// Real NBD servers for tests: nbdkit (any plugin, any filters) and qemu-nbd
// over a file, on a unix socket or a loopback TCP port, started by the test
// and always stopped — by stop(), by stopAllNbd() in afterAll, and at process
// exit if a test never got that far (nbdkit also dies with its parent).
// A server can be killed (SIGKILL, mid-copy) and started again on the same
// socket or port with the same arguments.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { isRoot, tempDir } from './devices';

function have(command: string, args = ['--version']): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

export const haveNbdkit = have('nbdkit');
export const haveQemuNbd = have('qemu-nbd');
/** nbdkit and qemu-nbd (Debian: nbdkit, qemu-utils) and root for the loop devices the copy tests use. */
export const skipWithoutNbd = !(isRoot && haveNbdkit && haveQemuNbd);

const READY_TIMEOUT_MS = 10_000;
const PORT_TRIES = 20;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Servers are tools, not code under test: no sanitizer runtime in them. */
function serverEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  return env;
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Whether something accepts connections at the socket or port. */
function accepts(where: { socket?: string; port?: number }): Promise<boolean> {
  return new Promise((resolve) => {
    const s = where.socket !== undefined ? net.connect(where.socket) : net.connect(where.port!, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export type Transport = 'unix' | 'tcp';

interface Launch {
  command: string;
  /** The arguments for a socket or port. */
  args(where: { socket?: string; port?: number }): string[];
}

const live = new Set<NbdServer>();

export class NbdServer {
  private child: ChildProcess | null = null;
  private stopped = false;

  private constructor(
    private readonly launch: Launch,
    readonly transport: Transport,
    readonly dir: string,
    readonly logPath: string,
    /** The unix socket (transport 'unix'). */
    readonly socket: string | undefined,
    /** The TCP port on 127.0.0.1 (transport 'tcp'). */
    public port: number | undefined,
    readonly exportName: string,
  ) {}

  /** The export's URI, as devmove takes it. */
  get uri(): string {
    const name = encodeURIComponent(this.exportName);
    return this.transport === 'unix' ? `nbd+unix:///${name}?socket=${this.socket}` : `nbd://127.0.0.1:${this.port}/${name}`;
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  /** What the server printed. */
  get log(): string {
    return fs.existsSync(this.logPath) ? fs.readFileSync(this.logPath, 'utf8') : '';
  }

  alive(): boolean {
    return this.child?.pid !== undefined && alive(this.child.pid);
  }

  static async start(launch: Launch, transport: Transport, exportName = ''): Promise<NbdServer> {
    const dir = tempDir();
    const server = new NbdServer(launch, transport, dir, path.join(dir, 'server.log'),
      transport === 'unix' ? path.join(dir, 'nbd.sock') : undefined, undefined, exportName);
    live.add(server);
    await server.run();
    return server;
  }

  /** Starts the process (again, after kill(): same socket, same port). */
  async run(): Promise<void> {
    for (let attempt = 0; attempt < PORT_TRIES; attempt++) {
      if (this.transport === 'tcp' && (this.port === undefined || attempt > 0)) this.port = 20000 + Math.floor(Math.random() * 30000);
      if (this.socket !== undefined) fs.rmSync(this.socket, { force: true });
      const log = fs.openSync(this.logPath, 'a');
      const child = spawn(this.launch.command, this.launch.args({ socket: this.socket, port: this.port }), {
        stdio: ['ignore', log, log], env: serverEnv(),
      });
      fs.closeSync(log);
      this.child = child;
      if (await this.waitReady(child)) return;
      child.kill('SIGKILL');
      if (this.transport !== 'tcp' || !/already in use/i.test(this.log)) break;
    }
    throw new Error(`${this.launch.command} did not start: ${this.log}`);
  }

  private async waitReady(child: ChildProcess): Promise<boolean> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (child.pid === undefined || !alive(child.pid)) return false;
      if (await accepts({ socket: this.socket, port: this.port })) return true;
      await sleep(20);
    }
    return false;
  }

  /** Kills the server now (SIGKILL by default: a crash, not a shutdown) and waits until it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child?.pid === undefined || !alive(child.pid)) return;
    child.kill(signal);
    for (let i = 0; i < 250 && alive(child.pid); i++) await sleep(20);
  }

  /** Stops it for good and removes its directory. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.kill('SIGTERM');
    await this.kill('SIGKILL');
    live.delete(this);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** At process exit: no waiting possible, only the signal. */
  killNow(): void {
    if (this.child?.pid !== undefined && alive(this.child.pid)) this.child.kill('SIGKILL');
  }
}

export interface NbdkitOptions {
  /** 'memory', 'file', 'sparse-random', 'pattern', ... */
  plugin: string;
  /** The plugin's and the filters' key=value parameters, e.g. ['size=64M', 'error-pread-rate=1']. */
  params?: string[];
  /** Filters, outermost first: ['error', 'delay']. */
  filters?: string[];
  transport?: Transport;
  readOnly?: boolean;
  /** nbdkit's own options before the plugin, e.g. ['--threads=1']. */
  extra?: string[];
  exportName?: string;
}

/** Starts `nbdkit [filters] plugin params` on a socket or port of its own. */
export function startNbdkit(o: NbdkitOptions): Promise<NbdServer> {
  const launch: Launch = {
    command: 'nbdkit',
    args: (where) => [
      '--foreground', '--exit-with-parent', ...(o.readOnly ? ['--readonly'] : []),
      ...(where.socket !== undefined ? ['--unix', where.socket] : ['--ipaddr', '127.0.0.1', '--port', String(where.port)]),
      ...(o.exportName !== undefined ? ['--exportname', o.exportName] : []),
      ...(o.extra ?? []), ...(o.filters ?? []).map((f) => `--filter=${f}`), o.plugin, ...(o.params ?? []),
    ],
  };
  return NbdServer.start(launch, o.transport ?? 'unix', o.exportName ?? '');
}

export interface QemuNbdOptions {
  file: string;
  transport?: Transport;
  readOnly?: boolean;
  /** Clients at once (qemu-nbd serves one by default). */
  shared?: number;
  exportName?: string;
}

/** Starts `qemu-nbd` over a raw file, persistent (it stays up between clients). */
export function startQemuNbd(o: QemuNbdOptions): Promise<NbdServer> {
  const launch: Launch = {
    command: 'qemu-nbd',
    args: (where) => [
      '--format=raw', '--persistent', `--shared=${o.shared ?? 8}`, ...(o.readOnly ? ['--read-only'] : []),
      ...(o.exportName !== undefined ? [`--export-name=${o.exportName}`] : []),
      ...(where.socket !== undefined ? [`--socket=${where.socket}`] : ['--bind=127.0.0.1', `--port=${where.port}`]),
      o.file,
    ],
  };
  return NbdServer.start(launch, o.transport ?? 'unix', o.exportName ?? '');
}

/** Stops every server this process started (afterAll). */
export async function stopAllNbd(): Promise<void> {
  for (const s of [...live]) await s.stop();
}

process.on('exit', () => {
  for (const s of live) s.killNow();
});
