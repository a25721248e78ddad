// NBD URIs (NetworkBlockDevice/nbd doc/uri.md, itself RFC 3986): where an
// export is, and which export it is.
//
//   nbd://HOST[:PORT][/EXPORT]           TCP (port 10809 by default)
//   nbd+unix:///[EXPORT]?socket=PATH     a unix socket
//
// The export name is the path without its leading '/', percent-decoded
// ('nbd://h//disk' names '/disk'; 'nbd://h/' and 'nbd://h' the default
// export ''). The TLS schemes (nbds, nbds+unix) and vsock are refused: devmove
// does not speak TLS (reach a remote server through an ssh tunnel instead).
import path from 'node:path';

import type { NativeNbd } from '../addon/binding';

export const NBD_DEFAULT_PORT = 10809;

/** Where an export is: the fields the native client needs, all clean. */
export interface NbdUri {
  /** The URI as given (for messages). */
  uri: string;
  transport: 'tcp' | 'unix';
  /** TCP: the host as written, lower-cased, IPv6 without brackets. */
  host?: string;
  /** TCP: the port (10809 when the URI has none). */
  port?: number;
  /** Unix: the socket's path, made absolute against the directory the URI is relative to. */
  socket?: string;
  /** The export name ('' = the server's default export). */
  exportName: string;
}

/** A URI that is not a usable NBD URI: the reason, for a usage error. */
export class NbdUriError extends Error {}

const SCHEME = /^([a-z][a-z0-9+.-]*):/i;
const NBD_SCHEMES = ['nbd', 'nbds', 'nbd+unix', 'nbds+unix', 'nbd+vsock', 'nbds+vsock'];

/** Whether `text` is meant as an NBD URI (its scheme is one of NBD's), rather than a path. */
export function isNbdUri(text: string): boolean {
  const m = SCHEME.exec(text);
  return m !== null && NBD_SCHEMES.includes(m[1].toLowerCase());
}

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new NbdUriError(`its ${what} has a malformed percent-escape`);
  }
}

/** Splits 'HOST[:PORT]' (with [IPv6]); userinfo is refused (only TLS uses it). */
function parseAuthority(authority: string): { host: string; port: number } {
  if (authority.includes('@')) throw new NbdUriError('a user name in the URI is only for TLS, which devmove does not speak');
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]*)(?::(\d*))?$/i.exec(authority);
  if (m === null) throw new NbdUriError(`'${authority}' is not a host[:port]`);
  const host = m[1].startsWith('[') ? m[1].slice(1, -1) : decode(m[1], 'host');
  if (host === '') throw new NbdUriError('it names no host (nbd://HOST[:PORT]/EXPORT)');
  const port = m[2] === undefined || m[2] === '' ? NBD_DEFAULT_PORT : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new NbdUriError(`port ${m[2]} is not from 1 to 65535`);
  return { host: host.toLowerCase(), port };
}

function parseQuery(query: string): Map<string, string> {
  const params = new Map<string, string>();
  if (query === '') return params;
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const key = decode(eq < 0 ? part : part.slice(0, eq), 'query');
    const value = decode(eq < 0 ? '' : part.slice(eq + 1).replace(/\+/g, '%20'), 'query');
    if (params.has(key)) throw new NbdUriError(`its query gives '${key}' twice`);
    params.set(key, value);
  }
  return params;
}

/**
 * Parses an NBD URI. `base` is the directory a relative socket path is relative to (the current
 * directory, or a job file's). Throws NbdUriError with the reason.
 */
export function parseNbdUri(uri: string, base = process.cwd()): NbdUri {
  const scheme = SCHEME.exec(uri)?.[1].toLowerCase();
  if (scheme === undefined || !NBD_SCHEMES.includes(scheme)) throw new NbdUriError('it is not an NBD URI (nbd:// or nbd+unix://)');
  if (scheme.startsWith('nbds')) {
    throw new NbdUriError(`${scheme}:// needs TLS, which devmove does not speak: reach the server through an ssh tunnel (see README, "Between hosts")`);
  }
  if (scheme === 'nbd+vsock') throw new NbdUriError('nbd+vsock:// is not supported: use nbd:// or nbd+unix://');
  const rest = uri.slice(scheme.length + 1);
  if (!rest.startsWith('//')) throw new NbdUriError(`it must start with ${scheme}://`);
  const hash = rest.indexOf('#');
  if (hash >= 0) throw new NbdUriError('an NBD URI has no #fragment');
  const q = rest.indexOf('?');
  const hierarchy = q < 0 ? rest.slice(2) : rest.slice(2, q);
  const params = parseQuery(q < 0 ? '' : rest.slice(q + 1));
  const slash = hierarchy.indexOf('/');
  const authority = slash < 0 ? hierarchy : hierarchy.slice(0, slash);
  const exportName = slash < 0 ? '' : decode(hierarchy.slice(slash + 1), 'export name');
  if (exportName.includes('\0')) throw new NbdUriError('an export name cannot contain NUL');
  if (Buffer.byteLength(exportName) > 4096) throw new NbdUriError('the export name is longer than 4096 bytes');
  for (const key of params.keys()) {
    if (key.startsWith('tls-')) throw new NbdUriError(`'${key}' is a TLS parameter, and devmove does not speak TLS`);
    if (!(scheme === 'nbd+unix' && key === 'socket')) throw new NbdUriError(`'${key}' is not a query parameter devmove knows`);
  }
  if (scheme === 'nbd') return { uri, transport: 'tcp', ...parseAuthority(authority), exportName };
  if (authority !== '') throw new NbdUriError('nbd+unix:// takes no host: nbd+unix:///EXPORT?socket=PATH');
  const socket = params.get('socket');
  if (socket === undefined || socket === '') throw new NbdUriError('nbd+unix:// needs ?socket=PATH');
  if (socket.startsWith('\0')) throw new NbdUriError('abstract unix sockets are not supported');
  return { uri, transport: 'unix', socket: path.resolve(base, socket), exportName };
}

/**
 * The export's storage id for the identity model: two URIs that reach the same export have the
 * same id. Unix sockets by their resolved path (the caller may refine it to the socket's inode);
 * TCP by host and port, with the loopback names taken as one host. Two different names of one
 * remote host are not recognised.
 */
export function nbdStorageId(u: NbdUri, socketId?: string): string {
  const exportPart = encodeURIComponent(u.exportName);
  if (u.transport === 'unix') return `nbd:unix:${socketId ?? u.socket}/${exportPart}`;
  const loopback = u.host === 'localhost' || u.host === '::1' || /^127\./.test(u.host ?? '') || u.host === '::ffff:127.0.0.1';
  return `nbd:tcp:${loopback ? 'loopback' : u.host}:${u.port}/${exportPart}`;
}

/** The engine's description of an export named by `uri` (already known to be an NBD URI). */
export function nbdPlanSide(uri: string, base = process.cwd()): NativeNbd {
  const u = parseNbdUri(uri, base);
  const side: NativeNbd = { exportName: u.exportName, identity: nbdStorageId(u) };
  if (u.transport === 'unix') side.socket = u.socket;
  else Object.assign(side, { host: u.host, port: u.port });
  return side;
}
