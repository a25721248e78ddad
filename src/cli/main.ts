#!/usr/bin/env node
// devmove's command line: dd's operands (if= of= bs= count= skip= seek= conv=
// iflag= oflag= status=) plus long options and subcommands. Exit codes: 0
// success, 1 runtime failure, 2 usage error.
//
// The first import installs the SIGUSR1 guard (signal-guard.ts): keep it first.
import './signal-guard';
import { DEFAULT_BLOCK_SIZE, DEFAULT_QUEUE_DEPTH } from '../base/types';
import { runCopy } from './copy-command';
import { DD_HELP_OPERANDS, parseDdArgs, UsageError, type DdInvocation } from './dd-args';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, version, type CliIo } from './output';

export function helpText(): string {
  return `Usage: devmove if=SOURCE of=TARGET [OPERAND]... [OPTION]...
  or:  devmove devices [info NAME | watch] [--json]
  or:  devmove run JOBFILE [--json]
  or:  devmove demo
Copy a block device or image file to another at the speed of the slower
device: io_uring with O_DIRECT over a ring of aligned buffers, no page cache,
and success reported only once the data is on stable storage.
SOURCE and TARGET are block devices (/dev/sdb, /dev/loop3, or node names such
as sdb, loop3, 7:3), regular files, or pipes: without if= (or if=-) devmove
reads standard input, without of= (or of=-) it writes standard output, as dd;
a pipe is read in full blocks (dd's iflag=fullblock) and never resumed or
verified. SOURCE and TARGET may also be NBD exports served by qemu-nbd or
nbdkit, on this host or another: nbd://HOST[:PORT]/EXPORT or
nbd+unix:///EXPORT?socket=PATH (no TLS: use an ssh tunnel); durable there
means NBD_CMD_FLUSH answered on every connection. Where io_uring is forbidden
(seccomp, kernel.io_uring_disabled) the copy runs on worker threads and says
so. Before the first write devmove refuses a target that is mounted, held by
LVM/md/dm, read-only (a read-only NBD export too), too small, or the source
itself or overlapping it (--force overrides only a read-only mount or holders).
devmove devices lists block devices; devmove devices watch follows hot-plug.

${DD_HELP_OPERANDS}
Defaults: I/O size ${DEFAULT_BLOCK_SIZE / 1024} KiB unless bs= is given (sizes above 1 GiB are copied
in 1 GiB I/Os), ${DEFAULT_QUEUE_DEPTH} I/Os in flight. A live progress line is shown when
standard error is a terminal; kill -USR1 PID prints the statistics like dd.

Exit status:
  0  the copy completed and is durable on TARGET
  1  runtime failure (I/O error, device too small, permission, interrupted:
     130 after SIGINT, 143 after SIGTERM)
  2  usage error (bad operand or option)
  141 killed by SIGPIPE: the reader of standard output went away (as dd)

Examples:
  devmove if=/dev/sdb of=/dev/sdc
  devmove if=/dev/sdb | zstd -T0 > sdb.img.zst
  zstd -dc sdb.img.zst | devmove of=/dev/sdc
  devmove if=disk.img of=/dev/loop3 bs=4M status=progress
  devmove if=/dev/sdb of=part.img skip=2048 count=1G iflag=count_bytes
  devmove if=/dev/sdb of=/dev/sdc --json > result.jsonl
`;
}


/**
 * The process's own streams, looked up only when written to: Node makes a
 * pipe on standard output non-blocking the moment process.stdout is first
 * touched, and a copy that writes its data there (of=-) must never touch it.
 */
const PROCESS_IO: CliIo = {
  get stdout() {
    return process.stdout;
  },
  get stderr() {
    return process.stderr;
  },
};

export async function main(argv: readonly string[], io: CliIo = PROCESS_IO): Promise<number> {
  let inv: DdInvocation;
  if (argv[0] === 'devices') {
    // Loaded on demand: a copy never needs the device manager's command line.
    const { runDevicesCommand } = await import('./devices-command');
    return runDevicesCommand(argv.slice(1), io);
  }
  if (argv[0] === 'run') {
    const { runRunCommand } = await import('./run-command');
    return runRunCommand(argv.slice(1), io);
  }
  try {
    inv = parseDdArgs(argv);
    if (inv.command === 'help') {
      io.stdout.write(helpText());
      return EXIT_OK;
    }
    if (inv.command === 'version') {
      io.stdout.write(`devmove ${version()}\n`);
      return EXIT_OK;
    }
    if (inv.command === 'demo') {
      const { runDemo } = await import('./demo');
      return await runDemo(inv, io);
    }
    return await runCopy(inv, { io, handleSignals: true, argv });
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`devmove: ${error.message}\nTry 'devmove --help' for more information.\n`);
      return EXIT_USAGE;
    }
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`devmove: ${message}\n`);
    return EXIT_FAILURE;
  }
}

if (require.main === module) {
  // process.exit(), not exitCode: a natural end tears the environment down, which closes the
  // SIGUSR1 handle and restores the signal's default action (terminate) for the last milliseconds,
  // so a dd user's SIGUSR1 then would kill a copy that has already succeeded. exit() skips that
  // teardown. Standard output and error are synchronous on Linux (files, pipes, terminals), so
  // nothing written is lost.
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`devmove: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(EXIT_FAILURE);
    },
  );
}
