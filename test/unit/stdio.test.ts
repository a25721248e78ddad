// StdioGuard: write errors on stdout/stderr make the exit status 1 and are
// reported in one line, a closed descriptor behaves as dd's EBADF, a reader
// that went away (EPIPE) is not a failure. The real descriptors (2>&-,
// /dev/full) are in test/conformance/dd-upstream.test.ts (stderr.sh).
import { Writable } from 'node:stream';

import { describe, expect, it } from 'vitest';

import { main } from '../../src/cli/cli';
import { StdioGuard } from '../../src/cli/stdio';

/** A stream that keeps what it is given, or fails every write with `code`. */
function sink(code?: string): Writable & { text: string } {
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (code) callback(Object.assign(new Error(code), { code, errno: code === 'ENOSPC' ? -28 : -32 }));
      else {
        stream.text += chunk.toString();
        callback();
      }
    },
  }) as Writable & { text: string };
  stream.text = '';
  return stream;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('StdioGuard', () => {
  it('stdout on a full disk: exit 1, one line on stderr', async () => {
    const stderr = sink();
    const guard = new StdioGuard({ stdout: sink('ENOSPC'), stderr }, { stdout: false, stderr: false });
    expect(await main(['--version'], guard.io)).toBe(0);
    await tick();
    expect(guard.exitCode(0)).toBe(1);
    expect(stderr.text).toBe('devmove: write error on standard output: no space left on device (ENOSPC)\n');
  });

  it('stderr closed: the first write fails with EBADF, the exit status is 1, nothing can be told', async () => {
    const stdout = sink();
    const guard = new StdioGuard({ stdout, stderr: sink() }, { stdout: false, stderr: true });
    expect(await main(['frob=1'], guard.io)).toBe(2);
    await tick();
    expect(guard.failure).toMatchObject({ stream: 'standard error', code: 'EBADF' });
    expect(guard.exitCode(0)).toBe(1);
    expect(guard.exitCode(2)).toBe(2); // a usage error keeps its own status
    expect(stdout.text).toBe('');
  });

  it('nothing written to a closed stream: no failure (dd --help >/dev/null 2>&- exits 0)', async () => {
    const guard = new StdioGuard({ stdout: sink(), stderr: sink() }, { stdout: false, stderr: true });
    expect(await main(['--help'], guard.io)).toBe(0);
    await tick();
    expect(guard.exitCode(0)).toBe(0);
  });

  it('a reader that went away (EPIPE) is not a failure', async () => {
    const stderr = sink();
    const guard = new StdioGuard({ stdout: sink('EPIPE'), stderr }, { stdout: false, stderr: false });
    expect(await main(['--help'], guard.io)).toBe(0);
    await tick();
    expect(guard.exitCode(0)).toBe(0);
    expect(stderr.text).toBe('');
  });
});
