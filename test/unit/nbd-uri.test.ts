import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { planCopy } from '../../src/api/plan';
import { parseDdArgs, UsageError } from '../../src/cli/dd-args';
import { isConnectionLoss, reconnectDelaySeconds } from '../../src/api/reconnect';
import { DevmoveError } from '../../src/base/errors';
import { gatherSide } from '../../src/storage/identity';

import { isNbdUri, nbdStorageId, NbdUriError, parseNbdUri } from '../../src/storage/nbd-uri';

describe('parseNbdUri: the URI specification\'s examples and forms', () => {
  it.each<[string, string]>([
    // doc/uri.md's table of export names
    ['nbd://example.com/disk', 'disk'],
    ['nbd+unix:///disk?socket=sock', 'disk'],
    ['nbd://example.com/', ''],
    ['nbd://example.com', ''],
    ['nbd://example.com//disk', '/disk'],
    ['nbd://example.com/hello%20world', 'hello world'],
    ['nbd://example.com/a/b?', 'a/b'],
  ])('%s names export %j', (uri, exportName) => {
    expect(parseNbdUri(uri, '/base').exportName).toBe(exportName);
  });

  it('TCP: host and port, the port 10809 by default, IPv6 in brackets, the host lower-cased', () => {
    expect(parseNbdUri('nbd://Example.COM:10900/x')).toMatchObject({ transport: 'tcp', host: 'example.com', port: 10900 });
    expect(parseNbdUri('nbd://10.0.0.1/x')).toMatchObject({ host: '10.0.0.1', port: 10809 });
    expect(parseNbdUri('nbd://[::1]:2000/')).toMatchObject({ host: '::1', port: 2000 });
    expect(parseNbdUri('nbd://[fe80::1]/')).toMatchObject({ host: 'fe80::1', port: 10809 });
  });

  it('unix: the socket path percent-decoded and made absolute against the base directory', () => {
    expect(parseNbdUri('nbd+unix:///?socket=/run/nbd.sock', '/x')).toMatchObject({ transport: 'unix', socket: '/run/nbd.sock', exportName: '' });
    expect(parseNbdUri('nbd+unix:///e?socket=rel/s%20q.sock', '/jobs')).toMatchObject({ socket: '/jobs/rel/s q.sock', exportName: 'e' });
    expect(parseNbdUri('NBD+UNIX:///e?socket=/s')).toMatchObject({ transport: 'unix', socket: '/s' });
  });

  it.each<[string, RegExp]>([
    ['nbds://host/x', /TLS/],
    ['nbds+unix:///x?socket=/s', /TLS/],
    ['nbd://host/x?tls-verify-peer=0', /TLS parameter/],
    ['nbd://user@host/x', /only for TLS/],
    ['nbd+vsock://2:10809/x', /not supported/],
    ['nbd://:10809/x', /no host/],
    ['nbd://host:0/x', /port 0/],
    ['nbd://host:70000/x', /port 70000/],
    ['nbd://host:12a/x', /host\[:port\]/],
    ['nbd:host/x', /must start with nbd:\/\//],
    ['nbd://host/x#frag', /fragment/],
    ['nbd://host/%zz', /percent-escape/],
    ['nbd://host/a%00b', /NUL/],
    ['nbd+unix:///x', /needs \?socket=PATH/],
    ['nbd+unix:///x?socket=', /needs \?socket=PATH/],
    ['nbd+unix://host/x?socket=/s', /takes no host/],
    ['nbd+unix:///x?socket=%00abstract', /abstract/],
    ['nbd+unix:///x?socket=/a&socket=/b', /twice/],
    ['nbd://host/x?socket=/s', /not a query parameter/],
    ['nbd+unix:///x?socket=/s&frob=1', /'frob' is not a query parameter/],
    ['http://host/x', /not an NBD URI/],
  ])('%s is refused (%s)', (uri, reason) => {
    expect(() => parseNbdUri(uri)).toThrow(NbdUriError);
    expect(() => parseNbdUri(uri)).toThrow(reason);
  });

  it('an export name of more than 4096 bytes is refused (the protocol\'s string limit)', () => {
    expect(() => parseNbdUri(`nbd://h/${'x'.repeat(4097)}`)).toThrow(/4096/);
    expect(parseNbdUri(`nbd://h/${'x'.repeat(4096)}`).exportName).toHaveLength(4096);
  });
});

describe('isNbdUri: which operands are URIs rather than paths', () => {
  it.each(['nbd://h/x', 'NBD://h', 'nbd+unix:///?socket=/s', 'nbds://h/x', 'nbd+vsock://1'])('%s is one', (t) => expect(isNbdUri(t)).toBe(true));
  it.each(['/dev/sdb', 'disk.img', 'nbd.img', './nbd://x', 'http://h/x', 'nbd', 'file:/x'])('%s is not', (t) => expect(isNbdUri(t)).toBe(false));
});

describe('nbdStorageId: one id per export, whatever the spelling', () => {
  const id = (uri: string) => nbdStorageId(parseNbdUri(uri, '/d'));
  it('the same export under different spellings has one id', () => {
    expect(id('nbd://localhost:10809/disk')).toBe(id('nbd://127.0.0.1/disk'));
    expect(id('nbd://[::1]/disk')).toBe(id('nbd://LOCALHOST/disk'));
    expect(id('nbd://h/hello%20world')).toBe(id('nbd://H:10809/hello world'));
    expect(id('nbd+unix:///e?socket=/d/s.sock')).toBe(id('nbd+unix:///e?socket=s.sock'));
  });
  it('another export, port, host or socket has another id', () => {
    const ids = ['nbd://h/a', 'nbd://h/b', 'nbd://h:2/a', 'nbd://g/a', 'nbd+unix:///a?socket=/s1', 'nbd+unix:///a?socket=/s2', 'nbd://h//a'].map(id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('NBD URIs as copy sides', () => {
  it('planCopy gives the engine the server and the export, socket paths absolute', () => {
    const plan = planCopy({ source: 'nbd+unix:///disk%20a?socket=run/s.sock', targets: ['nbd://LOCALHOST:10900/b', 'out.img'] });
    expect(plan.source.nbd).toStrictEqual({
      exportName: 'disk a', identity: `nbd:unix:${path.resolve('run/s.sock')}/disk%20a`, socket: path.resolve('run/s.sock'), answerTimeoutMs: 60_000,
    });
    expect(plan.targets[0].nbd).toStrictEqual({ exportName: 'b', identity: 'nbd:tcp:loopback:10900/b', host: 'localhost', port: 10900, answerTimeoutMs: 60_000 });
    expect(plan.targets[1].nbd).toBeUndefined();
  });

  it('nbdTimeout: seconds a silent server is waited for (0: forever), given to each NBD side', () => {
    const plan = planCopy({ source: 'in.img', targets: ['nbd://h/a', 'nbd://h/b'], nbdTimeout: 0 });
    expect(plan.targets.map((t) => t.nbd?.answerTimeoutMs)).toStrictEqual([0, 0]);
    expect(planCopy({ source: 'nbd://h/a', target: 'out.img', nbdTimeout: 5 }).source.nbd?.answerTimeoutMs).toBe(5000);
    expect(() => planCopy({ source: 'in.img', target: 'nbd://h/a', nbdTimeout: -1 })).toThrow(RangeError);
    expect(() => planCopy({ source: 'in.img', target: 'nbd://h/a', nbdTimeout: 86_401 })).toThrow(/options\.nbdTimeout/);
    expect(parseDdArgs(['if=in.img', 'of=nbd://h/a', '--nbd-timeout=7']).nbdTimeout).toBe(7);
  });

  it('reconnect needs a mapfile (what the server had flushed), waits 1, 2, 4 … 30 s, and counts only a lost server', () => {
    expect(() => planCopy({ source: 'in.img', target: 'nbd://h/a', reconnect: 2 })).toThrow(/options\.reconnect needs options\.mapfile/);
    expect(() => planCopy({ source: 'in.img', target: 'nbd://h/a', reconnect: 101, mapfile: 'm.map' })).toThrow(RangeError);
    expect(parseDdArgs(['if=in.img', 'of=nbd://h/a', '--reconnect=3', '--mapfile=m.map']).reconnect).toBe(3);
    expect([1, 2, 3, 4, 5, 6, 7].map(reconnectDelaySeconds)).toStrictEqual([1, 2, 4, 8, 16, 30, 30]);
    const plan = planCopy({ source: 'in.img', targets: ['nbd://h/a', 'out.img'] });
    const ERRNO: Record<string, number> = { ECONNRESET: 104, ECONNABORTED: 103, EIO: 5, ENOENT: 2 };
    const failure = (code: string, p: string): DevmoveError => new DevmoveError({ errno: ERRNO[code], syscall: 'NBD_CMD_WRITE', path: p });
    expect(isConnectionLoss(failure('ECONNRESET', 'nbd://h/a'), plan)).toBe(true);
    expect(isConnectionLoss(failure('ECONNABORTED', 'nbd://h/a'), plan)).toBe(true);
    expect(isConnectionLoss(failure('EIO', 'nbd://h/a'), plan)).toBe(false);         // the server answered: not lost
    expect(isConnectionLoss(failure('ECONNRESET', path.resolve('out.img')), plan)).toBe(false);  // not an NBD side
    expect(isConnectionLoss(failure('ENOENT', 'nbd://h/a'), plan)).toBe(false);      // only a unix socket not there yet
  });

  it('an unusable URI is a usage error naming the option or the operand', () => {
    expect(() => planCopy({ source: 'in.img', target: 'nbds://h/x' })).toThrow(/options\.target 'nbds:\/\/h\/x' is not a usable NBD URI: .*TLS/);
    expect(() => planCopy({ source: 'nbd+unix:///x', target: 'out.img' })).toThrow(/options\.source .*needs \?socket=PATH/);
    expect(() => parseDdArgs(['if=in.img', 'of=nbd://h:99999/x'])).toThrow(UsageError);
    expect(() => parseDdArgs(['if=in.img', 'of=nbd://h:99999/x'])).toThrow(/invalid operand 'of=nbd:\/\/h:99999\/x': port/);
  });

  it('an export is one storage whatever URI names it: the source export as a target conflicts', () => {
    const a = gatherSide('nbd://127.0.0.1:10900/disk');
    const b = gatherSide('nbd://localhost:10900/disk');
    expect(a.kind).toBe('nbd');
    expect(a.location?.id).toBe(b.location?.id);
    expect(gatherSide('nbd://127.0.0.1:10900/other').location?.id).not.toBe(a.location?.id);
  });
});
