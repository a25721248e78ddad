// Loaded first by the CLI entry (main.ts imports it before anything else; its
// only import, the addon's typed loader, loads no binary by itself), so
// that from this moment on SIGUSR1 can never start Node's inspector: Node's
// default action for SIGUSR1 opens a debugger on 127.0.0.1:9229, and devmove
// usually runs as root while dd users habitually send SIGUSR1 for statistics.
// A JavaScript listener replaces that action (libuv takes the signal over).
// The moments before this module runs are closed by bin/devmove, which starts
// Node with --disable-sigusr1 where Node has it (22.14+, 23.7+) and with an
// inspector address nothing can listen on where it has not.
//
// Subcommands that print statistics on SIGUSR1 (the copy, `run`) register a
// reporter while they work; at any other moment the signal does nothing.

import { loadNative } from '../addon/binding';

type StatusReporter = () => void;

let reporter: StatusReporter | undefined;
let unblocked = false;

process.on('SIGUSR1', () => {
  reporter?.();
});

/** While set, SIGUSR1 calls `fn` (dd's statistics); undefined: SIGUSR1 does nothing. */
export function onStatusSignal(fn: StatusReporter | undefined): void {
  reporter = fn;
  // --disable-sigusr1 (bin/devmove passes it where Node has it) also keeps SIGUSR1 blocked, so
  // the listener above would never run: let the signal in once something wants it.
  if (fn !== undefined && !unblocked && process.execArgv.includes('--disable-sigusr1')) {
    loadNative().unblockStatusSignal();
    unblocked = true;
  }
}
