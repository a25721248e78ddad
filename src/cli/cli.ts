// devmove's command line: dd's operands (if= of= bs= count= skip= seek= conv=
// iflag= oflag= status=) plus long options and subcommands. Exit codes: 0
// success, 1 runtime failure, 2 usage error.
import { DEFAULT_BLOCK_SIZE, DEFAULT_QUEUE_DEPTH } from '../base/types';
import { runCopy } from './copy-command';
import { DD_HELP_OPERANDS, parseDdArgs, UsageError, type DdInvocation } from './dd-args';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, processIo, version, type CliIo } from './output';
import { StdioGuard } from './stdio';

export function helpText(): string {
  return `Usage: devmove if=SOURCE of=TARGET [OPERAND]... [OPTION]...
  or:  devmove devices [info NAME | watch] [--json]
  or:  devmove run JOBFILE [--json]
  or:  devmove map MAPFILE [--svg OUT]
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
devmove map draws a ddrescue mapfile (--mapfile) as a block grid, or as SVG.

${DD_HELP_OPERANDS}
Defaults: I/O size ${DEFAULT_BLOCK_SIZE / 1024} KiB unless bs= is given (sizes above 1 GiB are copied
in 1 GiB I/Os), ${DEFAULT_QUEUE_DEPTH} I/Os in flight. A live progress line (bar, percent, rate,
ETA) is shown when standard error is a terminal; kill -USR1 PID prints the statistics like dd.

Exit status:
  0  the copy completed and is durable on TARGET
  1  runtime failure (I/O error, device too small, permission, unreadable
     blocks skipped with conv=noerror, standard output or error not
     writable; interrupted: 130 after SIGINT, 143 after SIGTERM)
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


export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  let inv: DdInvocation;
  if (argv[0] === 'devices') {
    // Loaded on demand: a copy never needs the device manager's command line.
    const { runDevicesCommand } = await import('./devices-command');
    return runDevicesCommand(argv.slice(1), io);
  }
  if (argv[0] === 'map') {
    const { runMapCommand } = await import('./map-command');
    return runMapCommand(argv.slice(1), io);
  }
  if (argv[0] === 'run') {
    const { runRunCommand } = await import('./run-command');
    return runRunCommand(argv.slice(1), io);
  }
  try {
    inv = parseDdArgs(argv);
    for (const warning of inv.warnings) io.stderr.write(`devmove: ${warning}\n`);
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

/** Runs the command line with these arguments and exits with its status (the bin, src/cli/main.ts, calls it). */
export function run(argv: readonly string[]): void {
  // process.exit(), not exitCode: a natural end tears the environment down, which closes the
  // SIGUSR1 handle and restores the signal's default action (terminate) for the last milliseconds,
  // so a dd user's SIGUSR1 then would kill a copy that has already succeeded. exit() skips that
  // teardown. Standard output and error are synchronous on Linux (files, pipes, terminals), so
  // nothing written is lost; one turn of the loop first lets a write that failed report itself
  // (StdioGuard: exit 1, as dd after `2>/dev/full`).
  const stdio = new StdioGuard();
  main(argv, stdio.io).then(
    (code) => setImmediate(() => process.exit(stdio.exitCode(code))),
    (error: unknown) => {
      stdio.io.stderr.write(`devmove: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      setImmediate(() => process.exit(EXIT_FAILURE));
    },
  );
}
