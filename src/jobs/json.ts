// Strict JSON (RFC 8259) for job files, read by Microsoft's jsonc-parser (the scanner and
// parser behind VS Code's JSON support) with comments and trailing commas switched off.
// What this module adds to it: the line:column of the first error and a message that says
// what was expected there and names the usual slips (comments, trailing commas, single
// quotes, leading zeros); duplicate keys refused instead of the last one silently winning;
// a nesting limit; and values built so that a key named __proto__ stays data.
import type * as Jsonc from 'jsonc-parser';

/** A value nested deeper than this (in objects and arrays) is refused. */
export const JSON_DEPTH_MAX = 64;

/** A JSON syntax error: what is wrong and where (1-based line and column, as editors count). */
export class JsonSyntaxError extends Error {
  override name = 'JsonSyntaxError';

  constructor(readonly reason: string, readonly line: number, readonly column: number) {
    super(`${line}:${column}: ${reason}`);
  }
}

/** A key given twice in one object. `path` leads from the document to that object. */
export class JsonDuplicateKeyError extends Error {
  override name = 'JsonDuplicateKeyError';

  constructor(readonly path: Array<string | number>, readonly key: string, readonly line: number, readonly column: number) {
    super(`${line}:${column}: key ${JSON.stringify(key)} given twice in one object`);
  }
}

let jsonc: typeof Jsonc | undefined;
/**
 * Loaded on first use: only `devmove run` and parseJobFile() pay for loading its six files
 * (measured: about half as long as loading all of dist/index.js), not a plain copy, nor a
 * library user who never reads a job file.
 */
function loadJsonc(): typeof Jsonc {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (jsonc ??= require('jsonc-parser') as typeof Jsonc);
}

/** What may come next; messages say what was expected from it. */
type Expecting =
  | 'value' // the document, or after ':'
  | 'first-key' // after '{'
  | 'key' // after ',' in an object: '}' here is a trailing comma
  | 'colon'
  | 'first-element' // after '['
  | 'element' // after ',' in an array: ']' here is a trailing comma
  | 'after-property'
  | 'after-element'
  | 'end';

const A_VALUE = 'expected a value (an object, array, string, number, true, false or null)';
const A_KEY = 'expected a property name in double quotes';
const EXPECTED: Record<Exclude<Expecting, 'colon' | 'end'>, string> = {
  value: A_VALUE,
  'first-element': A_VALUE,
  element: A_VALUE,
  'first-key': A_KEY,
  key: A_KEY,
  'after-property': "expected ',' or '}' after a property value",
  'after-element': "expected ',' or ']' after an array element",
};

function describeChar(ch: string | undefined): string {
  if (ch === undefined) return 'end of the file';
  if (ch === "'") return `"'" (strings and keys take double quotes)`;
  if (ch === '/') return `'/' (JSON has no comments)`;
  const code = ch.charCodeAt(0);
  return code < 0x20 || code === 0x7f ? `control character U+${code.toString(16).padStart(4, '0')}` : `'${ch}'`;
}

/**
 * Parses `text` as strict JSON and returns its value (a leading byte-order mark is skipped and
 * not counted in columns). Throws a JsonSyntaxError at the first syntax error, a
 * JsonDuplicateKeyError at the second occurrence of a key in one object.
 */
export function parseStrictJson(text: string): unknown {
  const reader = new StrictReader(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  loadJsonc().visit(reader.text, reader, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  return reader.result();
}

interface Frame {
  container: Record<string, unknown> | unknown[];
  /** The property whose value comes next (objects). */
  key: string;
}

/** A jsonc-parser visitor that builds the value and stops at the first error. */
class StrictReader implements Jsonc.JSONVisitor {
  private readonly stack: Frame[] = [];
  private expecting: Expecting = 'value';
  private root: unknown;

  constructor(readonly text: string) {}

  result(): unknown {
    if (this.expecting !== 'end') throw new Error(`assertion: the JSON parser ended while expecting ${this.expecting}`);
    return this.root;
  }

  onObjectBegin = (offset: number): void => {
    const object: Record<string, unknown> = {};
    this.attach(object, offset);
    this.stack.push({ container: object, key: '' });
    this.expecting = 'first-key';
  };

  onObjectProperty = (key: string, offset: number, _length: number, _line: number, _character: number, path: () => Jsonc.JSONPath): void => {
    const top = this.stack[this.stack.length - 1];
    if (Object.prototype.hasOwnProperty.call(top.container, key)) {
      const { line, column } = this.positionOf(offset);
      throw new JsonDuplicateKeyError(path(), key, line, column);
    }
    top.key = key;
    this.expecting = 'colon';
  };

  onArrayBegin = (offset: number): void => {
    const array: unknown[] = [];
    this.attach(array, offset);
    this.stack.push({ container: array, key: '' });
    this.expecting = 'first-element';
  };

  /** jsonc-parser also ends an object or array at the end of the file; only '}' or ']' does here. */
  onObjectEnd = (offset: number): void => this.close('}', offset);
  onArrayEnd = (offset: number): void => this.close(']', offset);

  onLiteralValue = (value: unknown, offset: number, length: number): void => {
    const literal = this.text.slice(offset, offset + length);
    if (/^-?0$/.test(literal) && /[0-9]/.test(this.text[offset + length] ?? '')) this.fail('numbers must not have leading zeros', offset);
    this.attach(value, offset);
    this.expecting = this.afterValue();
  };

  onSeparator = (separator: string): void => {
    if (separator === ':') this.expecting = 'value';
    else this.expecting = Array.isArray(this.stack[this.stack.length - 1].container) ? 'element' : 'key';
  };

  onError = (code: Jsonc.ParseErrorCode, offset: number, length: number): void => {
    const name = loadJsonc().printParseErrorCode(code);
    const valueNext = this.valueNext();
    const stringNext = valueNext || this.expecting === 'first-key' || this.expecting === 'key';
    // jsonc-parser scans the next token before it sees that no token may come here
    // ('"a" "b'): then what is wrong is the token's place, not its inside.
    if (stringNext && ['UnexpectedEndOfString', 'InvalidCharacter', 'InvalidEscapeCharacter', 'InvalidUnicode'].includes(name)) {
      this.failInString(offset);
    }
    if (valueNext && (name === 'UnexpectedEndOfNumber' || name === 'InvalidNumberFormat' || (name === 'InvalidSymbol' && this.text[offset] === '-'))) {
      this.fail(`invalid number '${this.text.slice(offset, offset + length)}'`, offset);
    }
    // Every other code (a stray character, a comment, a missing or extra token) is
    // described by what came and what this reader was expecting.
    this.failUnexpected(offset, name === 'InvalidSymbol' ? length : 1);
  };

  /** Puts a value where it belongs: the root, the next array element, or the pending property. */
  private attach(value: unknown, offset: number): void {
    if (this.stack.length > JSON_DEPTH_MAX) this.fail(`nested too deeply (more than ${JSON_DEPTH_MAX} levels of objects and arrays)`, offset);
    const top = this.stack[this.stack.length - 1];
    if (top === undefined) this.root = value;
    else if (Array.isArray(top.container)) top.container.push(value);
    // defineProperty: a key named __proto__ is data, not the object's prototype.
    else Object.defineProperty(top.container, top.key, { value, enumerable: true, writable: true, configurable: true });
  }

  private close(bracket: '}' | ']', offset: number): void {
    if (this.text[offset] !== bracket) this.failUnexpected(offset);
    this.stack.pop();
    this.expecting = this.afterValue();
  }

  private valueNext(): boolean {
    return this.expecting === 'value' || this.expecting === 'first-element' || this.expecting === 'element';
  }

  private afterValue(): Expecting {
    const top = this.stack[this.stack.length - 1];
    if (top === undefined) return 'end';
    return Array.isArray(top.container) ? 'after-element' : 'after-property';
  }

  /** `length` > 1: an unknown word such as NaN or True, named whole. */
  private failUnexpected(offset: number, length = 1): never {
    const ch = this.text[offset];
    const e = this.expecting;
    const word = this.text.slice(offset, offset + length);
    // jsonc-parser reads 'null\u00a0' as one unknown word: name what follows the literal.
    const literal = /^(true|false|null)(?![\w$])/.exec(word);
    if (literal !== null && this.valueNext()) {
      this.expecting = this.afterValue();
      return this.failUnexpected(offset + literal[0].length);
    }
    const what = length > 1 && /^[A-Za-z_$][\w$]*$/.test(word) ? `'${word}'` : describeChar(ch);
    if (e === 'end') this.fail(`unexpected ${what} after the end of the JSON value`, offset);
    if (e === 'key' && ch === '}') this.fail('trailing comma before }', offset);
    if (e === 'element' && ch === ']') this.fail('trailing comma before ]', offset);
    if (ch === undefined && this.valueNext()) this.fail('unexpected end of the file: a value is missing', offset);
    if (e === 'colon') {
      const key = this.stack[this.stack.length - 1].key;
      this.fail(`unexpected ${what}: expected ':' after the property name ${JSON.stringify(key)}`, offset);
    }
    return this.fail(`unexpected ${what}: ${EXPECTED[e]}`, offset);
  }

  /**
   * jsonc-parser places string errors at the string's start (and keeps only the last one);
   * this names the first bad character, else the string runs to the end of the file.
   */
  private failInString(start: number): never {
    for (let i = start + 1; i < this.text.length; i++) {
      const ch = this.text[i];
      if (ch === '"') throw new Error(`assertion: the JSON parser reported a bad string at offset ${start} that has none`);
      if (ch === '\\') {
        const escape = this.text[i + 1];
        if (escape === undefined) break;
        if (/^["\\/bfnrt]$/.test(escape)) i += 1;
        else if (escape === 'u' && /^[0-9a-fA-F]{4}$/.test(this.text.slice(i + 2, i + 6))) i += 5;
        else if (escape.charCodeAt(0) < 0x20) this.fail(`invalid escape sequence: '\\' before ${describeChar(escape)} in a string`, i);
        else this.fail(`invalid escape sequence '\\${escape}' in a string`, i);
      } else if (ch.charCodeAt(0) < 0x20) {
        this.fail(`${describeChar(ch)} in a string; write it as an escape such as \\n`, i);
      }
    }
    return this.fail('unterminated string', start);
  }

  private fail(reason: string, offset: number): never {
    const { line, column } = this.positionOf(offset);
    throw new JsonSyntaxError(reason, line, column);
  }

  /** Line breaks as editors count them: \n, \r\n and a lone \r. */
  private positionOf(offset: number): { line: number; column: number } {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < offset && i < this.text.length; i++) {
      const ch = this.text[i];
      if (ch === '\n' || (ch === '\r' && this.text[i + 1] !== '\n')) {
        line++;
        lineStart = i + 1;
      }
    }
    return { line, column: offset - lineStart + 1 };
  }
}
