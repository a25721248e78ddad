// Standard output and error as GNU dd treats them: output that cannot be
// written (a full disk, a closed descriptor) makes the exit status 1 and is
// reported in one line on whichever stream still works, never as a crash with
// a stack trace (coreutils tests/dd/stderr.sh: `dd 2>&-` and `dd 2>/dev/full`
// exit 1, `dd --help >/dev/null 2>&-` exits 0).
import { Writable } from 'node:stream';

import { describeErrno } from '../base/errors';
import { processIo, type CliIo } from './output';

type StreamName = 'standard output' | 'standard error';

/** A write error on one of the standard streams. */
export interface StdioFailure {
  stream: StreamName;
  code: string;
  description: string;
}

/**
 * Which of fds 1 and 2 were closed when devmove was started. Node.js reopens
 * a closed standard descriptor on /dev/null, read-write, before any JavaScript
 * runs (src/node.cc, PlatformInit), and a parent's /dev/null looks the same
 * (Python's subprocess.DEVNULL, Node's stdio 'ignore' open it read-write too),
 * so only the launcher, bin/devmove, can see it: it says so in
 * DEVMOVE_CLOSED_STDIO ('2' for `2>&-`), which is not passed on.
 */
export function closedAtStart(env: NodeJS.ProcessEnv = process.env): { stdout: boolean; stderr: boolean } {
  const closed = env.DEVMOVE_CLOSED_STDIO ?? '';
  delete env.DEVMOVE_CLOSED_STDIO;
  return { stdout: closed.includes('1'), stderr: closed.includes('2') };
}

/** Stands in for a closed descriptor: every write fails with EBADF, as it would for dd. */
class ClosedStream extends Writable {
  override _write(_chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    callback(Object.assign(new Error('EBADF: bad file descriptor, write'), { code: 'EBADF', errno: -9, syscall: 'write' }));
  }
}

function failureOf(stream: StreamName, error: unknown): StdioFailure {
  const e = error as NodeJS.ErrnoException;
  const [code, description] = typeof e?.errno === 'number' ? describeErrno(e.errno) : [e?.code ?? 'EIO', String(e?.message ?? error)];
  return { stream, code, description };
}

export class StdioGuard {
  readonly io: CliIo;
  private first: StdioFailure | undefined;
  private reported = false;

  constructor(
    real: CliIo = processIo(),
    closed: { stdout: boolean; stderr: boolean } = closedAtStart(),
  ) {
    // Each stream is taken (and watched) on its first use: Node builds process.stdout/stderr, and
    // loads net/stream for them, when they are first read, ~3 ms that a copy can spend after its
    // engine has started, or never (status=none writes nothing on success). README, start-up.
    let stdout: NodeJS.WritableStream | undefined;
    let stderr: NodeJS.WritableStream | undefined;
    const watched = (stream: NodeJS.WritableStream, name: StreamName): NodeJS.WritableStream => {
      stream.on('error', (error: unknown) => this.fail(failureOf(name, error)));
      return stream;
    };
    this.io = {
      get stdout() {
        return (stdout ??= watched(closed.stdout ? new ClosedStream() : real.stdout, 'standard output'));
      },
      get stderr() {
        return (stderr ??= watched(closed.stderr ? new ClosedStream() : real.stderr, 'standard error'));
      },
    };
  }

  /** The first write error, if any. */
  get failure(): StdioFailure | undefined {
    return this.first;
  }

  /**
   * The exit status once the command returned `code`: 1 instead of 0 after a
   * write error on either stream. A reader that went away from standard
   * output (EPIPE, `| head`) is not a failure, as it is not for `devmove devices watch`.
   */
  exitCode(code: number): number {
    return code === 0 && this.first !== undefined ? 1 : code;
  }

  private fail(failure: StdioFailure): void {
    if (failure.stream === 'standard output' && failure.code === 'EPIPE') return;
    this.first ??= failure;
    if (process.exitCode === 0) process.exitCode = 1;
    if (this.reported || failure.stream === 'standard error') return;
    this.reported = true;
    // Standard error may be broken too: then there is nobody to tell.
    this.io.stderr.write(`devmove: write error on ${failure.stream}: ${failure.description} (${failure.code})\n`);
  }
}
