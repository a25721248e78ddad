import { describe, it, expect } from 'vitest';
import { parseDdArgs, UsageError, DD_HELP_OPERANDS, type DdInvocation } from '../../src/cli/dd-args';

const KiB = 1024;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const IO = ['if=/dev/sdb', 'of=/dev/sdc'];

const DEFAULTS: DdInvocation = {
  warnings: [],
  command: 'copy',
  source: '/dev/sdb',
  target: '/dev/sdc',
  ibs: 512,
  obs: 512,
  sourceOffset: 0,
  targetOffset: 0,
  directSource: 'auto',
  directTarget: 'auto',
  durability: 'fdatasync',
  truncate: true,
  createTarget: true,
  exclusiveCreate: false,
  status: 'default',
  json: false,
  noatime: false,
  force: false,
  engine: { fixedBuffers: true, fixedFiles: true, sqpoll: false, linkReadWrite: true, batchSubmissions: true },
  targets: ['/dev/sdc'],
  onTargetError: 'stop',
  noError: false,
  retries: 0,
  retryBad: false,
  verify: false,
  background: false,
  zeroBlocks: 'write',
  rate: 0,
};

describe('parseDdArgs: valid invocations', () => {
  it('fills in dd defaults and leaves optional fields out', () => {
    expect(parseDdArgs(IO)).toStrictEqual(DEFAULTS);
  });

  it("reads '0x…' as dd does, zero times what follows, with dd's warning once per operand (coreutils tests/dd/misc.sh)", () => {
    const warning = "warning: '0x' is a zero multiplier; use '00x' if that is intended";
    expect(parseDdArgs([...IO, 'count=0x1', 'seek=0x1', 'skip=0x1'])).toMatchObject({
      warnings: [warning, warning, warning],
      maxLength: 0,
      sourceOffset: 0,
      targetOffset: 0,
    });
    // '00x' is the spelling dd asks for: the same value, no warning.
    expect(parseDdArgs([...IO, 'count=00x1', 'skip=10x0'])).toMatchObject({ warnings: [], maxLength: 0, sourceOffset: 0 });
    expect(parseDdArgs([...IO, 'count=00x9999999999999999999999999999999999'])).toMatchObject({ warnings: [], maxLength: 0 });
  });

  it("conv=sparse finds zero blocks of obs= when obs= is given, as dd's does (coreutils tests/dd/sparse.sh)", () => {
    expect(parseDdArgs([...IO, 'ibs=1M', 'obs=2M', 'conv=sparse'])).toMatchObject({ blockSize: 2 * MiB, ibs: MiB, obs: 2 * MiB });
    expect(parseDdArgs([...IO, 'ibs=2M', 'obs=1M', '--zero-blocks=sparse'])).toMatchObject({ blockSize: MiB });
    // bs= and --block-size say the I/O size outright; without obs= the engine's default stays.
    expect(parseDdArgs([...IO, 'bs=64K', 'obs=2M', 'conv=sparse'])).toMatchObject({ blockSize: 64 * KiB });
    expect(parseDdArgs([...IO, '--block-size=256K', 'obs=2M', 'conv=sparse'])).toMatchObject({ blockSize: 256 * KiB });
    expect(parseDdArgs([...IO, 'ibs=1M', 'conv=sparse']).blockSize).toBeUndefined();
    // A small obs= is the zero check's block inside larger I/Os (a multiple of it), not the I/O size.
    expect(parseDdArgs([...IO, 'ibs=100', 'obs=1', 'conv=sparse'])).toMatchObject({ blockSize: 512 * KiB, zeroBlockSize: 1, obs: 1 });
    expect(parseDdArgs([...IO, 'obs=100', 'conv=sparse'])).toMatchObject({ blockSize: 5242 * 100, zeroBlockSize: 100 });
    expect(parseDdArgs([...IO, 'obs=512K', 'conv=sparse']).zeroBlockSize).toBeUndefined();
    expect(parseDdArgs([...IO, 'bs=1', 'conv=sparse'])).toMatchObject({ blockSize: 1 });
    expect(parseDdArgs([...IO, 'bs=1', 'conv=sparse']).zeroBlockSize).toBeUndefined();
    expect(parseDdArgs([...IO, 'bs=512K', 'obs=1', 'conv=sparse']).zeroBlockSize).toBeUndefined();
    expect(parseDdArgs([...IO, 'obs=2M']).blockSize).toBeUndefined();
  });

  it.each<[string, string[], Partial<DdInvocation>]>([
    ['operands in any order', ['of=out.img', 'if=in.img'], { source: 'in.img', target: 'out.img' }],
    ['a value containing =', ['if=/tmp/a=b', 'of=/tmp/c'], { source: '/tmp/a=b', target: '/tmp/c' }],
    ['if= repeated: the last wins', ['if=/dev/sda', ...IO], { source: '/dev/sdb' }],
    [
      'bs=1M count=10 skip=2 seek=3 in bytes',
      [...IO, 'bs=1M', 'count=10', 'skip=2', 'seek=3'],
      { blockSize: MiB, ibs: MiB, obs: MiB, sourceOffset: 2 * MiB, targetOffset: 3 * MiB, maxLength: 10 * MiB },
    ],
    [
      'separate ibs and obs',
      [...IO, 'ibs=4K', 'obs=1M', 'skip=3', 'seek=2', 'count=5'],
      { ibs: 4 * KiB, obs: MiB, sourceOffset: 12 * KiB, targetOffset: 2 * MiB, maxLength: 20 * KiB },
    ],
    ['default 512-byte blocks', [...IO, 'skip=1', 'seek=2', 'count=3'], { sourceOffset: 512, targetOffset: 1024, maxLength: 1536 }],
    ['bs= overrides ibs= and obs= in any order', [...IO, 'ibs=4K', 'bs=64K', 'obs=1K'], { ibs: 64 * KiB, obs: 64 * KiB, blockSize: 64 * KiB }],
    ['bs= repeated: the last wins', [...IO, 'bs=1K', 'bs=4K'], { blockSize: 4 * KiB, ibs: 4 * KiB }],
    ['bs= with a product', [...IO, 'bs=2x512'], { blockSize: 1024 }],
    ['bs=2G is the largest block size', [...IO, 'bs=2G'], { blockSize: 2 * GiB }],
    [
      'iflag=skip_bytes,count_bytes',
      [...IO, 'bs=4M', 'iflag=skip_bytes,count_bytes', 'skip=1000', 'count=4096'],
      { sourceOffset: 1000, maxLength: 4096, ibs: 4 * MiB },
    ],
    ['oflag=seek_bytes', [...IO, 'bs=1M', 'oflag=seek_bytes', 'seek=12345'], { targetOffset: 12345 }],
    ['of= repeated: fan-out', [...IO, 'of=/dev/sdd', '--on-target-error=drop'], { target: '/dev/sdc', targets: ['/dev/sdc', '/dev/sdd'], onTargetError: 'drop' }],
    ['conv=noerror,sync', [...IO, 'conv=noerror,sync'], { noError: true }],
    ['--noerror --retries --mapfile --retry-bad', [...IO, '--noerror', '--retries=3', '--mapfile', 'x.map', '--retry-bad', '--checkpoint-interval=250'], { noError: true, retries: 3, mapfile: 'x.map', retryBad: true, checkpointInterval: 250 }],
    ['--verify --hash', [...IO, '--verify', '--hash=sha512'], { verify: true, hash: 'sha512' }],
    ['--verify=strict', [...IO, '--verify=strict'], { verify: 'strict' }],
    ['--verify then --verify=strict: the last one', [...IO, '--verify', '--verify=strict'], { verify: 'strict' }],
    ['--rate with /s', [...IO, '--rate=50MB/s'], { rate: 50_000_000 }],
    ['--rate=0 and --rate=unlimited: no cap, as in copy() and --rate-file', [...IO, '--rate=0'], { rate: 0 }],
    ['--rate=unlimited', [...IO, '--rate=unlimited'], { rate: 0 }],
    ['--block-size=2G is over the 1 GiB I/O limit, bs=2G is dd\'s and allowed', [...IO, 'bs=2G'], { blockSize: 2 * GiB }],
    ['--rate-file and --background', [...IO, '--rate-file=/run/r', '--background'], { rateFile: '/run/r', background: true }],
    ['conv=sparse', [...IO, 'conv=sparse'], { zeroBlocks: 'sparse' }],
    ['--target-is-zero', [...IO, '--target-is-zero'], { zeroBlocks: 'skip' }],
    ['--zero-blocks=discard', [...IO, '--zero-blocks=discard'], { zeroBlocks: 'discard' }],
    [
      'engine switches',
      [...IO, '--no-fixed-buffers', '--no-fixed-files', '--sqpoll', '--no-link', '--no-batch'],
      { engine: { fixedBuffers: false, fixedFiles: false, sqpoll: true, linkReadWrite: false, batchSubmissions: false } },
    ],
    ['one engine switch leaves the others at their defaults', [...IO, '--no-link'], { engine: { ...DEFAULTS.engine, linkReadWrite: false } }],
    ['skip_bytes leaves count in blocks', [...IO, 'bs=4K', 'iflag=skip_bytes', 'skip=100', 'count=2'], { sourceOffset: 100, maxLength: 8 * KiB }],
    ['a B in the value counts bytes (GNU dd 9)', [...IO, 'bs=4K', 'skip=10B', 'seek=4KiB', 'count=1MB'], { sourceOffset: 10, targetOffset: 4096, maxLength: 1_000_000 }],
    ['a B-less suffix still counts blocks', [...IO, 'bs=4K', 'skip=1K'], { sourceOffset: 4 * MiB }],
    ['iseek= is skip=', [...IO, 'iseek=3'], { sourceOffset: 1536 }],
    ['oseek= is seek=', [...IO, 'obs=4K', 'oseek=2'], { targetOffset: 8 * KiB }],
    ['skip= then iseek=: the last wins', [...IO, 'skip=1', 'iseek=5'], { sourceOffset: 5 * 512 }],
    ['count=0', [...IO, 'count=0'], { maxLength: 0 }],
    ['large offsets within 2^53', [...IO, 'bs=4K', 'skip=1T'], { sourceOffset: 2 ** 52 }],
    ['conv=notrunc,fsync', [...IO, 'conv=notrunc,fsync'], { truncate: false, durability: 'fsync' }],
    ['conv=fdatasync', [...IO, 'conv=fdatasync'], { durability: 'fdatasync' }],
    ['oflag=dsync', [...IO, 'oflag=dsync'], { durability: 'dsync' }],
    ['oflag=sync', [...IO, 'oflag=sync'], { durability: 'sync' }],
    ['fsync beats dsync', [...IO, 'oflag=dsync', 'conv=fsync'], { durability: 'fsync' }],
    ['dsync beats fdatasync', [...IO, 'conv=fdatasync', 'oflag=dsync'], { durability: 'dsync' }],
    ['sync beats fsync', [...IO, 'conv=fsync', 'oflag=sync'], { durability: 'sync' }],
    ['sync beats everything', [...IO, 'conv=fsync', 'oflag=dsync,sync', 'conv=fdatasync'], { durability: 'sync' }],
    ['--no-sync', [...IO, '--no-sync'], { durability: 'none' }],
    ['iflag=dsync,sync are accepted and change nothing', [...IO, 'iflag=dsync,sync'], { durability: 'fdatasync' }],
    ['conv=nocreat', [...IO, 'conv=nocreat'], { createTarget: false, exclusiveCreate: false }],
    ['conv=excl', [...IO, 'conv=excl'], { exclusiveCreate: true, createTarget: true }],
    ['conv= repeated: union', [...IO, 'conv=notrunc', 'conv=excl'], { truncate: false, exclusiveCreate: true }],
    ['iflag=direct', [...IO, 'iflag=direct'], { directSource: 'always', directTarget: 'auto' }],
    ['oflag=direct', [...IO, 'oflag=direct'], { directSource: 'auto', directTarget: 'always' }],
    ['iflag= and oflag= repeated: union', [...IO, 'iflag=direct', 'iflag=noatime', 'oflag=direct,seek_bytes', 'seek=7'], { directSource: 'always', noatime: true, directTarget: 'always', targetOffset: 7 }],
    ['iflag=noatime', [...IO, 'iflag=noatime'], { noatime: true }],
    ['accepted no-op flags', [...IO, 'iflag=fullblock,nocache', 'oflag=nocache,noatime'], { noatime: false, directSource: 'auto' }],
    ['status=none', [...IO, 'status=none'], { status: 'none' }],
    ['status=noxfer', [...IO, 'status=noxfer'], { status: 'noxfer' }],
    ['status=progress', [...IO, 'status=progress'], { status: 'progress' }],
    ['status= repeated: the last wins', [...IO, 'status=none', 'status=progress'], { status: 'progress' }],
    ['--quiet', [...IO, '--quiet'], { status: 'none' }],
    ['--quiet wins over status=progress', ['--quiet', ...IO, 'status=progress'], { status: 'none' }],
    ['--json', [...IO, '--json'], { json: true }],
    ['--queue-depth=N', [...IO, '--queue-depth=64'], { queueDepth: 64 }],
    ['--queue-depth N', ['--queue-depth', '1', ...IO], { queueDepth: 1 }],
    ['--queue-depth=1024', [...IO, '--queue-depth=1024'], { queueDepth: 1024 }],
    ['--block-size=SIZE keeps ibs/obs', [...IO, '--block-size=4M', 'skip=1'], { blockSize: 4 * MiB, ibs: 512, obs: 512, sourceOffset: 512 }],
    ['--block-size SIZE', ['--block-size', '64K', ...IO], { blockSize: 64 * KiB }],
    ['--block-size agreeing with bs=', [...IO, 'bs=64K', '--block-size=65536'], { blockSize: 64 * KiB }],
    ['-- is accepted', ['--', ...IO], { source: '/dev/sdb' }],
    ['no if=: standard input, as in dd', ['of=/dev/sdc'], { source: '-', targets: ['/dev/sdc'] }],
    ['no of=: standard output, as in dd', ['if=/dev/sdb'], { source: '/dev/sdb', target: '-', targets: ['-'] }],
    ['no operands: standard input to standard output', ['status=none'], { source: '-', target: '-', targets: ['-'], status: 'none' }],
    ["'-' names them too", ['if=-', 'of=-', 'of=/dev/sdc'], { source: '-', targets: ['-', '/dev/sdc'] }],
    ['demo without if=/of=', ['demo'], { command: 'demo' }],
    ['demo with operands', ['demo', 'bs=1M', 'status=progress', '--queue-depth=8'], { command: 'demo', blockSize: MiB, status: 'progress', queueDepth: 8 }],
    ['demo with if=', ['demo', 'if=/dev/loop0'], { command: 'demo', source: '/dev/loop0' }],
    ['--help', ['--help'], { command: 'help' }],
    ['-h among operands', [...IO, '-h'], { command: 'help' }],
    ['--help wins over bad operands', ['bs=12Q', 'frob', '--help'], { command: 'help' }],
    ['--help wins over --version', ['--version', '--help'], { command: 'help' }],
    ['--help keeps --json', ['--help', '--json'], { command: 'help', json: true }],
    ['--version', ['--version'], { command: 'version' }],
    ['-V', ['-V', 'of=x'], { command: 'version' }],
  ])('%s', (_name, argv, expected) => {
    expect(parseDdArgs(argv)).toMatchObject(expected);
  });

  it('leaves blockSize, maxLength and queueDepth undefined unless given', () => {
    const inv = parseDdArgs([...IO, 'ibs=4K', 'skip=1']);
    expect(inv.blockSize).toBeUndefined();
    expect(inv.maxLength).toBeUndefined();
    expect(inv.queueDepth).toBeUndefined();
    expect('maxLength' in inv).toBe(false);
  });

  it('demo has no source/target unless given', () => {
    const inv = parseDdArgs(['demo']);
    expect(inv.source).toBeUndefined();
    expect(inv.target).toBeUndefined();
  });

  it('does not modify argv', () => {
    const argv = Object.freeze([...IO, 'bs=1M', '--queue-depth', '4']);
    expect(parseDdArgs(argv).queueDepth).toBe(4);
  });
});

describe('parseDdArgs: invalid invocations', () => {
  it.each<[string[], RegExp]>([
    [['if=/dev/sdb', 'of=x', 'of=x'], /^'of=x' is given twice$/],
    [[...IO, '--on-target-error=drop'], /^--on-target-error=drop needs two or more targets/],
    [[...IO, '--on-target-error=ignore'], /^invalid option '--on-target-error=ignore'/],
    [[...IO, '--retry-bad'], /^--retry-bad needs --mapfile/],
    [[...IO, '--checkpoint-interval=500'], /^--checkpoint-interval needs --mapfile$/],
    [[...IO, '--mapfile=m', '--checkpoint-interval=50'], /^invalid option '--checkpoint-interval=50': must be an integer from 100 to 3600000$/],
    [[...IO, '--mapfile=m', '--no-sync'], /^--mapfile needs durable writes/],
    [[...IO, '--retries=-1'], /^invalid option '--retries=-1': must be an integer from 0 to 1000$/],
    [[...IO, '--hash=crc32'], /^invalid option '--hash=crc32': must be one of 'blake3', 'sha256', /],
    [[...IO, '--rate=fast'], /^invalid option '--rate=fast'/],
    [[...IO, '--zero-blocks=trim'], /^invalid option '--zero-blocks=trim'/],
    [[...IO, '--zero-blocks=discard', '--target-is-zero'], /^--target-is-zero contradicts '--zero-blocks=discard'/],
    [[...IO, 'conv=sparse', '--zero-blocks=discard'], /^conv=sparse contradicts '--zero-blocks=discard'/],
    [[...IO, '--verify=yes'], /^option '--verify' takes no value/],
    [[...IO, 'bs='], /^'bs=' needs a value$/],
    [['if=', 'of=x'], /^'if=' needs a value$/],
    [['if=x', 'of='], /^'of=' needs a value$/],
    [[...IO, 'conv='], /^'conv=' needs a value$/],
    [[...IO, 'status='], /^'status=' needs a value$/],
    [[...IO, 'foo=1'], /^unknown operand 'foo=1'$/],
    [[...IO, '=1'], /^unknown operand '=1'$/],
    [[...IO, 'BS=1M'], /^unknown operand 'BS=1M'$/],
    [[...IO, 'xyz'], /^unexpected argument 'xyz' \(operands look like if=\/dev\/sdb\)$/],
    [[...IO, 'demo'], /^unexpected argument 'demo' \('demo' must be the first argument\)$/],
    [[...IO, '-'], /^unexpected argument '-'/],
    [['--', ...IO, '--help'], /^unexpected argument '--help'/],
    [[...IO, '--frob'], /^unknown option '--frob'$/],
    [[...IO, '--frob=1'], /^unknown option '--frob'$/],
    [[...IO, '-x'], /^unknown option '-x'$/],
    [[...IO, '--json=yes'], /^option '--json' takes no value/],
    [[...IO, '--no-link=1'], /^option '--no-link' takes no value/],
    [[...IO, 'bs=12Q'], /^invalid operand 'bs=12Q': value is too large/],
    [[...IO, 'bs=12Q3'], /^invalid operand 'bs=12Q3': unknown size suffix 'Q3'/],
    [[...IO, 'bs=4m'], /^invalid operand 'bs=4m': unknown size suffix 'm'.*did you mean 'M'/],
    [[...IO, 'bs=0'], /^invalid operand 'bs=0': the block size must be at least 1 byte$/],
    [[...IO, 'bs=3G'], /^invalid operand 'bs=3G': the block size must be at most 2 GiB/],
    [[...IO, 'bs=2147483649'], /at most 2 GiB/],
    [[...IO, 'ibs=0'], /^invalid operand 'ibs=0': the input block size must be at least 1 byte$/],
    [[...IO, 'obs=2049M'], /^invalid operand 'obs=2049M': the output block size must be at most 2 GiB/],
    [[...IO, 'bs=-1'], /^invalid operand 'bs=-1': .*sign/],
    [[...IO, 'count=1.5M'], /^invalid operand 'count=1\.5M': fractions are not allowed/],
    // dd reads '0x' as 'zero times' (see below); anything after it must still be a number.
    [[...IO, 'skip=0xff'], /^invalid operand 'skip=0xff': expected a decimal number, got 'ff'/],
    [[...IO, 'skip=0X10'], /^invalid operand 'skip=0X10': hexadecimal is not accepted/],
    [[...IO, 'count=0x'], /^invalid operand 'count=0x': missing number/],
    [[...IO, 'seek=ten'], /^invalid operand 'seek=ten': expected a decimal number/],
    [[...IO, 'count=8P'], /^invalid operand 'count=8P': value is too large/],
    [[...IO, 'bs=1M', 'skip=1P'], /^invalid operand 'skip=1P': 1125899906842624 blocks of 1048576 bytes \(ibs\) is .* beyond the maximum/],
    [[...IO, 'seek=9007199254740991'], /^invalid operand 'seek=9007199254740991': .* \(obs\) .*beyond/],
    [[...IO, 'ibs=4K', 'count=4T'], /^invalid operand 'count=4T'/],
    [[...IO, 'conv=notrunc,sync'], /^conv=sync is supported only as conv=noerror,sync/],
    [[...IO, 'conv=swab'], /^conv=swab is not supported/],
    [[...IO, 'conv=ascii'], /^conv=ascii is not supported/],
    [[...IO, 'iflag=nonblock'], /^iflag=nonblock is not supported by devmove yet$/],
    [[...IO, 'oflag=append'], /^oflag=append is not supported/],
    [[...IO, 'iflag=nofollow'], /^iflag=nofollow is not supported/],
    [[...IO, 'cbs=80'], /^cbs= is not supported by devmove/],
    [[...IO, 'conv=xyz'], /^invalid conversion: 'xyz' in 'conv=xyz' \(accepted: notrunc, fsync, fdatasync, excl, nocreat, noerror, sync, sparse\)$/],
    [[...IO, 'conv=notrunc,,fsync'], /^invalid conversion: '' in 'conv=notrunc,,fsync'/],
    [[...IO, 'conv=direct'], /^invalid conversion: 'direct'.*iflag=direct or oflag=direct/],
    [[...IO, 'conv=fullblock'], /^invalid conversion: 'fullblock'.*iflag=fullblock/],
    [[...IO, 'iflag=xyz'], /^invalid input flag: 'xyz' in 'iflag=xyz' \(accepted: direct, /],
    [[...IO, 'oflag=xyz'], /^invalid output flag: 'xyz' in 'oflag=xyz' \(accepted: direct, /],
    [[...IO, 'oflag=fullblock'], /^invalid output flag: 'fullblock'.*iflag=fullblock/],
    [[...IO, 'oflag=skip_bytes'], /^invalid output flag: 'skip_bytes'.*iflag=skip_bytes/],
    [[...IO, 'iflag=seek_bytes'], /^invalid input flag: 'seek_bytes'.*oflag=seek_bytes/],
    [[...IO, 'iflag=notrunc'], /^invalid input flag: 'notrunc'.*conv=notrunc/],
    [[...IO, 'conv=excl,nocreat'], /^conv=excl and conv=nocreat cannot be combined/],
    [[...IO, 'conv=nocreat', 'conv=excl'], /^conv=excl and conv=nocreat cannot be combined/],
    [[...IO, 'iflag=direct,nocache'], /^iflag=direct and iflag=nocache cannot be combined/],
    [[...IO, 'oflag=nocache', 'oflag=direct'], /^oflag=direct and oflag=nocache cannot be combined/],
    [[...IO, 'status=loud'], /^invalid operand 'status=loud': the status level must be none, noxfer or progress$/],
    [[...IO, 'status=none,progress'], /^invalid operand 'status=none,progress'/],
    [[...IO, '--queue-depth=0'], /^invalid option '--queue-depth=0': must be an integer from 1 to 1024$/],
    [[...IO, '--queue-depth=1025'], /^invalid option '--queue-depth=1025'/],
    [[...IO, '--queue-depth', 'abc'], /^invalid option '--queue-depth=abc'/],
    [[...IO, '--queue-depth=1K'], /^invalid option '--queue-depth=1K'/],
    [[...IO, '--queue-depth=-4'], /^invalid option '--queue-depth=-4'/],
    [[...IO, '--queue-depth'], /^option '--queue-depth' needs a value$/],
    [[...IO, '--queue-depth='], /^option '--queue-depth' needs a value$/],
    [[...IO, '--block-size=0'], /^invalid option '--block-size=0': must be from 1 byte to 1 GiB/],
    [[...IO, '--block-size=3G'], /^invalid option '--block-size=3G'/],
    [[...IO, '--block-size=2G'], /^invalid option '--block-size=2G': must be from 1 byte to 1 GiB/],
    [[...IO, '--block-size', '12Q3'], /^invalid option '--block-size=12Q3': must be a size such as '512K' or '4M': unknown size suffix 'Q3'/],
    [[...IO, '--block-size'], /^option '--block-size' needs a value$/],
    [[...IO, 'bs=1M', '--block-size=4M'], /^'bs=1M' and '--block-size=4M' disagree; give only one$/],
    [[...IO, '--no-sync', 'conv=fsync'], /^--no-sync contradicts conv=fsync/],
    [[...IO, 'oflag=dsync', '--no-sync'], /^--no-sync contradicts oflag=dsync/],
    [[...IO, '--no-sync', 'conv=fdatasync'], /^--no-sync contradicts conv=fdatasync/],
  ])('%j', (argv, message) => {
    let caught: unknown;
    try {
      parseDdArgs(argv);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UsageError);
    const err = caught as UsageError;
    expect(err.name).toBe('UsageError');
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain('\n');
  });
});

describe('DD_HELP_OPERANDS', () => {
  it('fits in 80 columns and ends with a newline', () => {
    for (const line of DD_HELP_OPERANDS.split('\n')) {
      expect(line.length, line).toBeLessThanOrEqual(80);
    }
    expect(DD_HELP_OPERANDS.endsWith('\n')).toBe(true);
  });

  it.each([
    'if=', 'of=', 'bs=', 'ibs=', 'obs=', 'skip=', 'iseek=', 'seek=', 'oseek=', 'count=', 'status=',
    'conv=', 'iflag=', 'oflag=', 'notrunc', 'nocreat', 'excl', 'fdatasync', 'fsync', 'direct',
    'skip_bytes', 'count_bytes', 'seek_bytes', 'noatime', 'fullblock', 'nocache', 'dsync', 'sync',
    'none', 'noxfer', 'progress', '--block-size', '--queue-depth', '--no-sync', '--json', '--quiet',
    '--help', '--version', '-h', '-V', 'demo', 'KiB', 'MB', '2x512',
  ])('mentions %s', (word) => {
    expect(DD_HELP_OPERANDS).toContain(word);
  });
});
