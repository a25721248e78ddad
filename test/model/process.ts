// Runs devmove's CLI as a child process under a control (SIGINT or SIGKILL at a
// moment, a burst of SIGUSR1), and watches it while it lives for invariant (e):
// no devmove process ever listens on an inspector port. Watched two ways: what
// Node prints when its inspector starts ("Debugger listening on ws://…", or
// "Starting inspector on … failed" when the port is taken), and any listening
// TCP socket whose inode is one of the process's descriptors (/proc/PID/fd
// against /proc/net/tcp and tcp6) — 127.0.0.1:9229 or any other port.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

import { CLI, LAUNCHER } from './script';

/** How devmove is started: through the launcher with this test's own Node, or main.js when there is none. */
export function devmoveCommand(): { file: string; args: string[] } {
  return fs.existsSync(LAUNCHER) ? { file: LAUNCHER, args: [] } : { file: process.execPath, args: [CLI] };
}

export interface BuildFeatures {
  /** --io-engine=threads (and DEVMOVE_IO_ENGINE): the threads I/O driver. */
  threads: boolean;
  /** Pipes as dd has them: no if= (or if=-) reads standard input, no of= writes standard output, FIFOs. */
  pipes: boolean;
  /** NBD URIs as sources and targets (nbd://, nbd+unix://). */
  nbd: boolean;
}

let features: BuildFeatures | undefined;

/** What the devmove under test can do, from its --help (so this branch runs against builds without them). */
export function buildFeatures(): BuildFeatures {
  if (features) return features;
  const how = devmoveCommand();
  const help = spawnSync(how.file, [...how.args, '--help'], { encoding: 'utf8', env: { ...process.env, DEVMOVE_NODE: process.execPath } }).stdout ?? '';
  features = { threads: help.includes('--io-engine'), pipes: /if=-/.test(help) && /standard input/.test(help), nbd: help.includes('nbd+unix://') };
  return features;
}

/** How a command's data reaches it, or leaves it, other than by if=/of= paths. */
export interface Stdio {
  /** Standard input is a pipe fed by `cat FILE` (FILE relative to the cwd). */
  catIn?: string;
  /** A named FIFO fed by `cat FILE > FIFO`, started beside devmove. */
  fifo?: { fifo: string; file: string };
  /** Standard output redirected by the shell: `> FILE`, `>> FILE` or `1<> FILE`. */
  stdout?: { mode: '>' | '>>' | '1<>'; file: string };
  /** Extra environment (DEVMOVE_IO_ENGINE). */
  env?: Record<string, string>;
}

export interface Run {
  argv: string[];
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** Evidence of an inspector, for invariant (e). */
  inspector: string[];
  hung: boolean;
  usr1Sent: number;
  /** Times the process was examined for listening sockets. */
  polls: number;
}

export interface RunControl {
  sigintAfterMs?: number;
  killAfterMs?: number;
  /** Count sigintAfterMs/killAfterMs from the moment devmove's addon is mapped, not from the spawn. */
  afterLoad?: boolean;
  usr1?: { startMs: number; afterLoad: boolean; stopAfterMs?: number };
  /** SIGINT this long after the SIGUSR1 burst began (for commands that run until stopped). */
  sigintAfterBurstMs?: number;
  stdio?: Stdio;
}

/** A 8 MiB copy takes well under a second; two minutes means stuck (or a machine that is). */
const RUN_TIMEOUT_MS = 120_000;
/**
 * Node's own words when its inspector starts. "Starting inspector on ADDR failed" counts
 * when ADDR is one a socket can listen on (the port was only taken by someone else); the
 * launcher points it at TEST-NET-1 (192.0.2.1), where no socket can listen: not a violation.
 */
const INSPECTOR_TEXT = /Debugger listening|Debugger attached|Starting inspector on (?!192\.0\.2\.)/;

/** Listening TCP sockets: inode → local address. */
function listeningSockets(): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue;
      const [addr, port] = f[1].split(':');
      const ip = addr.length === 8 ? addr.match(/../g)?.reverse().map((h) => parseInt(h, 16)).join('.') : `[${addr}]`;
      out.set(f[9], `${ip}:${parseInt(port, 16)}`);
    }
  }
  return out;
}

/** Socket inodes among a process's descriptors. */
function socketInodes(pid: number): string[] {
  const out: string[] = [];
  let fds: string[] = [];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.push(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** What a stuck process's threads wait in: state and kernel wait channel per thread. */
function whereStuck(pid: number): string {
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .map((tid) => {
        const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const state = stat.slice(stat.lastIndexOf(')') + 2)[0];
        let wchan = '';
        try {
          wchan = fs.readFileSync(`/proc/${pid}/task/${tid}/wchan`, 'utf8');
        } catch {
          // not readable here
        }
        return `${tid}:${state}${wchan && wchan !== '0' ? `(${wchan})` : ''}`;
      })
      .join(' ');
  } catch {
    return 'gone';
  }
}

/** Has the process mapped devmove's addon yet (its JavaScript is running devmove's code)? */
function addonLoaded(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/maps`, 'utf8').includes('devmove.node');
  } catch {
    return false;
  }
}

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DEVMOVE_NODE: process.execPath };
  delete env.NODE_OPTIONS; // a debugger or loader of the test runner's must not leak into devmove
  delete env.LD_PRELOAD;
  return env;
}

/** One devmove process under a control, watched for an inspector while it lives. */
class Watched {
  readonly run: Run;
  private readonly child: ChildProcess;
  private readonly timers: NodeJS.Timeout[] = [];
  private exited = false;
  private readonly started = performance.now();

  private readonly dataToStdout: boolean;
  private writer: ChildProcess | undefined;

  get writerPid(): number | undefined {
    return this.writer?.pid;
  }

  constructor(argv: string[], cwd: string, stdio: Stdio = {}) {
    const how = devmoveCommand();
    const env = { ...childEnv(), ...stdio.env };
    this.dataToStdout = stdio.stdout !== undefined;
    if (stdio.fifo) {
      // The FIFO's writer, as `cat FILE > FIFO &` in a shell: its open waits for devmove's.
      this.writer = spawn('bash', ['-c', 'exec cat -- "$1" > "$2"', 'bash', stdio.fifo.file, stdio.fifo.fifo], { cwd, stdio: 'ignore' });
    }
    if (stdio.catIn !== undefined || stdio.stdout) {
      // bash sets up the pipe (process substitution: a real pipe, as `cat FILE | devmove`) and the
      // redirection, then execs devmove: the pid watched and signalled is devmove's.
      const redirect = [stdio.catIn !== undefined ? '< <(exec cat -- "$DEVMOVE_MODEL_IN")' : '', stdio.stdout ? `${stdio.stdout.mode} "$DEVMOVE_MODEL_OUT"` : ''].join(' ');
      Object.assign(env, { DEVMOVE_MODEL_IN: stdio.catIn ?? '', DEVMOVE_MODEL_OUT: stdio.stdout?.file ?? '' });
      this.child = spawn('bash', ['-c', `exec "$@" ${redirect}`, 'bash', how.file, ...how.args, ...argv], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    } else {
      this.child = spawn(how.file, [...how.args, ...argv], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    }
    this.run = { argv, pid: this.child.pid ?? 0, code: null, signal: null, stdout: '', stderr: '', ms: 0, inspector: [], hung: false, usr1Sent: 0, polls: 0 };
    this.child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.run.stdout += d));
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.run.stderr += d));
    this.child.on('exit', () => (this.exited = true));
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.exited) this.child.kill(sig);
  }

  every(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setInterval(fn, ms);
    this.timers.push(t);
    return t;
  }

  after(ms: number, fn: () => void): void {
    this.timers.push(setTimeout(fn, ms));
  }

  /** Calls `then` once the addon is mapped (polled every 2 ms); never if the process exits first. */
  whenLoaded(then: () => void): void {
    const wait = this.every(2, () => {
      if (this.exited) clearInterval(wait);
      else if (addonLoaded(this.run.pid)) {
        clearInterval(wait);
        then();
      }
    });
  }

  /** (e): a listening TCP socket among the process's descriptors. */
  inspect(): void {
    this.run.polls++;
    const inodes = socketInodes(this.run.pid);
    if (inodes.length === 0) return;
    const listening = listeningSockets();
    for (const ino of inodes) {
      const where = listening.get(ino);
      if (where && !this.run.inspector.some((e) => e.includes(where))) this.run.inspector.push(`pid ${this.run.pid} listens on ${where} (socket inode ${ino})`);
    }
  }

  /** SIGUSR1 every 3 ms from now, until the process exits (or `stopAfterMs`). */
  burst(stopAfterMs: number | undefined, sigintAfterMs: number | undefined): void {
    const t0 = performance.now();
    const t = this.every(3, () => {
      if (this.exited || (stopAfterMs !== undefined && performance.now() - t0 > stopAfterMs)) {
        clearInterval(t);
        return;
      }
      this.run.usr1Sent++;
      this.signal('SIGUSR1');
    });
    if (sigintAfterMs !== undefined) this.after(sigintAfterMs, () => this.signal('SIGINT'));
  }

  finished(): Promise<Run> {
    return new Promise((resolve) => {
      this.child.on('error', (e) => (this.run.stderr += `spawn failed: ${e.message}\n`));
      this.child.on('close', (code, sig) => {
        this.exited = true;
        for (const t of this.timers) clearTimeout(t);
        Object.assign(this.run, { code, signal: sig, ms: performance.now() - this.started });
        for (const line of this.run.stderr.split('\n')) if (INSPECTOR_TEXT.test(line)) this.run.inspector.push(`stderr: ${line.trim()}`);
        // With the data on standard output, --json lines go to standard error (README: Pipes).
        if (this.dataToStdout) this.run.stdout = this.run.stderr.split('\n').filter((l) => l.startsWith('{')).join('\n');
        const writer = this.writer;
        if (!writer || writer.exitCode !== null || writer.signalCode !== null) return resolve(this.run);
        // A FIFO writer devmove never opened (a refusal) waits in open() for ever: end it.
        writer.once('close', () => resolve(this.run));
        writer.kill('SIGKILL');
      });
    });
  }
}

/** Runs `devmove ARGV…` in `cwd` under `control`; never rejects. */
export function invoke(argv: string[], cwd: string, control: RunControl = {}): Promise<Run> {
  const w = new Watched(argv, cwd, control.stdio);
  const burst = control.usr1;
  w.every(burst ? 4 : 25, () => w.inspect());
  const armSignals = (): void => {
    if (control.sigintAfterMs !== undefined) w.after(control.sigintAfterMs, () => w.signal('SIGINT'));
    if (control.killAfterMs !== undefined) w.after(control.killAfterMs, () => w.signal('SIGKILL'));
  };
  if (control.afterLoad) w.whenLoaded(armSignals);
  else armSignals();
  if (burst) {
    const begin = (): void => w.burst(burst.stopAfterMs, control.sigintAfterBurstMs);
    if (burst.afterLoad) w.whenLoaded(begin);
    else w.after(burst.startMs, begin);
  }
  w.after(RUN_TIMEOUT_MS, () => {
    w.run.hung = true;
    w.run.stderr += `[model test] still running after ${RUN_TIMEOUT_MS / 1000} s: ${whereStuck(w.run.pid)}${w.writerPid ? `; the FIFO's writer ${w.writerPid}: ${whereStuck(w.writerPid)}` : ''}\n`;
    w.signal('SIGKILL');
  });
  return w.finished();
}

/** Is the process gone (not even a zombie)? */
export function gone(pid: number): boolean {
  return pid <= 0 || !fs.existsSync(`/proc/${pid}`);
}

/** The last JSON line of a given type on stdout. */
export function jsonLine(stdout: string, type: string): Record<string, unknown> | undefined {
  const lines = stdout.split('\n').filter((l) => l.startsWith('{'));
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const o = JSON.parse(lines[i]) as Record<string, unknown>;
      if (o.type === type) return o;
    } catch {
      // not JSON
    }
  }
  return undefined;
}
