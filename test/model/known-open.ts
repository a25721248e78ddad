import fs from 'node:fs';

import { LAUNCHER } from './script';

// Bug families the model test knows to be open on main. The generator does not
// draw operations of a listed family (the invariants stay as they are): once
// the lead has fixed a family, its line goes, and the model test exercises it
// from then on. MODEL_KNOWN_OPEN overrides the list: a comma-separated list of
// families, or 'none' to draw everything (then the open bugs make it fail).

/** Every family the generator tags operations with; only the ones in OPEN are skipped. */
export const FAMILIES = {
  'resume-truncate': 'issue 10 #1 (fixed by 8608cb8): resuming from a mapfile cuts a regular-file target first (also: target recreated, ddrescue map onto a fresh target)',
  'fanout-drop-map': 'issue 10 #2 (fixed by 8608cb8): fan-out with --on-target-error=drop and --mapfile marks ranges finished that a dropped target lacks',
  'mapfile-alias': 'issue 10 #3 (fixed by 8608cb8): --mapfile naming (an alias of) the source or a target replaces it with the map',
  'job-alias-dangling': 'issue 10 #4 (fixed by 8608cb8): two job pairs reach one file through a dangling symlink',
  'loop-over-loop-alias': 'issue 10 #5 (fixed by 8608cb8): a loop device over a side\'s block device is not recognised as the same storage',
  'job-dotdot': 'issue 10 #6 (fixed by 8608cb8): job-file paths with `..` resolved as text, not as the kernel resolves them',
  'sigusr1-inspector': 'issue 10 #7 (fixed by 8608cb8, f8b46c5): SIGUSR1 opens the inspector in devmove run / devices (no handler installed)',
  'sigusr1-startup': 'issue 10 #7, the start-up window: SIGUSR1 in the first milliseconds of a Node 20 process (before any JavaScript runs) starts the inspector; closed by bin/devmove (--inspect-port on TEST-NET, or --disable-sigusr1 on Node 22.14+), open when main.js is run directly',
  'truncate-overlap': 'found by the model test (fixed by 48c05ce): dd-style truncation of a regular-file target is not counted as touching the bytes it cuts: a copy whose source is a loop device over the target file (or a job pair cutting a file another pair reads) destroys the source; the overlap checks look only at [seek, seek+length)',
  'refusal-writes-map': 'found by the model test on 71af47e (gone with 8608cb8): two of= naming one file are refused only by the engine, after the mapfile was written (a refused command leaves a map behind)',
  'resume-after-bad-block': 'found by the model test (fixed on main by daa7b01 or earlier: the rerun resumes and, healed, completes): a copy that stopped at an unreadable block (no conv=noerror) cannot be resumed: the map\'s bad block counts as bytes the target must hold, so the rerun README prescribes is refused as "not the target the map was made for"',
  'dio-buffered-collision': 'found by the model test (fixed by b7e47d6: write_mode_gate.h): an I/O size that is not a whole number of pages (--block-size=512, bs=1000) into a regular file on a disk file system: the engine\'s O_DIRECT writes and page-cache writes (a partial last sector) touch one page at once; the kernel logs "Page cache invalidation failure on direct I/O. Possible data corruption due to collision with buffered I/O!" and fdatasync fails with EIO. Still on main (62fac24): devmove if=/dev/shm/src.img of=/var/tmp/t.img bs=512 count=1000001B conv=notrunc (3 MiB files) fails with EIO from fdatasync 39 times in 40',
  'sparse-map': 'found by the model test (fixed by 53443ee): conv=sparse with --mapfile marks skipped all-zero blocks finished although a target that was not zero there keeps its old bytes (the engine skips whole all-zero buffers, so it shows with small --block-size/bs=). Still on main (62fac24): a 64 KiB random source with zeros at 8192–12287 onto a 64 KiB random file, devmove if=src of=t bs=512 conv=sparse,notrunc --mapfile=m: the map says 0+65536 finished, t differs from src at byte 8192',
  'threads-tail-collision': 'found by the model test on the engine branch (389df6d), fixed by b7e47d6 (write_mode_gate.h): with --io-engine=threads, a copy onto an O_DIRECT target (block device) that ends in a partial sector writes that tail through the page cache on one worker while another worker\'s O_DIRECT write covers the same page; fdatasync then fails with EIO (the copy reports failure; the bytes were right here, but a page written back stale would be corruption). io_uring is fine. Seed 500 (MODEL_DEVMOVE_REPO=/work/wt/engine); minimal: devmove if=SRC of=/dev/loopN bs=4096 seek=512B count=4097B --io-engine=threads',
  'pipe-sparse-size': 'found by the model test on the engine branch (389df6d), fixed by 06bb56f: a pipe as the source with conv=sparse into a regular file sets the file\'s size to 2^62 bytes (4611686018427387904 on tmpfs; EFBIG from ftruncate on ext4, exit 1), exit 0 on tmpfs; seed 504 step 5 (MODEL_DEVMOVE_REPO=/work/wt/engine); minimal: head -c 100000 /dev/zero | devmove of=t.img bs=4096 conv=sparse; stat -c %s t.img',
  'fifo-kill9-linger': 'found by the model test on main (62fac24), fixed by 268807b (streams are not registered with io_uring): after kill -9 of an io_uring devmove reading a named FIFO, the FIFO still has a reader for a moment after the process is reaped (the ring\'s files are let go by the kernel\'s deferred ring teardown): a writer that opens it then connects to the dead copy and dies of SIGPIPE, and the rerun devmove waits for a writer for ever (120 s, killed). The threads driver is fine. Seed 204 step 34 (MODEL_SKIP=0-33 reproduces it 3 in 4); minimal: mkfifo f; cat 4M.img > f & devmove if=f of=t conv=notrunc --rate=6213662 & P=$!; sleep 0.9; kill -9 $P; wait $P; cat 4M.img > f  (exit 141 at once; with --io-engine=threads it waits for a reader, as it should)',
  'nbd-sparse-small-block': 'found by the NBD model test on nbd-engine-preview (acdf48b): conv=sparse with an output block of a few bytes (obs=1: one zero check per byte) from an NBD source is about 10 times slower than from a file (1.3 MB: 20.7 s, 9.8 s system time, against 2.2 s; bs=100 and up are level), so a larger copy outlasts the liveness limit on a loaded machine; seed 108 step 6 took 58 s. Not a wrong byte. Minimal: nbdkit --unix $PWD/s.sock file n.img (4 MiB random); devmove if=nbd+unix:///?socket=$PWD/s.sock of=x.img ibs=100 obs=1 count=1342464 iflag=count_bytes conv=sparse. Cause: conv=sparse made obs= the I/O size, so every read was one byte (one NBD_CMD_READ round trip each: 134,246 of them for 134 KB), not the holes; fixed on the holes branch: obs= is the zero check\'s block inside I/Os of up to the default size (dd-args.ts)',
  'foreign-map': 'a mapfile made for another copy (a tag, not a bug)',
  'pipe-source': 'the source as a pipe: `cat NAME | devmove` or a named FIFO (a tag, not a bug)',
  'stdout-target': 'a target as standard output redirected into a file or device: `> NAME`, `>> NAME`, `1<> NAME` (a tag, not a bug)',
  'threads-engine': 'the threads I/O driver: --io-engine=threads, DEVMOVE_IO_ENGINE, a job\'s ioEngine (a tag, not a bug)',
  'nbd-reconnect': '--reconnect=2 --nbd-timeout=30 on a copy with an NBD side and a mapfile; the server stays up, so nothing may change (a tag, not a bug)',
} as const;

export type Family = keyof typeof FAMILIES;

/** Open on main as of the knownopen branch (7c9d36b and its fixes). */
const OPEN: readonly Family[] = [
  // Without the launcher (bin/devmove) and without --disable-sigusr1, Node's start-up is a window.
  ...(process.allowedNodeEnvironmentFlags.has('--disable-sigusr1') || fs.existsSync(LAUNCHER) ? [] : (['sigusr1-startup'] as const)),
];

export class KnownOpen {
  readonly families: ReadonlySet<string>;

  constructor(env = process.env.MODEL_KNOWN_OPEN) {
    if (env === undefined) this.families = new Set(OPEN);
    else if (env.trim() === 'none' || env.trim() === '') this.families = new Set();
    else {
      const listed = env.split(',').map((f) => f.trim()).filter(Boolean);
      for (const f of listed) if (!(f in FAMILIES)) throw new Error(`MODEL_KNOWN_OPEN: unknown family '${f}' (known: ${Object.keys(FAMILIES).join(', ')})`);
      this.families = new Set(listed);
    }
  }

  has(family: string): boolean {
    return this.families.has(family);
  }

  describe(): string {
    return this.families.size === 0 ? 'none' : [...this.families].join(',');
  }
}
