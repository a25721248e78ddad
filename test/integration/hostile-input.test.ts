// Malformed and dangerous command lines, table-driven. Every row is one
// invocation of the real CLI (a spawned process) and states the exit code (2
// usage error, 1 runtime failure) and what the one-line diagnostic must say.
// For every row the test also checks that the diagnostic is a single
// 'devmove: ' line without a stack trace, that every if=/of= path keeps its
// bytes (or keeps not existing), and that no regular file appeared in /dev or
// in the test's own directory.
//
// Adding a row: append to USAGE_ROWS or RUNTIME_ROWS below. `args` receives
// the fixture (images, loop devices, odd files) the suite made in /dev/shm;
// `io(f, ...)` is the usual "if=<1 MiB image> of=<1 MiB image> ..." prefix.
// Operands that name files written or read by new options (--mapfile=, a
// second of=, job files) are protected automatically once their name is in
// WATCHED_OPERANDS / WATCHED_OPTIONS.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { attachLoop, detachAll, deviceSize, makeImage, sha256Range, skipWithoutLoop, tempDir } from '../helpers/devices';

const KiB = 1024;
const MiB = 1024 * KiB;
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
/** The module with the CLI's main() (main.js, the bin, only runs it with process.argv). */
const CLI_MODULE = path.join(__dirname, '..', '..', 'dist', 'cli', 'cli.js');
/** The second line every usage error (exit 2) ends with, as GNU dd's "Try 'dd --help'". */
const USAGE_HINT = "Try 'devmove --help' for more information.";
/** dd operands whose value is a path the invocation must not change (beyond what it is refused to do). */
const WATCHED_OPERANDS = ['if', 'of'];
/** Long options whose value is such a path ('--mapfile=PATH' or '--mapfile PATH'). */
const WATCHED_OPTIONS: string[] = ['--mapfile', '--rate-file'];
/** A refusal takes well under a second; rows expected to hang without a fix use a shorter limit. */
const DEFAULT_TIMEOUT_MS = 30_000;
const HANG_TIMEOUT_MS = 5_000;
/** DEVMOVE_KNOWN_BUGS=strict runs the rows marked `bug` as ordinary tests, to check a fix. */
const STRICT = process.env.DEVMOVE_KNOWN_BUGS === 'strict';

interface Fixture {
  dir: string;
  /** 1 MiB of random bytes. */
  src: string;
  /** 1 MiB of 0x5a: the usual target. */
  dst: string;
  /** A loop device over a 1 MiB random image (srcLoopImage). */
  srcLoop: string;
  srcLoopImage: string;
  /** A loop device over a 1 MiB image of 0xa5. */
  dstLoop: string;
  /** A read-only loop device (1 MiB). */
  roLoop: string;
  /** A 64 KiB loop device: too small for the 1 MiB sources. */
  smallLoop: string;
  subdir: string;
  fifo: string;
  socket: string;
  /** A symlink to a name in /dev that does not exist. */
  danglingToDev: string;
  /** Where danglingToDev points. */
  danglingToDevTarget: string;
  /** A symlink to a missing file in dir. */
  danglingLocal: string;
  /** A symlink to /dev itself. */
  devDirLink: string;
  /** A path in /dev that does not exist. */
  devMissing: string;
  /** A path in dir that does not exist (a different one per name). */
  missing: (name: string) => string;
}

interface Row {
  name: string;
  args: (f: Fixture) => string[];
  exit: 1 | 2;
  /** What the single 'devmove: ' line must say (matched against the whole line). */
  stderr: RegExp;
  /** Further paths that must be unchanged / stay missing (besides WATCHED_OPERANDS and WATCHED_OPTIONS). */
  watch?: (f: Fixture) => string[];
  /**
   * Pass the arguments to the CLI's main() as JSON instead of through execve, in
   * a spawned process too: for arguments execve cannot carry (NUL bytes).
   */
  viaMain?: boolean;
  timeoutMs?: number;
  /** A known bug: the row states the correct behaviour and runs as it.fails until the fix lands. */
  bug?: string;
}

/** "if=<src> of=<dst> ..." */
const io =
  (...extra: string[]) =>
  (f: Fixture): string[] => [`if=${f.src}`, `of=${f.dst}`, ...extra];

// ---------------------------------------------------------------------------
// Usage errors: exit 2, 'devmove: <what is wrong>' then the --help hint.
// ---------------------------------------------------------------------------
const USAGE_ROWS: Row[] = [
  // missing, unknown and stray arguments
  // no if= / of= read standard input / write standard output (as dd); what a stream cannot do is refused
  { name: 'standard input with --verify', args: (f) => [`of=${f.dst}`, '--verify'], exit: 2, stderr: /verify .*cannot be used: the source is standard input/ },
  { name: 'standard output with a mapfile', args: (f) => [`if=${f.src}`, `--mapfile=${f.missing('stdout.map')}`], exit: 2, stderr: /mapfile .*cannot be used: the target is standard output/ },
  { name: 'standard output twice', args: (f) => [`if=${f.src}`, 'of=-', `of=${f.dst}`, 'of=-'], exit: 2, stderr: /'of=-' is given twice|standard output \('-'\) can be a target only once/ },
  { name: 'unknown operand', args: io('frob=1'), exit: 2, stderr: /unknown operand 'frob=1'/ },
  { name: 'operand with an upper-case key', args: (f) => [`IF=${f.src}`, `of=${f.dst}`], exit: 2, stderr: /unknown operand 'IF=/ },
  { name: 'unknown long option', args: io('--frobnicate'), exit: 2, stderr: /unknown option '--frobnicate'/ },
  { name: 'unknown short option', args: io('-x'), exit: 2, stderr: /unknown option '-x'/ },
  { name: 'a stray word', args: io('copy'), exit: 2, stderr: /unexpected argument 'copy'/ },
  { name: "'demo' not first", args: io('demo'), exit: 2, stderr: /'demo' must be the first argument/ },
  { name: 'an option after --', args: io('--', '--force'), exit: 2, stderr: /unexpected argument '--force'/ },
  { name: 'cbs=', args: io('cbs=80'), exit: 2, stderr: /cbs= is not supported/ },

  // empty values
  { name: 'if= empty', args: (f) => ['if=', `of=${f.dst}`], exit: 2, stderr: /'if=' needs a value/ },
  { name: 'of= empty', args: (f) => [`if=${f.src}`, 'of='], exit: 2, stderr: /'of=' needs a value/ },
  { name: 'bs= empty', args: io('bs='), exit: 2, stderr: /'bs=' needs a value/ },
  { name: 'status= empty', args: io('status='), exit: 2, stderr: /'status=' needs a value/ },
  { name: '--queue-depth= empty', args: io('--queue-depth='), exit: 2, stderr: /option '--queue-depth' needs a value/ },
  { name: '--queue-depth without a value at the end', args: io('--queue-depth'), exit: 2, stderr: /option '--queue-depth' needs a value/ },
  { name: '--block-size= empty', args: io('--block-size='), exit: 2, stderr: /option '--block-size' needs a value/ },

  // bad numbers and suffixes
  { name: 'bs=-1', args: io('bs=-1'), exit: 2, stderr: /invalid operand 'bs=-1': .*must not have a sign/ },
  { name: 'seek=-5', args: io('seek=-5'), exit: 2, stderr: /invalid operand 'seek=-5': .*sign/ },
  { name: 'bs=0', args: io('bs=0'), exit: 2, stderr: /invalid operand 'bs=0': the block size must be at least 1 byte/ },
  { name: 'bs=1x0 (a product of zero)', args: io('bs=1x0'), exit: 2, stderr: /invalid operand 'bs=1x0': .*at least 1 byte/ },
  { name: 'bs=1T', args: io('bs=1T'), exit: 2, stderr: /invalid operand 'bs=1T': .*at most 2 GiB/ },
  { name: 'bs=2 GiB + 1', args: io('bs=2147483649'), exit: 2, stderr: /invalid operand 'bs=2147483649': .*at most 2 GiB/ },
  { name: 'ibs=0', args: io('ibs=0'), exit: 2, stderr: /invalid operand 'ibs=0': the input block size must be at least 1 byte/ },
  { name: 'obs=3G', args: io('obs=3G'), exit: 2, stderr: /invalid operand 'obs=3G': the output block size must be at most 2 GiB/ },
  { name: 'bs=12X (unknown suffix)', args: io('bs=12X'), exit: 2, stderr: /invalid operand 'bs=12X': unknown size suffix 'X'/ },
  { name: 'bs=1m (wrong case)', args: io('bs=1m'), exit: 2, stderr: /invalid operand 'bs=1m': .*did you mean 'M'/ },
  { name: 'bs=1.5M (fraction)', args: io('bs=1.5M'), exit: 2, stderr: /invalid operand 'bs=1\.5M': fractions are not allowed/ },
  { name: 'bs=0x10 (hexadecimal)', args: io('bs=0x10'), exit: 2, stderr: /invalid operand 'bs=0x10': hexadecimal is not accepted/ },
  { name: "bs=' 1M' (whitespace)", args: io('bs= 1M'), exit: 2, stderr: /invalid operand 'bs= 1M': .*whitespace/ },
  { name: 'bs=x512 (missing factor)', args: io('bs=x512'), exit: 2, stderr: /invalid operand 'bs=x512': missing number/ },
  { name: 'count=99999999999999999999999', args: io('count=99999999999999999999999'), exit: 2, stderr: /invalid operand 'count=9+': value is too large/ },
  { name: 'skip=1E', args: io('skip=1E'), exit: 2, stderr: /invalid operand 'skip=1E': value is too large/ },
  { name: 'seek=8P oflag=seek_bytes (2^53)', args: io('seek=8P', 'oflag=seek_bytes'), exit: 2, stderr: /invalid operand 'seek=8P': value is too large/ },
  { name: 'skip blocks × bs beyond 2^53', args: io('bs=1M', 'skip=17592186044416'), exit: 2, stderr: /invalid operand 'skip=17592186044416': .*beyond the maximum/ },
  { name: 'seek blocks × obs beyond 2^53', args: io('seek=9007199254740991'), exit: 2, stderr: /invalid operand 'seek=9007199254740991': .*beyond the maximum/ },
  { name: 'count=abc', args: io('count=abc'), exit: 2, stderr: /invalid operand 'count=abc'/ },

  // queue depth and block-size options
  { name: '--queue-depth=0', args: io('--queue-depth=0'), exit: 2, stderr: /invalid option '--queue-depth=0': .*from 1 to 1024/ },
  { name: '--queue-depth=1025', args: io('--queue-depth=1025'), exit: 2, stderr: /invalid option '--queue-depth=1025': .*from 1 to 1024/ },
  { name: '--queue-depth huge', args: io('--queue-depth', '99999999999999999999'), exit: 2, stderr: /invalid option '--queue-depth=9+': .*from 1 to 1024/ },
  { name: '--queue-depth=-1', args: io('--queue-depth=-1'), exit: 2, stderr: /invalid option '--queue-depth=-1'/ },
  { name: '--queue-depth=1.5', args: io('--queue-depth=1.5'), exit: 2, stderr: /invalid option '--queue-depth=1\.5'/ },
  { name: '--queue-depth=1024 bs=2M (2 GiB of buffers)', args: io('--queue-depth=1024', 'bs=2M'), exit: 2, stderr: /--queue-depth=1024 .*more than 1 GiB of buffers/ },
  { name: 'bs=2G --queue-depth=2 (2 GiB of buffers)', args: io('bs=2G', '--queue-depth=2'), exit: 2, stderr: /--queue-depth=2 .*more than 1 GiB of buffers/ },
  { name: '--block-size=0', args: io('--block-size=0'), exit: 2, stderr: /invalid option '--block-size=0': must be from 1 byte to 1 GiB/ },
  { name: '--block-size=abc', args: io('--block-size=abc'), exit: 2, stderr: /invalid option '--block-size=abc'/ },
  { name: 'bs= and --block-size= disagree', args: io('bs=4K', '--block-size=8K'), exit: 2, stderr: /'bs=4K' and '--block-size=8K' disagree/ },
  { name: '--json=yes (a flag with a value)', args: io('--json=yes'), exit: 2, stderr: /option '--json' takes no value/ },

  // conv=, iflag=, oflag=, status= values
  { name: 'conv=frob', args: io('conv=frob'), exit: 2, stderr: /invalid conversion: 'frob' in 'conv=frob'/ },
  { name: 'conv= with an empty item', args: io('conv=notrunc,,fsync'), exit: 2, stderr: /invalid conversion: '' in 'conv=notrunc,,fsync'/ },
  { name: 'conv=swab (dd has it, devmove does not)', args: io('conv=swab'), exit: 2, stderr: /conv=swab is not supported/ },
  { name: 'conv=ebcdic', args: io('conv=ebcdic'), exit: 2, stderr: /conv=ebcdic is not supported/ },
  { name: 'iflag=frob', args: io('iflag=frob'), exit: 2, stderr: /invalid input flag: 'frob' in 'iflag=frob'/ },
  { name: 'iflag=seek_bytes (an oflag)', args: io('iflag=seek_bytes'), exit: 2, stderr: /'seek_bytes' in 'iflag=seek_bytes' .*belongs in oflag=/ },
  { name: 'iflag=nofollow (unsupported)', args: io('iflag=nofollow'), exit: 2, stderr: /iflag=nofollow is not supported/ },
  { name: 'oflag=frob', args: io('oflag=frob'), exit: 2, stderr: /invalid output flag: 'frob' in 'oflag=frob'/ },
  { name: 'oflag=append (unsupported)', args: io('oflag=append'), exit: 2, stderr: /oflag=append is not supported/ },
  { name: 'status=frob', args: io('status=frob'), exit: 2, stderr: /invalid operand 'status=frob': the status level must be none, noxfer or progress/ },

  // conflicting and duplicated operands
  { name: 'conv=excl,nocreat', args: io('conv=excl,nocreat'), exit: 2, stderr: /conv=excl and conv=nocreat cannot be combined/ },
  { name: 'iflag=direct,nocache', args: io('iflag=direct,nocache'), exit: 2, stderr: /iflag=direct and iflag=nocache cannot be combined/ },
  { name: 'oflag=direct,nocache', args: io('oflag=direct,nocache'), exit: 2, stderr: /oflag=direct and oflag=nocache cannot be combined/ },
  { name: '--no-sync with conv=fsync', args: io('--no-sync', 'conv=fsync'), exit: 2, stderr: /--no-sync contradicts conv=fsync/ },
  { name: '--no-sync with oflag=dsync', args: io('--no-sync', 'oflag=dsync'), exit: 2, stderr: /--no-sync contradicts oflag=dsync/ },
  // Repeated of= may become multi-target copies; the same target twice stays an error.
  { name: 'the same of= twice', args: (f) => [`if=${f.src}`, `of=${f.dst}`, `of=${f.dst}`], exit: 2, stderr: /of=.*(twice|more than once|duplicate|same target)/ },

  // reliability and migration-job options
  { name: '--mapfile without a value', args: io('--mapfile'), exit: 2, stderr: /option '--mapfile' needs a value/ },
  { name: '--retries=-1', args: io('--retries=-1'), exit: 2, stderr: /invalid option '--retries=-1': must be an integer from 0 to 1000$/ },
  { name: '--retries=1001', args: io('--retries=1001'), exit: 2, stderr: /invalid option '--retries=1001'/ },
  { name: '--hash=crc32', args: io('--hash=crc32'), exit: 2, stderr: /invalid option '--hash=crc32': must be one of 'sha256', /  },
  { name: '--rate=-1', args: io('--rate=-1'), exit: 2, stderr: /invalid option '--rate=-1': must be a rate in bytes per second/ },
  { name: '--rate=fast', args: io('--rate=fast'), exit: 2, stderr: /invalid option '--rate=fast'/ },
  { name: '--rate=-5M', args: io('--rate=-5M'), exit: 2, stderr: /invalid option '--rate=-5M'/ },
  { name: '--retry-bad without --mapfile', args: io('--noerror', '--retry-bad'), exit: 2, stderr: /--retry-bad needs --mapfile/ },
  { name: '--checkpoint-interval below 100 ms', args: (f) => [`if=${f.src}`, `of=${f.dst}`, `--mapfile=${f.missing('m1')}`, '--checkpoint-interval=10'], exit: 2, stderr: /invalid option '--checkpoint-interval=10'/ },
  { name: '--mapfile with --no-sync', args: (f) => [`if=${f.src}`, `of=${f.dst}`, `--mapfile=${f.missing('m2')}`, '--no-sync'], exit: 2, stderr: /--mapfile needs durable writes/ },
  { name: 'conv=sync without noerror', args: io('conv=sync'), exit: 2, stderr: /conv=sync is supported only as conv=noerror,sync/ },
  { name: 'conv=sparse and --zero-blocks=discard', args: io('conv=sparse', '--zero-blocks=discard'), exit: 2, stderr: /conv=sparse contradicts '--zero-blocks=discard'/ },
  { name: '--zero-blocks=trim', args: io('--zero-blocks=trim'), exit: 2, stderr: /invalid option '--zero-blocks=trim'/ },
  { name: '--on-target-error=drop with one target', args: io('--on-target-error=drop'), exit: 2, stderr: /--on-target-error=drop needs two or more targets/ },
  { name: '--on-target-error=ignore', args: io('--on-target-error=ignore'), exit: 2, stderr: /invalid option '--on-target-error=ignore'/ },
  { name: '--verify=yes', args: io('--verify=yes'), exit: 2, stderr: /option '--verify' takes no value/ },
  { name: '65 targets', args: (f) => [`if=${f.src}`, ...Array.from({ length: 65 }, (_, i) => `of=${f.missing(`t${i}`)}`)], exit: 2, stderr: /at most 64 targets/ },

  // NUL bytes cannot pass through execve; main() gets them from JSON.
  { name: 'NUL byte in if=', args: (f) => [`if=${f.src}\0x`, `of=${f.dst}`], viaMain: true, exit: 2, stderr: /NUL/ },
  { name: 'NUL byte in of= under /dev', args: (f) => [`if=${f.src}`, `of=${f.devMissing}\0`], viaMain: true, exit: 2, stderr: /NUL/ },
];

// ---------------------------------------------------------------------------
// Runtime failures: exit 1, exactly one 'devmove: ' line, nothing written.
// ---------------------------------------------------------------------------
const RUNTIME_ROWS: Row[] = [
  // sources that do not exist or are not copyable
  { name: 'missing source file', args: (f) => [`if=${f.missing('nope')}`, `of=${f.dst}`], exit: 1, stderr: /^devmove: if=\S*nope: no such file or directory \(ENOENT from open\)$/ },
  { name: 'missing source file, missing target: the target is not created', args: (f) => [`if=${f.missing('nope')}`, `of=${f.missing('new-1')}`], exit: 1, stderr: /if=\S*nope: .*ENOENT/ },
  { name: 'missing source, --json: still one line on stderr', args: (f) => [`if=${f.missing('nope')}`, `of=${f.dst}`, '--json'], exit: 1, stderr: /if=\S*nope: .*ENOENT/ },
  { name: 'missing device node as source', args: (f) => [`if=${f.devMissing}`, `of=${f.dst}`], exit: 1, stderr: /if=\/dev\/\S+: no such file or directory \(ENOENT/ },
  { name: 'unknown node name as source', args: (f) => ['if=sdzz9', `of=${f.dst}`], exit: 1, stderr: /if=sdzz9: .*ENOENT/ },
  { name: 'dangling symlink as source', args: (f) => [`if=${f.danglingLocal}`, `of=${f.dst}`], exit: 1, stderr: /if=\S+: no such file or directory/ },
  { name: 'directory as source', args: (f) => [`if=${f.subdir}`, `of=${f.dst}`], exit: 1, stderr: /if=\S+: is a directory/ },
  { name: 'directory as source, missing target: not created', args: (f) => [`if=${f.subdir}`, `of=${f.missing('new-2')}`], exit: 1, stderr: /if=\S+: is a directory/ },
  { name: '/dev/zero as source', args: (f) => ['if=/dev/zero', `of=${f.dst}`], exit: 1, stderr: /if=\/dev\/zero: is a character device/ },
  { name: '/dev/null as source', args: (f) => ['if=/dev/null', `of=${f.dst}`], exit: 1, stderr: /if=\/dev\/null: is a character device/ },
  { name: '/dev/urandom as source', args: (f) => ['if=/dev/urandom', `of=${f.dst}`], exit: 1, stderr: /if=\/dev\/urandom: is a character device/ },
  // A FIFO is a pipe endpoint (waiting for its writer like dd: test/integration/pipes.test.ts);
  // what a pipe cannot do is refused before it is opened, so these never wait.
  {
    name: 'FIFO as source with --verify (no writer)',
    args: (f) => [`if=${f.fifo}`, `of=${f.dst}`, '--verify'],
    exit: 2,
    stderr: /verify .*cannot be used: \S+ is a pipe/,
    timeoutMs: HANG_TIMEOUT_MS,
  },
  { name: 'unix socket as source', args: (f) => [`if=${f.socket}`, `of=${f.dst}`], exit: 1, stderr: /if=\S+: is a socket/ },

  // targets that are not copyable
  { name: 'directory as target', args: (f) => [`if=${f.src}`, `of=${f.subdir}`], exit: 1, stderr: /of=\S+: .*directory/ },
  { name: 'existing file with a trailing slash as target', args: (f) => [`if=${f.src}`, `of=${f.dst}/`], exit: 1, stderr: /of=\S+\/: not a directory/ },
  { name: 'target in a missing directory', args: (f) => [`if=${f.src}`, `of=${f.missing('no-dir')}/x.img`], exit: 1, stderr: /of=\S+: no such file or directory/ },
  { name: '/dev/null as target', args: (f) => [`if=${f.src}`, 'of=/dev/null'], exit: 1, stderr: /of=\/dev\/null: is a character device/ },
  { name: '/dev/zero as target', args: (f) => [`if=${f.src}`, 'of=/dev/zero'], exit: 1, stderr: /of=\/dev\/zero: is a character device/ },
  { name: '/dev/full as target', args: (f) => [`if=${f.src}`, 'of=/dev/full'], exit: 1, stderr: /of=\/dev\/full: is a character device/ },
  {
    name: 'FIFO as target with a mapfile (no reader)',
    args: (f) => [`if=${f.src}`, `of=${f.fifo}`, `--mapfile=${f.missing('fifo.map')}`],
    exit: 2,
    stderr: /mapfile .*cannot be used: \S+ is a pipe/,
    timeoutMs: HANG_TIMEOUT_MS,
  },
  { name: 'unix socket as target', args: (f) => [`if=${f.src}`, `of=${f.socket}`], exit: 1, stderr: /of=\S+: is a socket/ },
  {
    name: 'a procfs file as target (/proc/version)',
    args: (f) => [`if=${f.src}`, 'of=/proc/version', 'conv=notrunc'],
    exit: 1,
    stderr: /of=\/proc\/version: .*(procfs|proc|pseudo|virtual|kernel)/i,
  },

  // never a new file in /dev
  { name: 'missing device node as target', args: (f) => [`if=${f.src}`, `of=${f.devMissing}`], exit: 1, stderr: /of=\/dev\/\S+: no such device \(devmove does not create files under \/dev\)/ },
  { name: 'missing device node as target, spelled through /dev/shm/..', args: (f) => [`if=${f.src}`, `of=/dev/shm/../${path.basename(f.devMissing)}`], exit: 1, stderr: /does not create files under \/dev/ },
  { name: 'missing device node as target, through a symlink to /dev', args: (f) => [`if=${f.src}`, `of=${f.devDirLink}/${path.basename(f.devMissing)}`], exit: 1, stderr: /does not create files under \/dev/ },
  {
    name: 'dangling symlink into /dev as target',
    args: (f) => [`if=${f.src}`, `of=${f.danglingToDev}`],
    watch: (f) => [f.danglingToDevTarget],
    exit: 1,
    stderr: /of=\S+: .*(does not create files under \/dev|dangling|symbolic link)/,
  },

  // offsets and sizes
  { name: 'skip past the end of the source', args: io('bs=1M', 'skip=2'), exit: 1, stderr: /if=\S+: source offset 2097152 bytes is past the end of the source \(1048576 bytes\)/ },
  { name: 'skip past the end, missing target: not created', args: (f) => [`if=${f.src}`, `of=${f.missing('new-3')}`, 'skip=3000'], exit: 1, stderr: /past the end of the source/ },
  { name: 'skip past the end of a loop device', args: (f) => [`if=${f.srcLoop}`, `of=${f.dst}`, 'skip=1049088', 'iflag=skip_bytes', 'status=progress'], exit: 1, stderr: /^devmove: if=\/dev\/loop\d+: source offset 1049088 bytes is past the end of the source \(1048576 bytes\)/ },
  { name: 'target device too small', args: (f) => [`if=${f.src}`, `of=${f.smallLoop}`], exit: 1, stderr: /of=\/dev\/loop\d+: target too small: .*1048576.*65536 bytes \(ENOSPC/ },
  { name: 'seek past the end of the target device', args: (f) => [`if=${f.src}`, `of=${f.dstLoop}`, 'bs=64K', 'count=1', 'seek=16'], exit: 1, stderr: /of=\/dev\/loop\d+: target too small/ },
  { name: 'target device too small, with --force', args: (f) => [`if=${f.srcLoop}`, `of=${f.smallLoop}`, '--force'], exit: 1, stderr: /target too small/ },

  // protected targets
  { name: 'read-only loop device as target', args: (f) => [`if=${f.src}`, `of=${f.roLoop}`], exit: 1, stderr: /of=\/dev\/loop\d+: the device is read-only .*\(EROFS/ },
  { name: 'read-only loop device as target, with --force', args: (f) => [`if=${f.src}`, `of=${f.roLoop}`, '--force'], exit: 1, stderr: /read-only/ },
  { name: 'same loop device as source and target', args: (f) => [`if=${f.srcLoop}`, `of=${f.srcLoop}`], exit: 1, stderr: /same device as the source/ },
  { name: 'same loop device, by node name and by path', args: (f) => [`if=${path.basename(f.srcLoop)}`, `of=${f.srcLoop}`], exit: 1, stderr: /same device as the source/ },
  { name: 'same image file as source and target', args: (f) => [`if=${f.src}`, `of=${f.src}`], exit: 1, stderr: /same file as the source/ },
  { name: 'same image file, overlapping ranges with seek', args: (f) => [`if=${f.src}`, `of=${f.src}`, 'conv=notrunc', 'bs=4K', 'seek=1'], exit: 1, stderr: /same file as the source.*overlap/ },
  { name: 'loop device as source, its backing file as target', args: (f) => [`if=${f.srcLoop}`, `of=${f.srcLoopImage}`, 'conv=notrunc'], exit: 1, stderr: /same image file|overlap/ },
  { name: 'backing file as source, its loop device as target', args: (f) => [`if=${f.srcLoopImage}`, `of=${f.srcLoop}`], exit: 1, stderr: /same image file|overlap/ },

  // flags the files cannot honour
  { name: 'conv=excl on an existing target', args: io('conv=excl'), exit: 1, stderr: /of=\S+: file already exists \(EEXIST/ },
  { name: 'conv=nocreat on a missing target', args: (f) => [`if=${f.src}`, `of=${f.missing('new-4')}`, 'conv=nocreat'], exit: 1, stderr: /of=\S+: no such file or directory/ },
  { name: 'iflag=direct with an unaligned bs', args: io('iflag=direct', 'bs=1000'), exit: 1, stderr: /if=\S+: direct I\/O needs the block size \(1000\)/ },
  { name: 'oflag=direct with an unaligned seek on a device', args: (f) => [`if=${f.src}`, `of=${f.dstLoop}`, 'oflag=direct,seek_bytes', 'seek=100', 'bs=4K', 'count=1'], exit: 1, stderr: /of=\/dev\/loop\d+: direct I\/O needs the target offset \(100\)/ },
  {
    name: 'oflag=direct with an unaligned bs, missing target: not created',
    args: (f) => [`if=${f.src}`, `of=${f.missing('new-5')}`, 'oflag=direct', 'bs=1000'],
    exit: 1,
    stderr: /of=\S+: direct I\/O needs the block size \(1000\)/,
  },

  // mapfiles and fan-out
  {
    name: 'a mapfile that is not a ddrescue mapfile',
    args: (f) => { fs.writeFileSync(path.join(f.dir, 'garbage.map'), 'hello\nworld\n'); return [`if=${f.src}`, `of=${f.dst}`, `--mapfile=${path.join(f.dir, 'garbage.map')}`]; },
    exit: 1,
    stderr: /garbage\.map:1: expected 'current_pos current_status \[current_pass\]'/,
  },
  {
    name: 'a mapfile that belongs to another copy',
    args: (f) => {
      const map = path.join(f.dir, 'other.map');
      fs.writeFileSync(map, '# devmove: source="/dev/sdq" target="/dev/sdr" source_offset=0 target_offset=0\n0x0 ? 1\n0x0 0x100000 +\n');
      return [`if=${f.src}`, `of=${f.dst}`, `--mapfile=${map}`];
    },
    exit: 1,
    stderr: /mapfile \S+ belongs to another copy: \/dev\/sdq \(offset 0\) to \/dev\/sdr/,
  },
  { name: 'a mapfile in a missing directory', args: (f) => [`if=${f.src}`, `of=${f.dst}`, `--mapfile=${f.missing('no-dir-m')}/x.map`], exit: 1, stderr: /no such file or directory/ },
  { name: 'fan-out with one missing target directory: nothing written anywhere', args: (f) => [`if=${f.src}`, `of=${f.dst}`, `of=${f.missing('no-dir-t')}/x.img`], exit: 1, stderr: /of=\S+x\.img: no such file or directory/ },
  { name: 'fan-out with a read-only device among the targets', args: (f) => [`if=${f.src}`, `of=${f.dst}`, `of=${f.roLoop}`], exit: 1, stderr: /of=\/dev\/loop\d+: the device is read-only/ },
  { name: 'fan-out to the source itself', args: (f) => [`if=${f.srcLoop}`, `of=${f.dst}`, `of=${f.srcLoop}`], exit: 1, stderr: /same device as the source/ },
];

const ROWS: Row[] = [...USAGE_ROWS, ...RUNTIME_ROWS];

// ---------------------------------------------------------------------------

/** The state of one path, compared before and after an invocation. */
type PathState =
  | { kind: 'missing' }
  | { kind: 'file' | 'block'; size: number; sha256: string }
  | { kind: 'other'; mode: number; size: number; link?: string };

function snapshot(p: string, ours: (p: string) => boolean): PathState {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return { kind: 'missing' };
  }
  if (ours(p) && st.isFile()) {
    return { kind: 'file', size: st.size, sha256: crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex') };
  }
  if (ours(p) && st.isBlockDevice()) {
    const size = deviceSize(p);
    return { kind: 'block', size, sha256: sha256Range(p, 0, size) };
  }
  // Not ours (a system device, a pseudo file): only its type and size are compared, never read.
  const state: PathState = { kind: 'other', mode: st.mode & fs.constants.S_IFMT, size: st.isFile() ? st.size : 0 };
  try {
    state.link = fs.readlinkSync(p);
  } catch {
    // not a symlink
  }
  return state;
}

/** The paths an invocation names, from the operands and options that take paths. */
function pathsIn(args: readonly string[], cwd: string): string[] {
  const found: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const eq = arg.indexOf('=');
    const key = eq === -1 ? arg : arg.slice(0, eq);
    let value: string | undefined;
    if (WATCHED_OPERANDS.includes(key)) value = arg.slice(eq + 1);
    else if (key.startsWith('--') && WATCHED_OPTIONS.includes(key.slice(2))) value = eq === -1 ? args[i + 1] : arg.slice(eq + 1);
    if (value === undefined || value === '' || value.includes('\0')) continue;
    found.push(path.resolve(cwd, value));
  }
  return found;
}

/** Regular files directly in /dev: there should be none, and an invocation must never add one. */
function regularFilesInDev(): string[] {
  return fs
    .readdirSync('/dev', { withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name)
    .sort();
}

/** Every name under dir, without following symlinks (the fixture has one to /dev). */
function listTree(dir: string, prefix = ''): string[] {
  const names: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    names.push(`${prefix}${e.name}`);
    if (e.isDirectory()) names.push(...listTree(path.join(dir, e.name), `${prefix}${e.name}/`));
  }
  return names.sort();
}

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function devmove(row: Row, args: string[], cwd: string): Run {
  const options = {
    cwd,
    encoding: 'utf8' as const,
    timeout: row.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    // A CLI stuck in an uninterruptible open() ignores SIGTERM (it only cancels the copy).
    killSignal: 'SIGKILL' as const,
    stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'],
  };
  const run = row.viaMain
    ? spawnSync(
        process.execPath,
        [
          '-e',
          `require(${JSON.stringify(CLI_MODULE)}).main(JSON.parse(process.argv[1])).then(
             (code) => { process.exitCode = code; },
             (e) => { process.stderr.write('devmove: internal error: ' + (e && e.stack || e) + '\\n'); process.exitCode = 1; });`,
          JSON.stringify(args),
        ],
        options,
      )
    : spawnSync(process.execPath, [CLI, ...args], options);
  return { status: run.status, signal: run.signal, stdout: run.stdout ?? '', stderr: run.stderr ?? '' };
}

describe.skipIf(skipWithoutLoop)('hostile command lines', () => {
  let f: Fixture;
  const devPaths: string[] = [];
  let server: net.Server | undefined;

  beforeAll(async () => {
    const dir = tempDir();
    const unique = `devmove-hostile-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    const srcLoopImage = makeImage(dir, 'src-loop.img', MiB, 'random', 'hostile-loop');
    const fixture: Fixture = {
      dir,
      src: makeImage(dir, 'src.img', MiB, 'random', 'hostile-src'),
      dst: makeImage(dir, 'dst.img', MiB, { pattern: 0x5a }),
      srcLoopImage,
      srcLoop: attachLoop(srcLoopImage),
      dstLoop: attachLoop(makeImage(dir, 'dst-loop.img', MiB, { pattern: 0xa5 })),
      roLoop: attachLoop(makeImage(dir, 'ro-loop.img', MiB, { pattern: 0x3c }), { readOnly: true }),
      smallLoop: attachLoop(makeImage(dir, 'small-loop.img', 64 * KiB, { pattern: 0x11 })),
      subdir: path.join(dir, 'a-directory'),
      fifo: path.join(dir, 'fifo'),
      socket: path.join(dir, 'socket'),
      danglingToDev: path.join(dir, 'dangling-to-dev'),
      danglingToDevTarget: `/dev/${unique}-via-link`,
      danglingLocal: path.join(dir, 'dangling-local'),
      devDirLink: path.join(dir, 'dev-link'),
      devMissing: `/dev/${unique}`,
      missing: (name) => path.join(dir, `missing-${name}`),
    };
    devPaths.push(fixture.devMissing, fixture.danglingToDevTarget);
    for (const p of devPaths) expect(fs.existsSync(p)).toBe(false);
    fs.mkdirSync(fixture.subdir);
    fs.writeFileSync(path.join(fixture.subdir, 'inside'), 'x');
    execMkfifo(fixture.fifo);
    fs.symlinkSync(fixture.danglingToDevTarget, fixture.danglingToDev);
    fs.symlinkSync(path.join(dir, 'nowhere'), fixture.danglingLocal);
    fs.symlinkSync('/dev', fixture.devDirLink);
    server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server?.once('error', reject);
      server?.listen(fixture.socket, resolve);
    });
    f = fixture;
  });

  // Undo what a bug may have done: only the exact /dev names this suite made up, only regular files.
  const removeStrayDevFiles = (): void => {
    for (const p of devPaths) {
      try {
        if (fs.lstatSync(p).isFile()) fs.unlinkSync(p);
      } catch {
        // not there: good
      }
    }
  };
  afterEach(removeStrayDevFiles);

  afterAll(async () => {
    removeStrayDevFiles();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    detachAll();
  });

  it('has enough rows, with unique names', () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(50);
    expect(new Set(ROWS.map((r) => r.name)).size).toBe(ROWS.length);
  });

  for (const row of ROWS) {
    const test = row.bug && !STRICT ? it.fails : it;
    const title = `${row.exit === 2 ? 'usage' : 'runtime'}: ${row.name}${row.bug ? ` [known bug: ${row.bug}]` : ''}`;
    test(title, () => {
      const args = row.args(f);
      const ours = (p: string): boolean => p.startsWith(`${f.dir}/`) || [f.srcLoop, f.dstLoop, f.roLoop, f.smallLoop].includes(p);
      const watched = [...new Set([...pathsIn(args, f.dir), ...(row.watch?.(f) ?? []), ...devPaths])];
      const before = new Map(watched.map((p) => [p, snapshot(p, ours)]));
      const devBefore = regularFilesInDev();
      const treeBefore = listTree(f.dir);

      const run = devmove(row, args, f.dir);

      // Exit code, and not killed by the timeout.
      expect(run.signal, `killed after ${row.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms; stderr: ${run.stderr}`).toBeNull();
      expect(run.status, `stderr: ${run.stderr}`).toBe(row.exit);

      // One 'devmove: ' line (plus the --help hint after a usage error), no stack trace.
      expect(run.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
      expect(run.stderr).not.toMatch(/internal error|Error: |node:internal/);
      const lines = run.stderr.split('\n');
      expect(lines.at(-1), 'stderr ends with a newline').toBe('');
      expect(lines.slice(0, -1)).toHaveLength(row.exit === 2 ? 2 : 1);
      const [line] = lines as [string];
      expect(line).toMatch(/^devmove: \S/);
      expect(line).toMatch(row.stderr);
      if (row.exit === 2) expect(lines[1]).toBe(USAGE_HINT);

      // Standard output: nothing, or with --json one error record.
      if (args.includes('--json')) {
        const records = run.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string });
        expect(records.at(-1)?.type).toBe('error');
      } else {
        expect(run.stdout).toBe('');
      }

      // Nothing written, created or removed.
      for (const p of watched) expect(snapshot(p, ours), p).toEqual(before.get(p));
      expect(regularFilesInDev(), 'regular files in /dev').toEqual(devBefore);
      expect(listTree(f.dir), 'files in the test directory').toEqual(treeBefore);
    });
  }
});

function execMkfifo(p: string): void {
  const made = spawnSync('mkfifo', [p]);
  if (made.status !== 0) throw new Error(`mkfifo ${p} failed: ${made.stderr.toString()}`);
}
