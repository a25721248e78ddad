// Running devmove's CLI and the tools it is compared with (GNU dd, ddrescue,
// strace) as separate processes, the way a user's shell would.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';

export const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
/** The installed command: a shell launcher that starts Node on CLI. */
export const LAUNCHER = path.join(__dirname, '..', '..', 'bin', 'devmove');

export interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Tools run in the C locale, so that their messages are the ones the
 * upstream tests compare against ('0x', not ‘0x’), and without the sanitizer
 * preload of `npm run test:sanitize` (they are not the code under test).
 */
function toolEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', ...extra };
  if (!env.LD_PRELOAD?.includes('asan')) return env;
  delete env.LD_PRELOAD;
  return env;
}

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Run {
  const r = spawnSync(command, args, { encoding: 'utf8', env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** devmove with these arguments (the built CLI, dist/cli/main.js). */
export function devmove(args: readonly string[], timeoutMs?: number, env: Record<string, string> = {}): Run {
  return run(process.execPath, [CLI, ...args], { ...process.env, LC_ALL: 'C', ...env }, timeoutMs);
}

/** GNU dd with these operands, in the C locale. */
export function gnuDd(args: readonly string[]): Run {
  return run('dd', args, toolEnv());
}

/** Any tool on PATH (ddrescue, ddrescuelog, strace, …), in the C locale. */
export function tool(command: string, args: readonly string[], timeoutMs?: number): Run {
  return run(command, args, toolEnv(), timeoutMs);
}

/**
 * A bash script, for what needs a shell (`ulimit`, `2>&-`, `>/dev/full`).
 * The shell function DEVMOVE runs devmove as users do, through its launcher
 * bin/devmove (with this test's Node); `vars` become environment variables,
 * so paths need no quoting inside the script ("$OUT").
 */
export function shell(script: string, vars: Record<string, string> = {}, timeoutMs?: number): Run {
  const env = toolEnv({ ...vars, DEVMOVE_NODE: process.execPath, LAUNCHER });
  return run('bash', ['-c', `DEVMOVE() { "$LAUNCHER" "$@"; }\n${script}`], env, timeoutMs);
}

/** Is this program installed (answers --version)? */
export function installed(command: string): boolean {
  const r = spawnSync(command, ['--version'], { stdio: 'ignore', env: toolEnv() });
  return !r.error && r.status === 0;
}

/** shell(), without waiting: for a command that meets another process at a FIFO. */
export function shellAsync(script: string, vars: Record<string, string> = {}, timeoutMs = 60_000): Promise<Run> {
  const env = toolEnv({ ...vars, DEVMOVE_NODE: process.execPath, LAUNCHER });
  const child = spawn('bash', ['-c', `DEVMOVE() { "$LAUNCHER" "$@"; }\n${script}`], { env, timeout: timeoutMs });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
}

// Writes each piece, then waits until the reader has taken all of it (FIONREAD
// on the pipe is 0) before the next: every piece is one short read for the
// reader, whatever the timing. Python, for the ioctl Node does not have.
const FEEDER = `
import fcntl, os, struct, sys, termios, time
fd = os.open(sys.argv[1], os.O_WRONLY)
pieces = sys.argv[2:]
for i, piece in enumerate(pieces):
    os.write(fd, piece.encode())
    while i + 1 < len(pieces) and struct.unpack('i', fcntl.ioctl(fd, termios.FIONREAD, bytes(4)))[0] > 0:
        time.sleep(0.002)
os.close(fd)
`;

/** Feeds `pieces` into the FIFO `fifo` as separate short reads (opens it for writing, so waits for a reader). */
export function feedFifo(fifo: string, pieces: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', FEEDER, fifo, ...pieces], { env: toolEnv(), timeout: 60_000 });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout: '', stderr }));
  });
}
