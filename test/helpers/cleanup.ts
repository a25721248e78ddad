// Runs before every test file (vitest setupFiles): whatever a file made with the helpers in
// devices.ts — loop devices, mounts, temp dirs in /dev/shm and /var/tmp — is removed when the file
// ends, also for files without an afterAll of their own. The process 'exit' hook in devices.ts is not
// enough: vitest ends its worker processes without running it, and temp dirs in /dev/shm are memory.
import { afterAll } from 'vitest';

import { detachAll } from './devices';

afterAll(() => detachAll());
