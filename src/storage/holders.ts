// Who keeps a block device busy: the processes that have it open, found the
// way fuser does it (every /proc/PID/fd link that is the device). Used when an
// exclusive open still fails with EBUSY after the engine's bounded retry and
// neither a mount nor a stacked device (refused earlier) explains it.
import fs from 'node:fs';

/** Processes scanned at most (a limit on everything, even /proc). */
const PROCESSES_MAX = 65536;

export interface DeviceUser {
  pid: number;
  /** The process's name: its argv[0] without the directory, else /proc/PID/comm. */
  command: string;
}

function rdevOf(file: string): bigint | undefined {
  try {
    const st = fs.statSync(file, { bigint: true });
    return st.isBlockDevice() ? st.rdev : undefined;
  } catch {
    return undefined;
  }
}

/** The processes (this one included) with a descriptor open on the block device at `devicePath`. */
/**
 * What the process is called: the last part of its argv[0], as ps shows it. Not /proc/PID/comm
 * alone: that is the main thread's name, which a runtime may change (Node 24 calls its main
 * thread "MainThread"), and it is cut at 15 characters.
 */
function processName(pid: string): string {
  try {
    const argv0 = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
    if (argv0) return argv0.slice(argv0.lastIndexOf('/') + 1);
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); // kernel threads have no cmdline
  } catch {
    return '?'; // exited meanwhile
  }
}

export function processesUsing(devicePath: string): DeviceUser[] {
  const rdev = rdevOf(devicePath);
  if (rdev === undefined) return [];
  const users: DeviceUser[] = [];
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name)).slice(0, PROCESSES_MAX);
  } catch {
    return [];
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to see
    }
    if (fds.some((fd) => rdevOf(`/proc/${pid}/fd/${fd}`) === rdev)) {
      users.push({ pid: Number(pid), command: processName(pid) });
    }
  }
  return users;
}

/** The end of the message for a block device that stayed busy. */
export function describeBusy(devicePath: string): string {
  const users = processesUsing(devicePath);
  if (users.length === 0) {
    return 'no process has it open: a process that was just killed may still be releasing it (its io_uring is torn down in the background), or the kernel holds it';
  }
  const who = (u: DeviceUser): string => `${u.command} (pid ${u.pid}${u.pid === process.pid ? ', this process' : ''})`;
  return `open in ${users.map(who).join(', ')}`;
}
