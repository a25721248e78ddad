// Runs devmove's CLI as a child process under a control (SIGINT or SIGKILL at a
// moment, a burst of SIGUSR1), and watches it while it lives for invariant (e):
// no devmove process ever listens on an inspector port. Watched two ways: what
// Node prints when its inspector starts ("Debugger listening on ws://…", or
// "Starting inspector on … failed" when the port is taken), and any listening
// TCP socket whose inode is one of the process's descriptors (/proc/PID/fd
// against /proc/net/tcp and tcp6) — 127.0.0.1:9229 or any other port.
import { spawn } from 'node:child_process';
import fs from 'node:fs';

import { CLI } from './script';

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
}

const RUN_TIMEOUT_MS = 45_000;
const INSPECTOR_TEXT = /Debugger listening|Starting inspector|Debugger attached/;

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

/** Has the process mapped devmove's addon yet (its JavaScript is running devmove's code)? */
function addonLoaded(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/maps`, 'utf8').includes('devmove.node');
  } catch {
    return false;
  }
}

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // a debugger or loader of the test runner's must not leak into devmove
  delete env.LD_PRELOAD;
  return env;
}

/** Runs `devmove ARGV…` in `cwd` under `control`; never rejects. */
export function invoke(argv: string[], cwd: string, control: RunControl = {}): Promise<Run> {
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, ...argv], { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid ?? 0;
  const run: Run = { argv, pid, code: null, signal: null, stdout: '', stderr: '', ms: 0, inspector: [], hung: false, usr1Sent: 0, polls: 0 };
  child.stdout.setEncoding('utf8').on('data', (d: string) => (run.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (run.stderr += d));
  let exited = false;
  const timers: NodeJS.Timeout[] = [];
  const signal = (sig: NodeJS.Signals): void => {
    if (!exited) child.kill(sig);
  };

  /** Calls `then` once the addon is mapped (polled every 2 ms); never if the process exits first. */
  const whenLoaded = (then: () => void): void => {
    const wait = setInterval(() => {
      if (exited) clearInterval(wait);
      else if (addonLoaded(pid)) {
        clearInterval(wait);
        then();
      }
    }, 2);
    timers.push(wait);
  };
  const inspect = (): void => {
    run.polls++;
    const inodes = socketInodes(pid);
    if (inodes.length > 0) {
      const listening = listeningSockets();
      for (const ino of inodes) {
        const where = listening.get(ino);
        if (where && !run.inspector.some((e) => e.includes(where))) run.inspector.push(`pid ${pid} listens on ${where} (socket inode ${ino})`);
      }
    }
  };
  const burst = control.usr1;
  timers.push(setInterval(inspect, burst ? 4 : 25));
  const armSignals = (): void => {
    if (control.sigintAfterMs !== undefined) timers.push(setTimeout(() => signal('SIGINT'), control.sigintAfterMs));
    if (control.killAfterMs !== undefined) timers.push(setTimeout(() => signal('SIGKILL'), control.killAfterMs));
  };
  if (control.afterLoad) whenLoaded(armSignals);
  else armSignals();
  if (burst) {
    const begin = (): void => {
      const t0 = performance.now();
      const every = setInterval(() => {
        if (exited || (burst.stopAfterMs !== undefined && performance.now() - t0 > burst.stopAfterMs)) {
          clearInterval(every);
          return;
        }
        run.usr1Sent++;
        signal('SIGUSR1');
      }, 3);
      timers.push(every);
      if (control.sigintAfterBurstMs !== undefined) timers.push(setTimeout(() => signal('SIGINT'), control.sigintAfterBurstMs));
    };
    if (burst.afterLoad) {
      whenLoaded(begin);
    } else {
      timers.push(setTimeout(begin, burst.startMs));
    }
  }
  timers.push(
    setTimeout(() => {
      run.hung = true;
      signal('SIGKILL');
    }, RUN_TIMEOUT_MS),
  );
  return new Promise((resolve) => {
    child.on('error', (e) => {
      run.stderr += `spawn failed: ${e.message}\n`;
    });
    child.on('close', (code, sig) => {
      exited = true;
      for (const t of timers) clearTimeout(t);
      run.code = code;
      run.signal = sig;
      run.ms = performance.now() - started;
      for (const line of run.stderr.split('\n')) if (INSPECTOR_TEXT.test(line)) run.inspector.push(`stderr: ${line.trim()}`);
      resolve(run);
    });
    child.on('exit', () => {
      exited = true;
    });
  });
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
